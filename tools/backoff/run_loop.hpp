// SPDX-License-Identifier: BSL-1.0
// The retry loop of `backoff run`, apart from processes, signals and the real
// clock: flags become a typed run_plan (plan_run, pure), and run_loop drives
// attempts through a run_context. The command uses the real clock and
// fork/exec; tests use backoff::manual_clock and a scripted launcher, in
// process, so that --max-time, the waits and a signal between attempts are
// checked without sleeping.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <iosfwd>
#include <optional>
#include <regex>
#include <set>
#include <stop_token>
#include <string>
#include <vector>

#include "metrics.hpp"
#include "backoff/backoff.hpp"
#include "cli.hpp"

namespace backoff::cli {

// How one attempt ended.
struct outcome {
  int status = 0;          // what backoff exits with if this is the last attempt
  int exit_code = -1;      // the child's exit code, or -1
  int signal = 0;          // the signal that killed it, or 0
  bool timed_out = false;  // killed by --attempt-timeout / --max-time
  bool exec_failed = false;
  bool output_asks_retry = false;    // a line matched --retry-if-output
  bool output_says_success = false;  // a line matched --success-if-output
  std::string error;
};
std::string describe(const outcome& o);

// The flags of `backoff run`, as CLI11 fills them in.
struct run_options {
  policy_flags policy;
  std::string retry_on, no_retry_on, attempt_timeout, kill_after = "5s", report;
  bool stdin_replay = false, quiet = false;
  share_options share;     // --share redis://…, and its flags
  std::string share_key;  // --share-key NAME
  std::string retry_if_output, success_if_output;  // extended regular expressions, matched line by line
  metrics_options metrics;                          // --metrics, --metrics-name, --push-metrics
  std::vector<std::string> command;
};

// What the flags mean, checked: everything that can be wrong is found here,
// before anything runs.
struct run_plan {
  backoff::policy policy;
  std::optional<duration> time_limit;  // --max-time
  duration attempt_limit{0};           // --attempt-timeout (0: none)
  duration kill_after{0};
  std::set<int> retry_on, no_retry_on;
  std::optional<std::regex> retry_re, success_re;
  std::optional<std::uint64_t> seed;
  bool quiet = false;
  std::string share_key;
};
// Throws usage_error naming the flag at fault.
run_plan plan_run(const run_options& o);

struct run_context {
  backoff::clock& clock;
  std::ostream& err;
  // Runs attempt `n` (1-based) within `limit` (0: none).
  std::function<outcome(std::uint32_t n, duration limit)> launch;
  std::stop_token stop;            // a stop request (a signal) ends the loop, or the wait
  std::function<int()> signal;     // the signal that asked it (0: none)
  backoff::gate* gate = nullptr;   // --share
  // Whether the signal reached the command while it ran (none: it did not).
  std::function<bool()> signal_forwarded = {};
};

struct run_result {
  int status = 0;  // what backoff exits with
  stop_reason reason = stop_reason::success;
  nlohmann::json attempts = nlohmann::json::array();  // docs/reports.md
};
run_result run_loop(const run_plan& plan, run_context& ctx);

}  // namespace backoff::cli
