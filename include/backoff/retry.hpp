// SPDX-License-Identifier: BSL-1.0
// backoff/retry.hpp — the retry loop.
//
//   auto body = backoff::retry(policy, [&] { return fetch(url); });          // throws the real error
//   auto r = backoff::try_retry(policy, [&] { return read_config(); });     // no exceptions
//   if (!r.ok()) log(backoff::to_string(r.reason), r.history.total());
//
// What happens, attempt by attempt:
//   1. Call fn. It returns a value or throws.
//   2. Classify (options::classify): a throw is a failure; a value is a failure
//      when is_success says so (by default: an expected-like value without a
//      value, or a non-zero std::error_code). A failure is retryable when
//      retry_exception / retry_value says so (default: every failure is), else
//      permanent.
//   3. Success ends the loop. A permanent failure goes to options::fallback when set
//      (its value becomes the result) or ends the loop.
//   4. Otherwise the policy picks the wait, the stop rule may end the loop or
//      shorten the wait, and the loop sleeps on the injected clock. A stop_token
//      cancels the loop, also in the middle of a sleep.
//
// Hooks run on the calling thread; a hook that throws ends the loop with that
// exception. The success path performs no allocation and, unless a hook or a
// time-based stop rule needs it, does not read the clock.
#pragma once

#include <algorithm>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include "backoff/classify.hpp"
#include "backoff/clock.hpp"
#include "backoff/error.hpp"
#include "backoff/gate.hpp"
#include "backoff/history.hpp"
#include "backoff/policy.hpp"
#include "backoff/random.hpp"
#include "backoff/step.hpp"

namespace backoff {

// What a callable returning R leaves behind; void becomes std::monostate.
template <class R>
using value_t = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

// One attempt, as hooks and the fallback see it.
template <class R>
struct attempt {
  attempt_record record;
  const value_t<R>* result;  // the returned value, or null when the attempt threw
  std::exception_ptr error;  // the thrown exception, or null when it returned
  stop_reason reason;        // why the loop ends when `last`; success while it goes on
  bool last;                 // no attempt follows this one
};

namespace detail {
template <class R>
bool default_success(const R& v) noexcept {
  if constexpr (std::is_same_v<R, std::error_code>) {
    return !v;
  } else if constexpr (expected_like<R>) {
    return v.has_value();
  } else {
    (void)v;
    return true;
  }
}

}  // namespace detail

// How an attempt ended — success, retryable or permanent — decided in one
// place. Every member is optional:
//   is_success       whether a returned value is a success (default: an
//                    expected-like value that has one, a zero std::error_code,
//                    any other value)
//   retry_value      whether a failed value is worth another attempt (default: yes)
//   retry_exception  whether an exception is worth another attempt (default:
//                    yes); classify.hpp builds these, e.g. on_exception<http_error>(
//                    [](const http_error& e) { return e.status() >= 500; })
template <class R>
struct classifier {
  using value_type = value_t<R>;
  std::function<bool(const value_type&)> is_success{};
  std::function<bool(const value_type&)> retry_value{};
  std::function<bool(const std::exception_ptr&)> retry_exception{};

  bool succeeded(const value_type& v) const { return is_success ? is_success(v) : detail::default_success(v); }
  // `error` when the attempt threw, else `value`.
  attempt_outcome operator()(const value_type* value, const std::exception_ptr* error) const {
    if (error) return !retry_exception || retry_exception(*error) ? attempt_outcome::retryable : attempt_outcome::permanent;
    if (succeeded(*value)) return attempt_outcome::success;
    return !retry_value || retry_value(*value) ? attempt_outcome::retryable : attempt_outcome::permanent;
  }
};

// Everything about a loop that depends on the callable's result type.
// Every member is optional; designated initializers pick the ones you need.
template <class R>
struct options {
  using value_type = value_t<R>;
  using fallback_fn = std::conditional_t<std::is_void_v<R>, std::function<void(const attempt<R>&)>,
                                         std::function<value_type(const attempt<R>&)>>;

  // Success, retryable or permanent (see classifier above).
  classifier<R> classify{};
  // Turns a permanent failure into a result (the seed's action_when_error).
  fallback_fn fallback{};

