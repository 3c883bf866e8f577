// SPDX-License-Identifier: BSL-1.0
// backoff simulate: reproduce the backoff and retry-storm experiments with the
// library's own objects (sim/sim.hpp), as a table, CSV or JSON, and plot them.
#include <algorithm>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli.hpp"
#include "report.hpp"
#include "sim.hpp"

namespace backoff::cli {

namespace {

namespace fs = std::filesystem;

// Limits that keep a simulation within memory and time (backoff(1) lists them).
constexpr std::uint32_t max_processes = 10'000'000;
constexpr double max_events = 2e9;  // requests over the whole run

struct simulate_options {
  std::string scenario, format = "table", plot, shape = "spike", duration;
  std::vector<std::string> clients, strategies, policies, failure_rates;
  std::optional<int> runs;
  std::optional<double> rate;
  std::uint64_t seed = 1;
  bool gate_per_client = false;
  std::string outage = "10s-30s", retry_after = "5s";
  std::optional<double> capacity, release_spread;
  std::vector<std::string> quantiles;
  std::optional<std::uint64_t> requests;
  std::optional<unsigned> hedge_max;
};

std::vector<std::string> split(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) {
    std::stringstream in(item);
    std::string part;
    while (std::getline(in, part, ',')) out.push_back(part);
  }
  return out;
}

int to_int(const std::string& s, const std::string& flag) {
  std::size_t used = 0;
  int v = 0;
  try {
    v = std::stoi(s, &used);
  } catch (const std::logic_error&) {
    used = 0;
  }
  if (used != s.size() || s.empty()) throw usage_error(flag + ": '" + s + "' is not a whole number");
  return v;
}

double to_double(const std::string& s, const std::string& flag) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::logic_error&) {
    used = 0;
  }
  if (used != s.size() || s.empty()) throw usage_error(flag + ": '" + s + "' is not a number");
  return v;
}

std::string fmt(double v, int decimals = 3) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// Runs gnuplot on `script`; data files are written by the caller into `dir`.
void run_gnuplot(const fs::path& dir, const std::string& script, const std::string& out) {
  const auto ext = fs::path(out).extension().string();
  std::string terminal;
  if (ext == ".png") terminal = "pngcairo size 1200,500 font 'Sans,10'";
  else if (ext == ".svg") terminal = "svg size 1200,500 dynamic font 'Sans,10'";
  else throw usage_error("--plot: '" + out + "' must end in .png or .svg");
  std::ofstream(dir / "plot.gp") << "set terminal " << terminal << "\nset output '" << fs::absolute(out).string()
                                 << "'\nset key outside right\nset grid\n" << script;
  const std::string cmd = "cd '" + dir.string() + "' && gnuplot plot.gp 2> gnuplot.err";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream err(dir / "gnuplot.err");
    const std::string text{std::istreambuf_iterator<char>(err), std::istreambuf_iterator<char>()};
    throw std::runtime_error("gnuplot failed (is gnuplot installed? make installs gnuplot-nox): " + text);
  }
}

// The names given to --strategies/--policies (or the defaults), checked.
std::vector<std::string> strategy_names(const std::vector<std::string>& given, std::vector<std::string> defaults,
                                        const std::string& flag) {
  std::vector<std::string> names = given.empty() ? std::move(defaults) : split(given);
  for (const auto& n : names) {
    try {
      (void)sim::named_strategy(n);
    } catch (const std::invalid_argument& e) {
      throw usage_error(flag + ": " + e.what());
    }
  }
  return names;
}

// A gnuplot `plot` command drawing column `col` of NAME.dat for every name.
std::string plot_command(const std::vector<std::string>& names, int col, const std::string& style) {
  std::string cmd = "plot ";
  for (std::size_t i = 0; i < names.size(); ++i) {
    cmd += "'" + names[i] + ".dat' using 1:" + std::to_string(col) + " with " + style + " title '" + names[i] + "'";
    cmd += i + 1 < names.size() ? ", " : "\n";
  }
  return cmd;
}

fs::path temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "backoff-plot-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a temporary directory");
  return tmpl;
}

