// SPDX-License-Identifier: BSL-1.0
#include "run_loop.hpp"

#include <signal.h>

#include <cstring>
#include <ostream>

#include "report.hpp"

namespace backoff::cli {

std::string describe(const outcome& o) {
  if (o.exec_failed) return o.error;
  if (o.timed_out) return "timed out";
  if (o.output_asks_retry) return "output matched --retry-if-output (exit " + std::to_string(o.exit_code) + ")";
  if (o.signal) return std::string("killed by signal ") + std::to_string(o.signal) + " (" + ::strsignal(o.signal) + ")";
  return "exit " + std::to_string(o.exit_code);
}

run_plan plan_run(const run_options& o) {
  run_plan plan;
  plan.policy = o.policy.build();
  plan.time_limit = o.policy.time_limit();
  plan.seed = o.policy.seed;
  plan.quiet = o.quiet;
  auto compile = [](const std::string& text, const std::string& flag) {
    try {
      return std::regex(text, std::regex::extended);
    } catch (const std::regex_error& e) {
      throw usage_error(flag + ": '" + text + "' is not a valid regular expression (" + e.what() + ")");
    }
  };
  if (!o.retry_if_output.empty()) plan.retry_re = compile(o.retry_if_output, "--retry-if-output");
  if (!o.success_if_output.empty()) plan.success_re = compile(o.success_if_output, "--success-if-output");
  if (!o.share.url.empty() && o.share_key.empty()) throw usage_error("--share: needs --share-key NAME");
  if (o.share.url.empty() && !o.share_key.empty()) throw usage_error("--share-key: needs --share");
  if (o.share_key.find_first_of("{} \t\r\n") != std::string::npos)
    throw usage_error("--share-key: '" + o.share_key + "' may not hold braces or spaces");
  plan.share_key = o.share_key;
  if (!o.attempt_timeout.empty()) {
    plan.attempt_limit = parse_duration(o.attempt_timeout, "--attempt-timeout");
    if (plan.attempt_limit.count() == 0) throw usage_error("--attempt-timeout: must be longer than 0");
  }
  plan.kill_after = parse_duration(o.kill_after, "--kill-after");
  if (!o.retry_on.empty()) plan.retry_on = parse_codes(o.retry_on, "--retry-on-exit");
  if (!o.no_retry_on.empty()) plan.no_retry_on = parse_codes(o.no_retry_on, "--no-retry-on-exit");
  if (plan.retry_on.count(0)) throw usage_error("--retry-on-exit: 0 means success and cannot be retried");
  return plan;
}

run_result run_loop(const run_plan& plan, run_context& ctx) {
  const policy& p = plan.policy;
  fast_rng seeded{plan.seed.value_or(0)};
  const time_point started = ctx.clock.now();
  const std::uint32_t max_attempts = p.stop.max_attempts();
  run_result out;
  std::uint32_t number = 0;
  bool interrupted = false;  // a signal stopped an attempt that was to be retried

  options<outcome> o{
      // Output that matches --retry-if-output is retried even after exit 0;
      // output that matches --success-if-output succeeds whatever the exit
      // status (unless --retry-if-output matched too: a retry is the safer reading).
      .classify = {.is_success =
                       [](const outcome& r) {
                         if (r.output_asks_retry) return false;
                         return r.status == 0 || (r.output_says_success && !r.exec_failed);
                       },
                   .retry_value =
                       [&](const outcome& r) {
                         // Interrupted by the user (directly, as the terminal's foreground job): stop.
                         if (r.exec_failed || r.signal == SIGINT || r.signal == SIGQUIT) return false;
                         const bool retry = r.output_asks_retry || r.timed_out ||
                                            r.exit_code < 0 ||  // killed by a signal not from us
                                            (!plan.no_retry_on.count(r.exit_code) &&
                                             (plan.retry_on.empty() || plan.retry_on.count(r.exit_code) > 0));
                         // A signal stops the loop. One the command was given while it
                         // ran leaves its exit status as its answer; one that came after
                         // it ended (before this decision) is one during the wait.
                         if (ctx.signal()) {
                           interrupted = retry && !(ctx.signal_forwarded && ctx.signal_forwarded());
                           return false;
                         }
                         return retry;
                       }},
      .after_attempt =
          [&](const attempt<outcome>& a) {
            const outcome& r = *a.result;
            out.attempts.push_back(
                {{"attempt", a.record.number},
                 {"start_s", seconds(a.record.start)},
                 {"duration_s", seconds(a.record.took)},
                 {"exit_code", r.exit_code >= 0 ? nlohmann::json(r.exit_code) : nlohmann::json()},
                 {"signal", r.signal ? nlohmann::json(r.signal) : nlohmann::json()},
                 {"timed_out", r.timed_out},
                 {"outcome", std::string(to_string(a.record.outcome))},
                 {"error", r.status == 0 && a.record.outcome == attempt_outcome::success ? std::string() : describe(r)},
                 {"hint_s", nullptr},
                 {"delay_s", seconds(a.record.delay)}});
            if (plan.quiet || r.status == 0) return;
            if (r.exec_failed) {
              ctx.err << "backoff: " << r.error << "\n";
            } else if (!a.last) {
              ctx.err << "backoff: attempt " << a.record.number << " failed (" << describe(r) << "). Will retry in "
                      << format_duration(a.record.delay) << "." << retries_left(max_attempts, a.record.number) << "\n";
            }
          },
      .on_give_up =
          [&](const attempt<outcome>& a) {
            if (plan.quiet || !a.result || a.result->exec_failed) return;
            ctx.err << "backoff: giving up after " << a.record.number << (a.record.number == 1 ? " attempt" : " attempts")
                    << " (" << to_string(interrupted ? stop_reason::cancelled : a.reason) << "): " << describe(*a.result)
                    << "\n";
          },
      .gate = ctx.gate,
      .gate_first_attempt = ctx.gate != nullptr,
      .clock = &ctx.clock,
      .stop_token = ctx.stop,
  };
  if (plan.seed) o.rng = seeded;

  auto result = try_retry(p, [&] {
    ++number;
    duration this_limit = plan.attempt_limit;
    if (plan.time_limit) {
      // --max-time also ends a running attempt.
      const duration left = *plan.time_limit - (ctx.clock.now() - started);
      const duration capped = std::max(left, duration{std::chrono::milliseconds(1)});
      if (this_limit.count() == 0 || capped < this_limit) this_limit = capped;
    }
    return ctx.launch(number, this_limit);
  }, o);
  if (result.error) std::rethrow_exception(result.error);
  out.reason = interrupted ? stop_reason::cancelled : result.reason;

  // No attempt at all: a signal, or a shared gate that refused even the first
  // attempt (the fleet's breaker is open).
  const int sig = ctx.signal();
  const bool refused = !result.value && !sig;
  out.status = result.value ? result.value->status : refused ? exit_code::refused : 128 + sig;
  // Stopped by a signal while waiting between attempts: say so, as get does,
  // rather than pass on the status of an attempt that was going to be retried.
  if (result.value && sig && (result.reason == stop_reason::cancelled || interrupted)) out.status = 128 + sig;
  // --success-if-output matched: the run succeeded, whatever the command exited with.
  if (result.value && result.reason == stop_reason::success && result.value->output_says_success) out.status = 0;
  // Gave up on output that kept asking for a retry: not a success, even if the command exited 0.
  if (result.value && result.reason != stop_reason::success && result.value->output_asks_retry && out.status == 0)
    out.status = 1;
  if (refused && !plan.quiet)
    ctx.err << "backoff: not running the command: " << to_string(result.reason) << " for '" << plan.share_key
            << "' in the fleet (--share)\n";
  return out;
}

}  // namespace backoff::cli