  // Hooks. before_retry runs after the wait, right before the next attempt
  // (refresh a token, reconnect); after_attempt after every attempt; on_give_up
  // once when the loop ends without success; on_success once on success.
  std::function<void(const attempt<R>&)> before_retry{};
  std::function<void(const attempt<R>&)> after_attempt{};
  std::function<void(const attempt<R>&)> on_give_up{};
  std::function<void(const attempt<R>&)> on_success{};

  // The wait the server asked for after a failed attempt (an HTTP Retry-After,
  // say), or nullopt. The loop then waits max(the policy's delay, hint). A hinted
  // wait is never shortened by a time limit: if it would cross one, the loop gives
  // up at once (reason deadline) instead of sleeping.
  std::function<std::optional<duration>(const attempt<R>&)> server_hint{};

  // Overload protection (backoff/gate.hpp): asked before each retry, told about
  // every attempt. A denial ends the loop at once with the gate's reason and
  // the last real error. With gate_first_attempt, the first attempt asks too.
  backoff::gate* gate = nullptr;
  bool gate_first_attempt = false;
  // Told every attempt, retry, gate denial and the end (backoff/observer.hpp;
  // backoff::metrics counts them). Unset: nothing is called.
  backoff::observer* observer = nullptr;
  // Whether a failed attempt was a timeout (AWS's budget charges those more).
  std::function<bool(const attempt<R>&)> is_timeout{};
  // Whether a failed attempt still moved the work forward (a resumable download
  // that received bytes). Such an attempt restarts the schedule at its first
  // delay and is not counted by after_attempts: what ends work that keeps
  // progressing is a time limit, or attempts that make no progress.
  std::function<bool(const attempt<R>&)> made_progress{};

  backoff::clock* clock = nullptr;  // default: real_clock::instance()
  random_ref rng{};                 // default: a per-thread fast_rng
  std::stop_token stop_token{};     // cancels the loop, even mid-sleep
  // retry() only: throw backoff::retry_error (reason, history, nested last
  // error) instead of rethrowing the last exception unchanged.
  bool wrap_errors = false;
};

// The outcome of try_retry: never throws for the callable's failures.
template <class R>
struct retry_result {
  std::optional<value_t<R>> value;  // the last returned value (or the fallback's)
  std::exception_ptr error;         // the last exception, when the last attempt threw
  stop_reason reason = stop_reason::success;
  backoff::history history;