int contention(const simulate_options& so) {
  sim::contention_options o;
  o.seed = so.seed;
  if (so.runs) {
    if (*so.runs < 1 || *so.runs > 100'000)
      throw usage_error("--runs: must be in 1..100000 (got " + std::to_string(*so.runs) + ")");
    o.runs = *so.runs;
  }
  if (!so.clients.empty()) {
    o.clients.clear();
    for (const auto& c : split(so.clients)) {
      const int n = to_int(c, "--clients");
      if (n < 1 || n > 100000) throw usage_error("--clients: each count must be in [1, 100000] (got " + c + ")");
      o.clients.push_back(n);
    }
  }
  o.strategies = strategy_names(so.strategies, o.strategies, "--strategies");
  double work = 0;  // client-runs: each costs about one client's writes
  for (const int c : o.clients) work += static_cast<double>(c) * o.runs * static_cast<double>(o.strategies.size());
  if (work > 1e9) throw usage_error("--clients × --runs: more than 1e9 client runs in all");
  const auto rows = sim::run_contention(o);
  if (so.format == "csv") {
    std::cout << "clients,strategy,mean_writes,mean_completion_ms,p50_completion_ms,p99_completion_ms\n";
    for (const auto& r : rows)
      std::cout << r.clients << "," << r.strategy << "," << fmt(r.mean_writes) << "," << fmt(r.mean_completion_ms) << ","
                << fmt(r.p50_completion_ms) << "," << fmt(r.p99_completion_ms) << "\n";
  } else if (so.format == "json") {
    nlohmann::json doc = nlohmann::json::array();
    for (const auto& r : rows)
      doc.push_back({{"clients", r.clients}, {"strategy", r.strategy}, {"mean_writes", r.mean_writes},
                     {"mean_completion_ms", r.mean_completion_ms}, {"p50_completion_ms", r.p50_completion_ms},
                     {"p99_completion_ms", r.p99_completion_ms}});
    std::cout << doc.dump(2) << "\n";
  } else {
    std::printf("%8s  %-14s %12s %14s %12s %12s\n", "clients", "strategy", "writes", "completion", "p50", "p99");
    for (const auto& r : rows)
      std::printf("%8d  %-14s %12.1f %12.1fms %10.1fms %10.1fms\n", r.clients, r.strategy.c_str(), r.mean_writes,
                  r.mean_completion_ms, r.p50_completion_ms, r.p99_completion_ms);
  }
  if (!so.plot.empty()) {
    const auto dir = temp_dir();
    for (const auto& name : o.strategies) {
      std::ofstream data(dir / (name + ".dat"));
      for (const auto& r : rows)
        if (r.strategy == name) data << r.clients << " " << r.mean_writes << " " << r.mean_completion_ms << "\n";
    }
    run_gnuplot(dir,
                "set multiplot layout 1,2\nset xlabel 'clients'\nset ylabel 'writes (work)'\nset title 'Work'\n" +
                    plot_command(o.strategies, 2, "linespoints") +
                    "set ylabel 'ms'\nset title 'Completion time'\nset logscale y\n" +
                    plot_command(o.strategies, 3, "linespoints") + "unset multiplot\n",
                so.plot);
    fs::remove_all(dir);
  }
  return exit_code::ok;
}

int failures(const simulate_options& so) {
  sim::failures_options o;
  o.seed = so.seed;
  o.gate_per_client = so.gate_per_client;
  if (!so.clients.empty()) {
    const auto c = split(so.clients);
    if (c.size() != 1) throw usage_error("--clients: failures takes one count");
    const int n = to_int(c[0], "--clients");
    if (n < 1) throw usage_error("--clients: must be at least 1 (got " + c[0] + ")");
    o.clients = static_cast<std::uint32_t>(n);
  }
  if (so.rate) {
    if (!(*so.rate > 0) || *so.rate > 1e6) throw usage_error("--rate: must be in (0, 1000000]");
    o.rate_per_client = *so.rate;
  }
  if (!so.duration.empty()) o.length = parse_duration(so.duration, "--duration");
  if (o.length.count() <= 0 || o.length > std::chrono::hours{24}) throw usage_error("--duration: must be in (0, 24h]");
  if (static_cast<double>(o.clients) * o.rate_per_client * std::chrono::duration<double>(o.length).count() > max_events)
    throw usage_error("--clients × --rate × --duration: more than 2e9 requests");
  if (!so.failure_rates.empty()) {
    o.failure_rates.clear();
    for (const auto& f : split(so.failure_rates)) {
      const double p = to_double(f, "--failure-rates");
      if (!(p >= 0 && p <= 1)) throw usage_error("--failure-rates: each must be in [0, 1] (got " + f + ")");
      o.failure_rates.push_back(p);
    }
  }
  o.policies = strategy_names(so.policies, o.policies, "--policies");
  const auto rows = sim::run_failures(o);
  if (so.format == "csv") {
    std::cout << "failure_rate,policy,amplification,success_rate\n";
    for (const auto& r : rows)
      std::cout << fmt(r.failure_rate, 4) << "," << r.policy << "," << fmt(r.amplification, 4) << ","
                << fmt(r.success_rate, 6) << "\n";
  } else if (so.format == "json") {
    nlohmann::json doc = nlohmann::json::array();
    for (const auto& r : rows)
      doc.push_back({{"failure_rate", r.failure_rate}, {"policy", r.policy}, {"amplification", r.amplification},
                     {"success_rate", r.success_rate}, {"requests", r.requests}, {"attempts", r.attempts}});
    std::cout << doc.dump(2) << "\n";
  } else {
    std::printf("%8s  %-16s %14s %13s %12s\n", "failure", "policy", "amplification", "success", "requests");
    for (const auto& r : rows)
      std::printf("%8.2f  %-16s %13.3fx %12.4f%% %12llu\n", r.failure_rate, r.policy.c_str(), r.amplification,
                  r.success_rate * 100, static_cast<unsigned long long>(r.requests));
  }
  if (!so.plot.empty()) {
    const auto dir = temp_dir();
    for (const auto& name : o.policies) {
      std::ofstream data(dir / (name + ".dat"));
      for (const auto& r : rows)
        if (r.policy == name) data << r.failure_rate << " " << r.amplification << " " << r.success_rate * 100 << "\n";
    }
    run_gnuplot(dir,
                "set multiplot layout 1,2\nset xlabel 'failure rate'\nset ylabel 'server attempts / requests'\n"
                "set title 'Load amplification'\n" + plot_command(o.policies, 2, "linespoints") +
                    "set ylabel '% of requests'\nset title 'Client success'\n" +
                    plot_command(o.policies, 3, "linespoints") + "unset multiplot\n",
                so.plot);
    fs::remove_all(dir);
  }
  return exit_code::ok;
}

int overload(const simulate_options& so) {
  sim::overload_options o;
  o.seed = so.seed;
  if (so.shape == "spike") o.shape = sim::load_shape::spike;
  else if (so.shape == "ramp") o.shape = sim::load_shape::ramp;
  else throw usage_error("--shape: unknown shape '" + so.shape + "' (choose spike or ramp)");
  if (!so.duration.empty()) o.length = parse_duration(so.duration, "--duration");
  if (o.length < std::chrono::seconds{40} || o.length > std::chrono::hours{24})
    throw usage_error("--duration: overload needs 40s..24h");
  o.policies = strategy_names(so.policies, o.policies, "--policies");
  const auto res = sim::run_overload(o);
  if (so.format == "csv") {
    std::cout << "policy,t_s,offered_per_s,attempts_per_s,goodput_per_s\n";
    for (const auto& r : res.rows)
      std::cout << r.policy << "," << fmt(r.t_s, 1) << "," << fmt(r.offered_per_s, 1) << "," << fmt(r.attempts_per_s, 1)
                << "," << fmt(r.goodput_per_s, 1) << "\n";
  } else if (so.format == "json") {
    nlohmann::json rows = nlohmann::json::array(), sums = nlohmann::json::array();
    for (const auto& r : res.rows)
      rows.push_back({{"policy", r.policy}, {"t_s", r.t_s}, {"offered_per_s", r.offered_per_s},
                      {"attempts_per_s", r.attempts_per_s}, {"goodput_per_s", r.goodput_per_s}});
    for (const auto& s : res.summaries)
      sums.push_back({{"policy", s.policy}, {"trigger_end_s", s.trigger_end_s},
                      {"recovered_at_s", s.recovered_at_s ? nlohmann::json(*s.recovered_at_s) : nlohmann::json()},
                      {"goodput_share", s.goodput_share}});
    std::cout << nlohmann::json{{"windows", rows}, {"summary", sums}}.dump(2) << "\n";
  } else {
    std::printf("%-16s %12s %14s %14s\n", "policy", "trigger end", "recovered at", "goodput share");
    for (const auto& s : res.summaries)
      std::printf("%-16s %11.0fs %14s %13.1f%%\n", s.policy.c_str(), s.trigger_end_s,
                  s.recovered_at_s ? (fmt(*s.recovered_at_s, 0) + "s").c_str() : "never", s.goodput_share * 100);
  }
  if (!so.plot.empty()) {
    const auto dir = temp_dir();
    for (const auto& name : o.policies) {
      std::ofstream data(dir / (name + ".dat"));
      for (const auto& r : res.rows)
        if (r.policy == name) data << r.t_s << " " << r.goodput_per_s << " " << r.attempts_per_s << "\n";
    }
    run_gnuplot(dir,
                "set multiplot layout 1,2\nset xlabel 't (s)'\nset ylabel 'requests/s'\nset title 'Goodput'\n" +
                    plot_command(o.policies, 2, "lines") + "set title 'Server attempts'\n" +
                    plot_command(o.policies, 3, "lines") + "unset multiplot\n",
                so.plot);
    fs::remove_all(dir);
  }
  return exit_code::ok;
}

int fleet(const simulate_options& so) {
  sim::fleet_options o;
  o.seed = so.seed;
  o.modes = {"local", "shared", "probe", "gates"};
  if (!so.clients.empty()) {
    const auto c = split(so.clients);
    if (c.size() != 1) throw usage_error("--clients: fleet takes one count (processes)");
    const int n = to_int(c[0], "--clients");
    if (n < 1 || static_cast<std::uint32_t>(n) > max_processes)
      throw usage_error("--clients: must be in 1.." + std::to_string(max_processes) + " (got " + c[0] + ")");
    o.processes = static_cast<std::uint32_t>(n);
  }
  if (so.rate) {
    if (!(*so.rate > 0) || *so.rate > 1e6) throw usage_error("--rate: must be in (0, 1000000]");
    o.rate_per_process = *so.rate;
  }
  if (!so.duration.empty()) o.length = parse_duration(so.duration, "--duration");
  if (o.length < std::chrono::seconds{1} || o.length > std::chrono::hours{24})
    throw usage_error("--duration: must be in 1s..24h");
  const auto dash = so.outage.find('-');
  if (dash == std::string::npos) throw usage_error("--outage: expected FROM-TO, e.g. 10s-30s");
  o.outage_start = parse_duration(so.outage.substr(0, dash), "--outage");
  o.outage_end = parse_duration(so.outage.substr(dash + 1), "--outage");
  if (o.outage_end < o.outage_start || o.outage_end > o.length)
    throw usage_error("--outage: must end after it starts and before --duration");
  o.retry_after = parse_duration(so.retry_after, "--retry-after");
  if (so.capacity) {
    if (!(*so.capacity > 0) || *so.capacity > 100) throw usage_error("--capacity: must be in (0, 100]");
    o.capacity = *so.capacity;
  }
  if (so.release_spread) {
    if (!(*so.release_spread >= 0 && *so.release_spread <= 1)) throw usage_error("--release-spread: must be in [0, 1]");
    o.release_spread = *so.release_spread;
  }
  if (static_cast<double>(o.processes) * o.rate_per_process * std::chrono::duration<double>(o.length).count() > max_events)
    throw usage_error("--clients × --rate × --duration: more than 2e9 requests");
  const auto res = sim::run_fleet(o);
  if (so.format == "csv") {
    std::cout << "mode,t_s,offered_per_s,attempts_per_s,goodput_per_s\n";
    for (const auto& r : res.rows)
      std::cout << r.mode << "," << fmt(r.t_s, 0) << "," << fmt(r.offered_per_s, 0) << "," << fmt(r.attempts_per_s, 0)
                << "," << fmt(r.goodput_per_s, 0) << "\n";
  } else if (so.format == "json") {
    nlohmann::json rows = nlohmann::json::array(), sums = nlohmann::json::array();
    for (const auto& r : res.rows)
      rows.push_back({{"mode", r.mode}, {"t_s", r.t_s}, {"offered_per_s", r.offered_per_s},
                      {"attempts_per_s", r.attempts_per_s}, {"goodput_per_s", r.goodput_per_s}});
    for (const auto& s : res.summaries)
      sums.push_back({{"mode", s.mode}, {"amplification_outage", s.amplification_outage},
                      {"amplification", s.amplification},
                      {"recovered_at_s", s.recovered_at_s ? nlohmann::json(*s.recovered_at_s) : nlohmann::json()},
                      {"goodput_share", s.goodput_share}, {"peak_after_outage", s.peak_after_outage},
                      {"seconds", s.seconds}});
    std::cout << nlohmann::json{{"windows", rows}, {"summary", sums}}.dump(2) << "\n";
  } else {
    std::printf("%u processes, %.3g requests/s each, outage %s, Retry-After %s, capacity %.2f× the offered load, "
                "release spread %.2f\n",
                o.processes, o.rate_per_process, so.outage.c_str(), so.retry_after.c_str(), o.capacity,
                o.release_spread);
    std::printf("%-8s %22s %14s %14s %14s %16s %10s\n", "mode", "amplification (outage)", "amplification",
                "recovered at", "goodput share", "highest second", "took");
    for (const auto& s : res.summaries)
      std::printf("%-8s %22.3f %14.3f %14s %13.1f%% %15.2f× %9.2fs\n", s.mode.c_str(), s.amplification_outage,
                  s.amplification, s.recovered_at_s ? (fmt(*s.recovered_at_s, 0) + "s").c_str() : "never",
                  s.goodput_share * 100, s.peak_after_outage, s.seconds);
  }
  if (!so.plot.empty()) {
    const auto dir = temp_dir();
    for (const auto& name : o.modes) {
      std::ofstream data(dir / (name + ".dat"));
      for (const auto& r : res.rows)
        if (r.mode == name) data << r.t_s << " " << r.goodput_per_s << " " << r.attempts_per_s << " " << r.offered_per_s << "\n";
    }
    run_gnuplot(dir,
                "set multiplot layout 1,2\nset xlabel 't (s)'\nset ylabel 'requests/s'\nset title 'Goodput'\n" +
                    plot_command(o.modes, 2, "lines") + "set title 'Server attempts'\n" +
                    plot_command(o.modes, 3, "lines") + "unset multiplot\n",
                so.plot);
    fs::remove_all(dir);
  }
  return exit_code::ok;
}

int hedging(const simulate_options& so) {
  sim::hedging_options o;
  o.seed = so.seed;
  if (so.requests) {
    if (*so.requests < 1 || *so.requests > 10'000'000) throw usage_error("--requests: must be in 1..10000000");
    o.requests = *so.requests;
  }
  if (so.hedge_max) {
    if (*so.hedge_max < 2 || *so.hedge_max > 10) throw usage_error("--hedge-max: must be in 2..10");
    o.max_attempts = *so.hedge_max;
  }
  if (!so.quantiles.empty()) {
    o.quantiles.clear();
    for (const auto& q : split(so.quantiles)) {
      const double v = to_double(q, "--quantiles");
      if (!(v > 0 && v < 1)) throw usage_error("--quantiles: '" + q + "' is not in (0, 1)");
      o.quantiles.push_back(v);
    }
  }
  const auto rows = sim::run_hedging(o);
  if (so.format == "csv") {
    std::cout << "hedge,mean_delay_ms,p50_ms,p99_ms,p999_ms,extra_load\n";
    for (const auto& r : rows)
      std::cout << r.hedge << "," << fmt(r.mean_delay_ms, 2) << "," << fmt(r.p50_ms, 2) << "," << fmt(r.p99_ms, 2) << ","
                << fmt(r.p999_ms, 2) << "," << fmt(r.extra_load, 4) << "\n";
  } else if (so.format == "json") {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : rows)
      out.push_back({{"hedge", r.hedge}, {"mean_delay_ms", r.mean_delay_ms}, {"p50_ms", r.p50_ms}, {"p99_ms", r.p99_ms},
                     {"p999_ms", r.p999_ms}, {"extra_load", r.extra_load}});
    std::cout << out.dump(2) << "\n";
  } else {
    std::printf("%llu requests; each copy log-normal around %.0f ms, %.0f %% of copies paused 200 ms-2 s; up to %u copies\n",
                static_cast<unsigned long long>(o.requests), std::chrono::duration<double, std::milli>(o.median).count(),
                o.hiccup * 100, o.max_attempts);
    std::printf("%-8s %12s %10s %10s %10s %12s\n", "hedge at", "mean delay", "p50", "p99", "p99.9", "extra load");
    for (const auto& r : rows)
      std::printf("%-8s %10.1fms %8.1fms %8.1fms %8.1fms %11.1f%%\n", r.hedge.c_str(), r.mean_delay_ms, r.p50_ms, r.p99_ms,
                  r.p999_ms, r.extra_load * 100);
  }
  if (!so.plot.empty()) {
    const auto dir = temp_dir();
    {
      std::ofstream data(dir / "hedging.dat");
      auto by_load = rows;  // drawn left to right
      std::sort(by_load.begin(), by_load.end(), [](const auto& a, const auto& b) { return a.extra_load < b.extra_load; });
      for (const auto& r : by_load)
        data << r.extra_load * 100 << " " << r.p50_ms << " " << r.p99_ms << " " << r.p999_ms << " " << r.hedge << "\n";
    }
    run_gnuplot(dir,
                "set logscale y\nset xlabel 'extra requests (%)'\nset ylabel 'request latency (ms)'\n"
                "set title 'Hedging at a quantile of recent latencies'\n"
                "plot 'hedging.dat' using 1:4 with linespoints title 'p99.9', "
                "'' using 1:3 with linespoints title 'p99', '' using 1:2 with linespoints title 'p50', "
                "'' using 1:4:5 with labels offset 0,1 notitle\n",
                so.plot);
    fs::remove_all(dir);
  }
  return exit_code::ok;
}

}  // namespace

