// SPDX-License-Identifier: BSL-1.0
#include <cmath>
#include <limits>
#include <cstdio>
#include <sstream>

#include <charconv>

#include "cli.hpp"

namespace backoff::cli {

void share_options::add_to(CLI::App& cmd) {
  cmd.add_option("--share-password-file", password_file,
                 "Read the Redis password for --share from the first line of FILE (kept out of ps)");
  cmd.add_option("--share-cacert", cacert, "With --share rediss://: trust the CAs in FILE (PEM) for Redis");
  cmd.add_option("--share-timeout", timeout,
                 "Wait at most this long for Redis to connect or answer, e.g. 200ms (default 20ms); past it, "
                 "this process goes on with what it knows");
}

duration parse_duration(const std::string& text, const std::string& flag) {
  const auto bad = [&] {
    return usage_error(flag + ": invalid duration '" + text + "' (use a number and a unit: 250ms, 1.5s, 2m, 1h)");
  };
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) throw bad();
  double value = 0;
  try {
    std::size_t used = 0;
    value = std::stod(text.substr(0, i), &used);
    if (used != i) throw bad();
  } catch (const std::logic_error&) {
    throw bad();
  }
  const std::string unit = text.substr(i);
  double ns_per = 0;
  if (unit == "ns") ns_per = 1;
  else if (unit == "us") ns_per = 1e3;
  else if (unit == "ms") ns_per = 1e6;
  else if (unit == "s") ns_per = 1e9;
  else if (unit == "m") ns_per = 60e9;
  else if (unit == "h") ns_per = 3600e9;
  else if (unit.empty() && value == 0) ns_per = 1;
  else throw bad();
  const double ns = value * ns_per;
  if (!std::isfinite(ns) || ns >= 9.2e18) throw usage_error(flag + ": duration '" + text + "' is too long");
  return duration{static_cast<std::int64_t>(std::llround(ns))};
}

std::string format_duration(duration d) {
  char buf[64];
  const double s = std::chrono::duration<double>(d).count();
  if (d < std::chrono::seconds{1}) std::snprintf(buf, sizeof buf, "%.0fms", s * 1e3);
  else if (d < std::chrono::minutes{2}) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else std::snprintf(buf, sizeof buf, "%.0fm%02.0fs", std::floor(s / 60), std::fmod(s, 60));
  return buf;
}

std::string retries_left(std::uint32_t max_attempts, std::uint32_t done) {
  if (max_attempts == 0 || done > max_attempts) return {};
  const auto left = max_attempts - done;
  return " " + std::to_string(left) + (left == 1 ? " retry left." : " retries left.");
}

std::set<int> parse_codes(const std::string& text, const std::string& flag, int lowest, int highest,
                          const std::string& what) {
  std::set<int> out;
  std::stringstream in(text);
  std::string item;
  const auto bad = [&](const std::string& why) {
    return usage_error(flag + ": invalid " + what + "s '" + text + "' (" + why + "; e.g. " +
                       (lowest >= 100 ? "500,502-504" : "1,75-78") + ")");
  };
  auto number = [&](const std::string& s) {
    std::size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(s, &used);
    } catch (const std::logic_error&) {
      throw bad("'" + s + "' is not a number");
    }
    if (used != s.size() || v < lowest || v > highest)
      throw bad("'" + s + "' is not " + (what[0] == 'e' || what[0] == 'H' ? "an " : "a ") + what + " " + std::to_string(lowest) + "-" +
                std::to_string(highest));
    return v;
  };
  while (std::getline(in, item, ',')) {
    if (item.empty()) throw bad("empty item");
    const auto dash = item.find('-');
    if (dash == std::string::npos) {
      out.insert(number(item));
    } else {
      const int lo = number(item.substr(0, dash)), hi = number(item.substr(dash + 1));
      if (lo > hi) throw bad("range " + item + " is reversed");
      for (int c = lo; c <= hi; ++c) out.insert(c);
    }
  }
  if (out.empty()) throw bad("no codes");
  return out;
}

std::uint64_t parse_size(const std::string& text, const std::string& flag) {
  const auto bad = [&] {
    return usage_error(flag + ": invalid size '" + text + "' (use bytes, or a number with K, M, G or T: 500M)");
  };
  std::size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 19) throw bad();
  const std::uint64_t n = std::stoull(text.substr(0, i));
  std::string unit = text.substr(i);
  if (unit.size() > 1 && (unit.substr(1) == "iB" || unit.substr(1) == "B")) unit.resize(1);
  int shift = 0;
  if (unit.empty()) shift = 0;
  else if (unit == "K" || unit == "k") shift = 10;
  else if (unit == "M") shift = 20;
  else if (unit == "G") shift = 30;
  else if (unit == "T") shift = 40;
  else throw bad();
  if (n == 0) throw usage_error(flag + ": the size must be above 0");
  if (shift > 0 && n > (std::numeric_limits<std::uint64_t>::max() >> shift)) throw usage_error(flag + ": size '" + text + "' is too large");
  return n << shift;
}