  // True when the loop produced a usable result: success, or a fallback value.
  bool ok() const noexcept { return reason == stop_reason::success || reason == stop_reason::fallback; }
  std::uint64_t attempts() const noexcept { return history.total(); }
};

namespace detail {

// std::exception_ptr's destructor is an out-of-line library call; holding it in
// an optional keeps the success path free of it.
using error_slot = std::optional<std::exception_ptr>;

template <class R>
struct loop_end {
  std::optional<value_t<R>> value;
  error_slot error;
  stop_reason reason;
};

// The first attempt when retry() already made it (see retry()'s fast path).
template <class R>
struct first_attempt {
  std::optional<value_t<R>> value;
  error_slot thrown;
};

template <class R, class F>
loop_end<R> run(const policy& p, F& fn, const options<R>& o, history* h, first_attempt<R>* first = nullptr) {
  using V = value_t<R>;
  const bool hooks = o.before_retry || o.after_attempt || o.on_give_up || o.on_success;
  // Read the clock before the first attempt whenever something will see its
  // record; a loop that does not may skip it (the success path stays cheap).
  const bool timed = h != nullptr || hooks || p.stop.uses_clock() || o.gate != nullptr || o.server_hint ||
                     o.fallback || o.made_progress || o.observer != nullptr;
  backoff::clock* clock_ptr = o.clock;
  auto clk = [&]() -> backoff::clock& {
    if (!clock_ptr) clock_ptr = &real_clock::instance();
    return *clock_ptr;
  };

  // A bad policy (a jitter written as a plain struct, say) is reported before
  // any attempt. A loop whose first attempt was already made (retry()'s fast
  // path) checks before its first retry, keeping that attempt's error nested.
  if (first == nullptr) p.validate();
  retry_step step(p, {o.gate, o.gate_first_attempt, o.observer});
  time_point start{};
  bool clock_started = false;
  if (timed && first == nullptr) {
    start = clk().now();
    step.started_at(start);
    clock_started = true;
  }
  random_ref rng = o.rng;
  // Sleeps until the gate's time, asking it again while it says recheck:
  // why the loop must stop, or nothing.
  auto wait_for_gate = [&](retry_step::first_decision d) -> std::optional<stop_reason> {
    for (;;) {
      if (d.not_before > clk().now() && !clk().sleep_until(d.not_before, o.stop_token)) {
        step.abandon();
        return stop_reason::cancelled;
      }
      if (!d.recheck) return std::nullopt;
      d = step.recheck(clk().now());
      if (!d.allowed) return d.reason;
    }
  };

  for (std::uint32_t n = 1;; ++n) {
    if (o.stop_token.stop_requested() && !(n == 1 && first != nullptr)) {
      step.abandon();
      attempt<R> a{{n - 1, attempt_outcome::permanent, false, {}, {}, {}, duration{-1}}, nullptr, {}, stop_reason::cancelled, true};
      if (o.on_give_up) o.on_give_up(a);
      return {std::nullopt, std::nullopt, stop_reason::cancelled};
    }
    if (n == 1 && o.gate && o.gate_first_attempt && first == nullptr) {
      const auto d = step.start(start);
      if (!d.allowed) {
        const attempt<R> a{{0, attempt_outcome::permanent, false, {}, {}, {}, duration{-1}}, nullptr, {}, d.reason, true};
        if (o.on_give_up) o.on_give_up(a);
        return {std::nullopt, std::nullopt, d.reason};
      }
      if (d.not_before > start || d.recheck) {
        if (const auto why = wait_for_gate(d)) {
          if (*why != stop_reason::cancelled && o.on_give_up) {
            const attempt<R> a{{0, attempt_outcome::permanent, false, {}, {}, {}, duration{-1}}, nullptr, {}, *why, true};
            o.on_give_up(a);
          }
          return {std::nullopt, std::nullopt, *why};
        }
        start = clk().now();
        step.started_at(start);
      }
    }
    const time_point t0 = (clock_started && n > 1) ? clk().now() : start;
    if (o.observer) o.observer->attempt_started(n, t0);

    std::optional<V> value;
    error_slot thrown;
    if (first != nullptr && n == 1) {
      value = std::move(first->value);
      thrown = std::move(first->thrown);
    } else try {
      if constexpr (std::is_void_v<R>) {
        fn();
        value.emplace();
      } else {
        value.emplace(fn());
      }
    } catch (...) {
      thrown.emplace(std::current_exception());
    }

    const attempt_outcome outcome = o.classify(value ? &*value : nullptr, thrown ? &*thrown : nullptr);

    if (outcome == attempt_outcome::success) [[likely]] {
      if (timed) {
        const time_point t1 = clk().now();
        if (!clock_started) {  // the first attempt ran before the clock was read
          start = t1;
          clock_started = true;
        }
        const time_point begun = n == 1 ? start : t0;
        if (o.gate || o.observer) step.after({outcome, t1, std::nullopt, false, false, t1 - begun}, rng);
        const attempt_record rec{n, outcome, false, begun - start, t1 - begun, duration{0}, duration{-1}};
        if (h) h->push(rec);
        if (hooks) {
          const attempt<R> a{rec, &*value, nullptr, stop_reason::success, true};
          if (o.after_attempt) o.after_attempt(a);
          if (o.on_success) o.on_success(a);
        }
      }
      return {std::move(value), std::nullopt, stop_reason::success};
    }

    // Failure path: from here on the clock is always read.
    const time_point t1 = clk().now();
    if (!clock_started) {
      // The first attempt ran before the clock was read: it is taken to have
      // begun and ended now (start 0, took 0), never at the clock's epoch.
      start = t1;
      step.started_at(start);
      clock_started = true;
    }
    const time_point begun = n == 1 ? start : t0;
    std::exception_ptr error = thrown ? std::move(*thrown) : std::exception_ptr{};
    attempt_record rec{n, outcome, static_cast<bool>(error), begun - start, t1 - begun, duration{0}, duration{-1}};
    const V* result = value ? &*value : nullptr;

    auto give_up = [&](stop_reason why) -> loop_end<R> {
      if (h) h->push(rec);
      const attempt<R> a{rec, result, error, why, true};
      if (o.after_attempt) o.after_attempt(a);
      if (why == stop_reason::permanent && o.fallback) {
        if constexpr (std::is_void_v<R>) {
          o.fallback(a);
          value.emplace();
        } else {
          value.emplace(o.fallback(a));
        }
        const attempt<R> fa{rec, &*value, error, stop_reason::fallback, true};
        if (o.on_give_up) o.on_give_up(fa);
        return {std::move(value), std::nullopt, stop_reason::fallback};
      }
      if (o.on_give_up) o.on_give_up(a);
      return {std::move(value), std::move(error), why};
    };

    const attempt<R> seen{rec, result, error, stop_reason::success, false};
    retry_step::report report{outcome, t1, std::nullopt, false, false, t1 - begun};
    if (o.gate && o.is_timeout) report.timed_out = o.is_timeout(seen);
    if (outcome == attempt_outcome::retryable) {
      if (n == 1 && first != nullptr) {
        try {
          p.validate();
        } catch (const std::invalid_argument& bad) {
          if (!error) throw;
          try {
            std::rethrow_exception(error);
          } catch (...) {
            std::throw_with_nested(std::invalid_argument(bad.what()));
          }
        }
      }
      if (o.server_hint) report.hint = o.server_hint(seen);
      if (o.made_progress) report.made_progress = o.made_progress(seen);
    }
    const retry_step::decision d = step.after(report, rng);
    rec.hint = d.hint;
    if (d.stop) return give_up(d.reason);
    rec.delay = d.delay;

    if (h) h->push(rec);
    const attempt<R> a{rec, result, error, stop_reason::success, false};
    if (o.after_attempt) o.after_attempt(a);
    if (!clk().sleep_for(d.delay, o.stop_token)) {
      step.abandon();
      if (o.on_give_up) o.on_give_up(attempt<R>{rec, result, error, stop_reason::cancelled, true});
      return {std::move(value), std::move(error), stop_reason::cancelled};
    }
    if (d.recheck) {
      if (const auto why = wait_for_gate({true, stop_reason::success, {}, true})) {
        if (o.on_give_up) o.on_give_up(attempt<R>{rec, result, error, *why, true});
        return {std::move(value), std::move(error), *why};
      }
    }
    if (o.before_retry) o.before_retry(a);
  }
}

template <class F>
using result_of_t = std::invoke_result_t<F&>;

template <class R>
const options<R>& default_options() {
  static const options<R> defaults{};
  return defaults;
}

inline const policy& default_policy() {
  static const policy p{};
  return p;
}

}  // namespace detail

// Runs fn under the policy and returns everything that happened; exceptions
// thrown by fn are captured in the result, never propagated. (A hook that
// throws still propagates its exception.)
template <class F>
retry_result<detail::result_of_t<F>> try_retry(const policy& p, F&& fn,
                                               const options<detail::result_of_t<F>>& o =
                                                   detail::default_options<detail::result_of_t<F>>()) {
  using R = detail::result_of_t<F>;
  retry_result<R> out;
  auto end = detail::run<R>(p, fn, o, &out.history);
  out.value = std::move(end.value);
  if (end.error) out.error = std::move(*end.error);
  out.reason = end.reason;
  return out;
}

namespace detail {

// Everything after the first attempt, and every loop that needs more than the
// fast path offers. Kept out of line so that retry() itself stays small enough
// to inline into the caller.
template <class R, class F>
[[gnu::noinline]] R retry_slow(const policy& p, F& fn, const options<R>& o, first_attempt<R>* first) {
  if (!o.wrap_errors) {
    auto end = run<R>(p, fn, o, nullptr, first);
    if (end.reason == stop_reason::cancelled) {
      // Not the callable's last exception: the caller must be able to tell
      // that the loop was cancelled. That exception stays nested.
      if (end.error && *end.error) {
        try {
          std::rethrow_exception(*end.error);
        } catch (...) {
          std::throw_with_nested(retry_error(end.reason, *end.error, history{}, "cancelled"));
        }
      }
      throw retry_error(end.reason, nullptr, history{}, "cancelled");
    }
    if (end.error && *end.error) std::rethrow_exception(*end.error);
    if (!end.value) throw retry_error(end.reason, nullptr, history{}, "no attempt was made");
    if constexpr (!std::is_void_v<R>) return std::move(*end.value);
    else return;
  }
  history h;
  auto end = run<R>(p, fn, o, &h, first);
  if (end.reason == stop_reason::success || end.reason == stop_reason::fallback) {
    if constexpr (!std::is_void_v<R>) return std::move(*end.value);
    else return;
  }
  if (end.error && *end.error) {
    try {
      std::rethrow_exception(*end.error);
    } catch (...) {
      std::throw_with_nested(retry_error(end.reason, *end.error, h, {}));
    }
  }
  throw retry_error(end.reason, nullptr, h, end.value ? "the last attempt returned a failed result" : "");
}

}  // namespace detail

namespace detail {

// The loop after a first attempt that retry()'s fast path made and that did
// not succeed: what it returned, or what it threw, is handed over here.
template <class R, class F, class Options>
[[gnu::noinline]] R retry_after_first(const policy& p, F& fn, const Options& options,
                                      std::optional<value_t<R>>&& value, std::exception_ptr&& thrown) {
  first_attempt<R> first{std::move(value), {}};
  if (thrown) first.thrown.emplace(std::move(thrown));
  return retry_slow<R>(p, fn, options(), &first);
}

// The first attempt, made inline: a success returns fn's value at once; a
// failure hands what happened to the out-of-line loop. Nothing else happens on
// the success path: options() (which finds the options) is not even called.
template <class R, class F, class Options, class Success>
[[gnu::always_inline]] inline R retry_fast(const policy& p, F& fn, const Options& options, Success&& is_success) {
  std::optional<value_t<R>> failed;
  std::exception_ptr thrown;
  try {
    if constexpr (std::is_void_v<R>) {
      fn();
      if (is_success(std::monostate{})) return;
      failed.emplace();
    } else {
      R v = fn();
      if (is_success(v)) return v;
      failed.emplace(std::move(v));
    }
  } catch (...) {
    thrown = std::current_exception();
  }
  return retry_after_first<R>(p, fn, options, std::move(failed), std::move(thrown));
}

}  // namespace detail

// Runs fn under the policy. Returns fn's value on success (or the fallback's).
// When the loop gives up:
//  - the last attempt threw: that exception is rethrown unchanged (or, with
//    wrap_errors, a retry_error with it nested);
//  - the last attempt returned a failed value: that value is returned (or, with
//    wrap_errors, a retry_error is thrown);
//  - cancelled (by the stop_token): a retry_error with reason cancelled, the
//    last exception (if any) nested in it.
template <class F>
detail::result_of_t<F> retry(const policy& p, F&& fn, const options<detail::result_of_t<F>>& o) {
  using R = detail::result_of_t<F>;
  // Fast path: when nothing needs the clock before the first attempt, make it
  // here, so that a success returns fn's value with almost no overhead.
  if (!o.wrap_errors && !o.before_retry && !o.after_attempt && !o.on_give_up && !o.on_success && !o.gate &&
      !o.observer && !p.stop.uses_clock() && !o.stop_token.stop_requested()) {
    return detail::retry_fast<R>(p, fn, [&o]() -> const options<R>& { return o; }, [&o](const value_t<R>& v) {
      return o.classify.succeeded(v);
    });
  }
  return detail::retry_slow<R>(p, fn, o, nullptr);
}

// The same with default options: no hooks, no gate, the real clock. The fast
// path then has only the stop rule to check.
template <class F>
[[gnu::always_inline]] inline detail::result_of_t<F> retry(const policy& p, F&& fn) {
  using R = detail::result_of_t<F>;
  if (!p.stop.uses_clock())
    return detail::retry_fast<R>(p, fn, [] { return std::cref(detail::default_options<R>()); },
                                 [](const value_t<R>& v) { return detail::default_success(v); });
  return detail::retry_slow<R>(p, fn, detail::default_options<R>(), nullptr);
}

// The same with the default policy.
template <class F>
detail::result_of_t<F> retry(F&& fn) {
  return retry(detail::default_policy(), std::forward<F>(fn));
}

}  // namespace backoff
