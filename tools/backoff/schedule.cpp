// SPDX-License-Identifier: BSL-1.0
// backoff schedule: print the waits a policy would use.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "cli.hpp"
#include "report.hpp"
#include "sim.hpp"

namespace backoff::cli {

namespace {
struct schedule_options {
  policy_flags policy;
  std::optional<std::uint32_t> rows;
  std::string format = "table";
  std::optional<std::uint32_t> samples;
};

double ms(duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string fixed3(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

}  // namespace

subcommand schedule_command(CLI::App& app) {
  auto so = std::make_shared<schedule_options>();
  auto* cmd = app.add_subcommand("schedule", "Print the wait before each retry, and the total");
  cmd->footer("Exit status: 0 on success; 2 for a bad flag or value; 1 when something else failed.");
  so->policy.add_to(*cmd);
  cmd->add_option("--attempts", so->rows,
                  "How many retries to show (default: the policy's attempts minus one, or 10 without a limit; "
                  "at most 10000); --max-time cuts the preview where run would stop");
  cmd->add_option("--format", so->format, "table, csv or json (default table)");
  cmd->add_option("--samples", so->samples,
                  "Draw the schedule K times and print p5/p50/p95 of each wait (at most 1000000, and 10^7 waits in all)");
  return {cmd, [so]() -> int {
    const policy p = so->policy.build();
    if (so->format != "table" && so->format != "csv" && so->format != "json")
      throw usage_error("--format: unknown format '" + so->format + "' (choose table, csv or json)");
    if (so->rows && *so->rows == 0) throw usage_error("--attempts: must be at least 1 (got 0)");
    if (so->samples && *so->samples == 0) throw usage_error("--samples: must be at least 1 (got 0)");
    // Bounds that keep a preview within memory and time.
    constexpr std::uint32_t max_rows = 10'000, max_samples = 1'000'000;
    constexpr std::uint64_t max_draws = 10'000'000;  // rows × samples
    const std::uint32_t limit = p.stop.max_attempts();
    const std::uint32_t rows = so->rows ? *so->rows : (limit > 1 ? limit - 1 : (limit == 1 ? 0 : 10));
    if (rows > max_rows)
      throw usage_error(std::string(so->rows ? "--attempts" : "--max-attempts") + ": " + std::to_string(rows) +
                        " retries to show is more than " + std::to_string(max_rows) + " (set --attempts)");
    if (so->samples && *so->samples > max_samples)
      throw usage_error("--samples: at most " + std::to_string(max_samples) + " (got " + std::to_string(*so->samples) + ")");
    if (so->samples && static_cast<std::uint64_t>(rows) * *so->samples > max_draws)
      throw usage_error("--samples: " + std::to_string(*so->samples) + " draws of " + std::to_string(rows) +
                        " waits is more than " + std::to_string(max_draws) + " in all");
    // Where run would stop: no wait that ends past --max-time (attempts taken as instant).
    const auto time_limit = so->policy.time_limit();
    auto within = [&](std::vector<duration> waits) {
      if (!time_limit) return waits;
      duration total{0};
      std::size_t keep = 0;
      while (keep < waits.size() && total + waits[keep] <= *time_limit) total += waits[keep++];
      waits.resize(keep);
      return waits;
    };
    fast_rng seeded{so->policy.seed.value_or(0)};
    random_ref rng = so->policy.seed ? random_ref{seeded} : random_ref{};

    if (!so->samples) {
      const auto waits = within(p.preview(rows, rng));
      duration total{0};
      nlohmann::json doc = nlohmann::json::array();
      if (so->format == "csv") std::cout << "retry,delay_ms,cumulative_ms\n";
      if (so->format == "table") std::cout << "retry        wait    total wait\n";
      for (std::size_t i = 0; i < waits.size(); ++i) {
        total += waits[i];
        if (so->format == "csv") {
          std::cout << i + 1 << "," << fixed3(ms(waits[i])) << "," << fixed3(ms(total)) << "\n";
        } else if (so->format == "json") {
          doc.push_back({{"retry", i + 1}, {"delay_ms", ms(waits[i])}, {"cumulative_ms", ms(total)}});
        } else {
          char line[128];
          std::snprintf(line, sizeof line, "%5zu %11s %13s\n", i + 1, format_duration(waits[i]).c_str(),
                        format_duration(total).c_str());
          std::cout << line;
        }
      }
      if (so->format == "json") std::cout << doc.dump(2) << "\n";
      return exit_code::ok;
    }

    // Percentiles over K independent draws of the whole schedule.
    std::vector<std::vector<double>> by_retry(rows);
    for (std::uint32_t k = 0; k < *so->samples; ++k) {
      const auto waits = within(p.preview(rows, rng));
      for (std::size_t i = 0; i < waits.size(); ++i) by_retry[i].push_back(ms(waits[i]));
    }
    while (!by_retry.empty() && by_retry.back().empty()) by_retry.pop_back();  // never reached within --max-time
    nlohmann::json doc = nlohmann::json::array();
    if (so->format == "csv") std::cout << "retry,p5_ms,p50_ms,p95_ms\n";
    if (so->format == "table") std::cout << "retry          p5         p50         p95\n";
    for (std::size_t i = 0; i < by_retry.size(); ++i) {
      const double p5 = sim::percentile(by_retry[i], 5), p50 = sim::percentile(by_retry[i], 50),
                   p95 = sim::percentile(by_retry[i], 95);
      if (so->format == "csv") {
        std::cout << i + 1 << "," << fixed3(p5) << "," << fixed3(p50) << "," << fixed3(p95) << "\n";
      } else if (so->format == "json") {
        doc.push_back({{"retry", i + 1}, {"p5_ms", p5}, {"p50_ms", p50}, {"p95_ms", p95}});
      } else {
        char line[128];
        std::snprintf(line, sizeof line, "%5zu %11s %11s %11s\n", i + 1,
                      format_duration(std::chrono::nanoseconds(static_cast<std::int64_t>(p5 * 1e6))).c_str(),
                      format_duration(std::chrono::nanoseconds(static_cast<std::int64_t>(p50 * 1e6))).c_str(),
                      format_duration(std::chrono::nanoseconds(static_cast<std::int64_t>(p95 * 1e6))).c_str());
        std::cout << line;
      }
    }
    if (so->format == "json") std::cout << doc.dump(2) << "\n";
    return exit_code::ok;
  }};
}

}  // namespace backoff::cli
