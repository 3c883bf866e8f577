// SPDX-License-Identifier: BSL-1.0
// backoff/observer.hpp — what a retry loop decides, told as it happens: for
// metrics, traces and logs, without wrapping the operation.
//
//   backoff::metrics m;                                  // backoff/metrics.hpp: an observer that counts
//   backoff::retry(policy, call, {.observer = &m});
//   std::cout << m.prometheus();                         // text exposition
//
// Every loop (retry, try_retry, backoff::asio::async_retry, the curl
// clients) tells the observer through its decision step (backoff/step.hpp):
// each attempt that ended, each retry it scheduled, each denial by a gate,
// and how the operation ended. Unset (the default), nothing is called and
// the success path reads no clock for it. An observer is shared by many
// loops at once: its methods must be thread-safe, must not throw and should
// be quick (they run on the loop's thread, between attempts).
#pragma once

#include <cstdint>
#include <optional>

#include "backoff/clock.hpp"
#include "backoff/history.hpp"
#include "backoff/outcome.hpp"

namespace backoff {

// A circuit breaker's state, for observers (circuit_breaker::state has the same values).
enum class breaker_state : std::uint8_t { closed, open, half_open };

struct attempt_ended_event {
  std::uint32_t number;      // 1 for the first attempt; as attempt_started named it (hedged copies end out of order)
  attempt_outcome outcome;
  duration took;             // how long the attempt took (-1 when the loop did not time it)
  bool timed_out;            // it failed by timing out
  time_point now;            // when it ended
};

struct retry_scheduled_event {
  std::uint32_t next;              // the attempt that will follow (2 for the first retry)
  duration delay;                  // the wait before it
  std::optional<duration> hint;    // the server's requested wait, when it asked for one
  bool after_timeout;              // the failure before it was a timeout
};

class observer {
 public:
  virtual ~observer() = default;
  // An attempt is about to be made (number 1 is the first). A segmented
  // download tells each of its requests' starts and ends (several may run at
  // once), and retries as its one retry step decides them.
  virtual void attempt_started(std::uint32_t number, time_point now) noexcept {
    (void)number;
    (void)now;
  }
  virtual void attempt_ended(const attempt_ended_event& e) noexcept { (void)e; }
  virtual void retry_scheduled(const retry_scheduled_event& e) noexcept { (void)e; }
  // A hedged request sent another copy (number 2 for the first hedge) beside
  // the ones still running; attempt_started follows.
  virtual void hedged(std::uint32_t copy, time_point now) noexcept {
    (void)copy;
    (void)now;
  }
  // An attempt was cancelled before it ended — a hedged copy that lost, or
  // the whole operation cancelled: it has no outcome, and attempt_ended is
  // not told.
  virtual void attempt_cancelled(std::uint32_t number, duration took) noexcept {
    (void)number;
    (void)took;
  }
  // A gate (budget, breaker, throttle, host, quota) said no; `ended` follows.
  virtual void gate_denied(stop_reason why) noexcept { (void)why; }
  // A circuit_breaker whose options name this observer changed state.
  virtual void breaker_changed(breaker_state from, breaker_state to) noexcept {
    (void)from;
    (void)to;
  }
  // The operation is over: success, or why it stopped, after `attempts` attempts.
  virtual void ended(stop_reason why, std::uint32_t attempts) noexcept {
    (void)why;
    (void)attempts;
  }
};

}  // namespace backoff