void policy_flags::add_to(CLI::App& app) {
  app.add_option("--preset", preset, "Start from a documented policy: google-cloud, aws-standard, grpc, curl");
  app.add_option("--initial", initial, "First wait, e.g. 250ms, 1s (default 1s)");
  app.add_option("--multiplier", multiplier, "Growth factor of each wait, >= 1 (default 2)");
  app.add_option("--max-delay", max_delay, "Longest single wait, e.g. 32s (default 32s)");
  app.add_option("--delays", delays, "The waits spelled out, e.g. 1s,5s,30s (the last one repeats; no jitter unless --jitter)");
  app.add_option("--jitter", jitter, "none|full|equal|decorrelated|proportional:F|additive:DUR (default full)");
  app.add_option("--max-attempts", max_attempts, "Attempts in all, including the first (default 4; 0: no limit)");
  app.add_option("--max-time", max_time, "Time limit for everything, e.g. 2m: no wait crosses it, a running attempt is stopped at it");
  app.add_option_function<std::string>(
      "--seed",
      [this](const std::string& text) {
        // Digits only, within 64 bits: "-1", "1e23" or "2^64" must not wrap to some other seed.
        std::uint64_t v = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
          throw CLI::ValidationError("--seed", "'" + text + "' is not a whole number in 0..18446744073709551615");
        seed = v;
      },
      "Seed the random generator, for reproducible waits (0..2^64-1)");
}

std::optional<duration> policy_flags::time_limit() const {
  if (max_time.empty()) return std::nullopt;
  const duration d = parse_duration(max_time, "--max-time");
  if (d.count() == 0) throw usage_error("--max-time: must be longer than 0");
  return d;
}

backoff::policy policy_flags::build() const {
  backoff::policy p;
  if (!preset.empty()) {
    if (preset == "google-cloud") p = presets::google_cloud();
    else if (preset == "aws-standard") p = presets::aws_standard();
    else if (preset == "grpc") p = presets::grpc_connection(10);
    else if (preset == "curl") p = presets::curl_retry();
    else throw usage_error("--preset: unknown preset '" + preset + "' (choose google-cloud, aws-standard, grpc or curl)");
  }
  // Start from the preset's exponential numbers (every preset is exponential).
  exponential e = p.schedule.get_if<exponential>() ? *p.schedule.get_if<exponential>() : exponential{};
  if (!initial.empty()) e.initial = parse_duration(initial, "--initial");
  if (!max_delay.empty()) e.max_delay = parse_duration(max_delay, "--max-delay");
  if (!multiplier.empty()) {
    std::size_t used = 0;
    double m = 0;
    try {
      m = std::stod(multiplier, &used);
    } catch (const std::logic_error&) {
      used = 0;
    }
    if (used != multiplier.size() || !std::isfinite(m))
      throw usage_error("--multiplier: invalid number '" + multiplier + "'");
    e.multiplier = m;
  }
  // Each value checked under the name the user typed (not found again in the
  // library's message afterwards).
  if (e.initial.count() <= 0) throw usage_error("--initial: must be longer than 0");
  if (!(e.multiplier >= 1.0)) throw usage_error("--multiplier: must be at least 1 (got " + multiplier + ")");
  if (e.max_delay < e.initial)
    throw usage_error("--max-delay: must be at least --initial (" + format_duration(e.max_delay) + " < " +
                      format_duration(e.initial) + ")");
  p.schedule = e;
  if (!delays.empty()) {
    for (const auto& [flag, given] : {std::pair{"--initial", !initial.empty()}, {"--multiplier", !multiplier.empty()},
                                      {"--max-delay", !max_delay.empty()}, {"--preset", !preset.empty()}})
      if (given) throw usage_error(std::string("--delays: cannot be combined with ") + flag);
    listed l;
    l.delays.clear();
    std::stringstream in(delays);
    for (std::string item; std::getline(in, item, ',');) l.delays.push_back(parse_duration(item, "--delays"));
    if (l.delays.empty() || delays.back() == ',') throw usage_error("--delays: expected a list such as 1s,5s,30s");
    if (l.delays.size() > 1000) throw usage_error("--delays: at most 1000 waits");
    p.schedule = l;
    if (jitter.empty()) p.jitter = jitter::none();  // spelled out means exactly these
    if (jitter == "decorrelated") throw usage_error("--delays: cannot be combined with --jitter decorrelated");
  }
  if (!jitter.empty()) {
    const auto colon = jitter.find(':');
    const std::string kind = jitter.substr(0, colon), arg = colon == std::string::npos ? "" : jitter.substr(colon + 1);
    if (kind == "none" && arg.empty()) p.jitter = jitter::none();
    else if (kind == "full" && arg.empty()) p.jitter = jitter::full();
    else if (kind == "equal" && arg.empty()) p.jitter = jitter::equal();
    else if (kind == "decorrelated" && arg.empty()) {
      p.schedule = decorrelated{.base = e.initial, .max_delay = e.max_delay};
      p.jitter = jitter::none();
    } else if (kind == "proportional" && !arg.empty()) {
      std::size_t used = 0;
      double f = -1;
      try {
        f = std::stod(arg, &used);
      } catch (const std::logic_error&) {
        used = 0;
      }
      if (used != arg.size() || !(f >= 0 && f <= 1))
        throw usage_error("--jitter: proportional needs a fraction in [0, 1], got '" + arg + "'");
      p.jitter = jitter::proportional(f);
    } else if (kind == "additive" && !arg.empty()) {
      p.jitter = jitter::additive(parse_duration(arg, "--jitter additive"));
    } else {
      throw usage_error("--jitter: unknown jitter '" + jitter +
                        "' (choose none, full, equal, decorrelated, proportional:F or additive:DUR)");
    }
  }
  if (max_attempts) {
    // 0: no limit on attempts (until --max-time, a success or a signal), as
    // gRPC and curl's --retry 0 with --retry-max-time.
    p.stop = *max_attempts == 0 ? stop_rule{} : stop::after_attempts(*max_attempts);
  } else if (p.stop.max_attempts() == 0 && preset.empty()) {
    p.stop = stop::after_attempts(4);
  }
  // Never start a wait that would end past --max-time: giving up a little early
  // beats starting one last attempt at the limit with no time left to run.
  if (const auto limit = time_limit()) p.stop = p.stop | stop::before_elapsed(*limit);
  return p;
}

}  // namespace backoff::cli
