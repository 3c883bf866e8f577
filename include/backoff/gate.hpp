// SPDX-License-Identifier: BSL-1.0
// backoff/gate.hpp — "may I retry now?": the interface shared by retry budgets,
// adaptive throttling, circuit breakers and per-host backoff.
//
//   backoff::retry_budget budget = backoff::retry_budget::aws_standard();  // one per upstream
//   auto r = backoff::try_retry(policy, call, {.gate = &budget});
//   if (r.reason == backoff::stop_reason::budget_exhausted) ...           // denied, last error kept
//
// A gate is shared by many retry loops (typically one per upstream host), is
// thread-safe, and never blocks or sleeps: acquire() answers at once and
// record() learns from what happened. The loop asks before each retry (and
// before the first attempt when options::gate_first_attempt is set, which a
// circuit breaker or a client-side throttle wants), and reports every attempt.
// Gates take the time from their caller, so a simulator can drive them on a
// manual clock.
#pragma once

#include <chrono>
#include <initializer_list>
#include <utility>
#include <vector>

#include "backoff/clock.hpp"
#include "backoff/history.hpp"

namespace backoff {

struct gate_request {
  bool retry;          // false for the first attempt of an operation
  time_point now;
  bool after_timeout;  // the failure before this retry was a timeout (costs more in AWS's budget)
  bool recheck = false;  // asked again after a wait the gate asked for (gate_decision::recheck)
};

struct gate_decision {
  bool allowed = true;
  stop_reason reason = stop_reason::success;  // why not, when !allowed
  time_point not_before{};                    // allowed, but not before this time (per-host backoff)
  // Not yet: nothing was taken; wait until not_before, then ask again with the
  // same request (a host that waits for another request's probe). The loops
  // honour it through retry_step::recheck().
  bool recheck = false;

  static gate_decision allow() noexcept { return {}; }
  static gate_decision deny(stop_reason why) noexcept { return {false, why, {}}; }
  static gate_decision ask_again(time_point at) noexcept { return {true, stop_reason::success, at, true}; }
};

struct gate_outcome {
  attempt_outcome outcome;
  bool retry;    // the attempt was a retry
  bool timeout;  // it failed by timing out
  time_point now;
};

class gate {
 public:
  virtual ~gate() = default;
  virtual gate_decision acquire(const gate_request& r) noexcept = 0;
  virtual void record(const gate_outcome& o) noexcept = 0;
  // An allowed acquire(r) whose attempt will not be made (a later gate or the
  // stop rule said no, or the wait was cancelled): give back what it took — a
  // budget's tokens, a breaker's half-open probe. Default: nothing was taken.
  virtual void release(const gate_request& r) noexcept { (void)r; }
};

// Several gates consulted in order; the first denial wins. Put gates that
// spend something (a budget) last, so that a denial by an earlier one costs
// nothing. Holds pointers: the gates must outlive the chain.
class gate_chain final : public gate {
 public:
  gate_chain(std::initializer_list<gate*> gates) : gates_(gates) {}
  explicit gate_chain(std::vector<gate*> gates) : gates_(std::move(gates)) {}

  gate_decision acquire(const gate_request& r) noexcept override {
    gate_decision out;
    for (std::size_t i = 0; i < gates_.size(); ++i) {
      const gate_decision d = gates_[i]->acquire(r);
      if (!d.allowed || d.recheck) {
        // The gates before this one granted an attempt that will not happen
        // (or not now: it is asked for again).
        for (std::size_t j = 0; j < i; ++j) gates_[j]->release(r);
        return d;
      }
      if (d.not_before > out.not_before) out.not_before = d.not_before;
    }
    return out;
  }
  void record(const gate_outcome& o) noexcept override {
    for (gate* g : gates_) g->record(o);
  }
  void release(const gate_request& r) noexcept override {
    for (gate* g : gates_) g->release(r);
  }

 private:
  std::vector<gate*> gates_;
};

}  // namespace backoff