subcommand simulate_command(CLI::App& app) {
  auto so = std::make_shared<simulate_options>();
  auto* cmd = app.add_subcommand("simulate", "Simulate retry strategies: contention, failures, overload, fleet or hedging");
  cmd->footer("Exit status: 0 on success; 2 for a bad flag or value; 1 when something else failed.");
  cmd->add_option("scenario", so->scenario, "contention, failures, overload, fleet or hedging")->required();
  cmd->add_option("--format", so->format, "table, csv or json (default table)");
  cmd->add_option("--plot", so->plot, "Draw the results with gnuplot into FILE.png or FILE.svg");
  cmd->add_option("--seed", so->seed, "Random seed (default 1): same seed, same numbers");
  cmd->add_option("--clients", so->clients,
                  "contention: counts, e.g. 1,2,5,10; failures: one count (default 100); fleet: processes (default 1000)");
  cmd->add_option("--strategies", so->strategies, "contention: none,exponential,full,equal,decorrelated or presets");
  cmd->add_option("--runs", so->runs, "contention: runs averaged per point (default 100)");
  cmd->add_option("--rate", so->rate, "failures: requests per second per client (default 10); fleet: per process (default 1)");
  cmd->add_option("--duration", so->duration, "failures: simulated time (default 10s); overload: default 90s");
  cmd->add_option("--failure-rates", so->failure_rates, "failures: e.g. 0,0.01,0.05,0.1,0.25,0.5,0.75");
  cmd->add_option("--policies", so->policies, "failures/overload: no-retries,3-retries,budget-aws,… backoff-default");
  cmd->add_option("--shape", so->shape, "overload: spike or ramp (default spike)");
  cmd->add_flag("--gate-per-client", so->gate_per_client, "failures: one gate per client instead of one shared gate");
  cmd->add_option("--outage", so->outage, "fleet: when the server is down, FROM-TO (default 10s-30s)");
  cmd->add_option("--retry-after", so->retry_after, "fleet: the Retry-After of the outage's 503s (default 5s; 0: none)");
  cmd->add_option("--capacity", so->capacity, "fleet: server capacity ÷ offered load after the outage (default 1.2)");
  cmd->add_option("--release-spread", so->release_spread,
                  "fleet: requests held by the shared release time leave spread over this fraction of their wait "
                  "after it, 0..1 (default 0; get --share uses 0.2)");
  cmd->add_option("--quantiles", so->quantiles, "hedging: hedge at these quantiles of recent latencies (default 0.5,0.9,0.95,0.99)");
  cmd->add_option("--requests", so->requests, "hedging: requests simulated (default 100000)");
  cmd->add_option("--hedge-max", so->hedge_max, "hedging: copies of a request at most, 2..10 (default 2)");
  return {cmd, [so]() -> int {
    if (so->format != "table" && so->format != "csv" && so->format != "json")
      throw usage_error("--format: unknown format '" + so->format + "' (choose table, csv or json)");
    if (so->scenario == "contention") return contention(*so);
    if (so->scenario == "failures") return failures(*so);
    if (so->scenario == "overload") return overload(*so);
    if (so->scenario == "fleet") return fleet(*so);
    if (so->scenario == "hedging") return hedging(*so);
    throw usage_error("scenario: unknown scenario '" + so->scenario +
                      "' (choose contention, failures, overload, fleet or hedging)");
  }};
}

}  // namespace backoff::cli
