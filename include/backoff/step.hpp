// SPDX-License-Identifier: BSL-1.0
// backoff/step.hpp — the one decision every retry loop makes: told how an
// attempt ended, "retry after d" or "stop, for this reason". Clock-free and
// allocation-free; the sync loop (retry.hpp), the simulator and any async loop
// only carry out what it decides.
//
//   backoff::retry_step step(policy, {.gate = &budget});
//   if (auto first = step.start(clock.now()); !first.allowed) return first.reason;
//   for (;;) {
//     const bool ok = call();
//     const auto d = step.after({.outcome = ok ? attempt_outcome::success : attempt_outcome::retryable,
//                                .now = clock.now()}, rng);
//     if (d.stop) return d.reason;          // success, exhausted, deadline, budget_exhausted, …
//     if (!sleep(d.delay)) { step.abandon(); return stop_reason::cancelled; }
//   }
//
// What after() does with a failed attempt, in this order: tell the gate; a
// permanent failure stops; an attempt that made progress restarts the schedule
// and the attempt count; draw the schedule's delay; a server hint is a floor;
// the stop rule may stop or shorten the wait; the gate may deny (its reason) or
// hold the retry back (a floor, like a hint). A wait that a hint or a gate made
// longer than a time limit allows ends the loop with `deadline` instead, so no
// wait ever ends past the limit. A retry the gate granted but that will not
// happen (a stop after the grant, or abandon()) is given back with release(),
// so a circuit breaker's half-open probe is never lost.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

#include "backoff/clock.hpp"
#include "backoff/gate.hpp"
#include "backoff/history.hpp"
#include "backoff/observer.hpp"
#include "backoff/policy.hpp"

namespace backoff {

class retry_step {
 public:
  struct config {
    backoff::gate* gate = nullptr;    // asked before each retry, told about every attempt
    bool gate_first_attempt = false;  // ask before the first attempt too
    backoff::observer* observer = nullptr;  // told every attempt, retry, denial and the end
  };

  // How an attempt ended, as the loop classified it.
  struct report {
    attempt_outcome outcome = attempt_outcome::retryable;
    time_point now{};                     // when it ended
    std::optional<duration> hint{};       // the server's requested wait, if any
    bool timed_out = false;               // a timeout (AWS's budget charges more)
    bool made_progress = false;           // moved the work forward (see retry.hpp's made_progress)
    duration took{-1};                    // how long the attempt took (-1: not timed), for the observer
    std::uint32_t number = 0;             // the attempt as attempt_started named it, for the observer;
                                          // 0: the count of attempts ended (the same unless hedged)
  };

  struct decision {
    bool stop = false;
    stop_reason reason = stop_reason::success;  // when stop: why
    duration delay{0};                          // when not stop: the wait before the next attempt
    duration hint{-1};                          // the hint taken into account (clamped at 0), or -1
    bool recheck = false;                       // when not stop: after the wait, call recheck() first
  };

  struct first_decision {
    bool allowed = true;
    stop_reason reason = stop_reason::success;  // when not allowed
    time_point not_before{};                    // allowed, but wait until then
    bool recheck = false;                       // after the wait, call recheck() before the attempt
  };

  explicit retry_step(const policy& p) noexcept : policy_(&p) {}
  retry_step(const policy& p, config c) noexcept : policy_(&p), config_(c) {}

  // Begins the operation at `now`; asks the gate for the first attempt when
  // configured. Call once, before the first attempt.
  first_decision start(time_point now) noexcept {
    start_ = now;
    if (!config_.gate || !config_.gate_first_attempt) return {};
    last_request_ = {false, now, false};
    const gate_decision d = config_.gate->acquire(last_request_);
    if (!d.allowed) {
      denied(d.reason);
      return {false, d.reason, {}};
    }
    granted_ = !d.recheck;
    return {true, stop_reason::success, d.not_before, d.recheck};
  }

  // The wait before an attempt ended, and the gate had asked to be asked
  // again (gate_decision::recheck): asks it now. Not allowed: stop for the
  // reason given (a retry whose new wait the stop rule refuses stops at its
  // deadline). Allowed: wait until not_before (and recheck again if told).
  first_decision recheck(time_point now) noexcept {
    if (!config_.gate) return {};
    last_request_.now = now;
    last_request_.recheck = true;
    const gate_decision d = config_.gate->acquire(last_request_);
    if (!d.allowed) {
      denied(d.reason);
      return {false, d.reason, {}};
    }
    if (last_request_.retry && d.not_before > now) {
      const auto verdict = policy_->stop.decide({attempts_ - progressed_at_, now - start_, now, d.not_before - now});
      if (verdict.stop || d.not_before - now > verdict.max_wait) {
        if (!d.recheck) config_.gate->release(last_request_);
        ended(stop_reason::deadline);
        return {false, stop_reason::deadline, {}};
      }
    }
    granted_ = !d.recheck;
    return {true, stop_reason::success, d.not_before, d.recheck};
  }

  // Sets the operation's start without asking the gate (a loop that made its
  // first attempt before it read the clock).
  void started_at(time_point t) noexcept { start_ = t; }

  template <class G>
  decision after(const report& r, G& rng) {
    note(r);
    return decide(r, rng);
  }

  // after() in two halves, for a loop with several attempts in flight (a
  // hedged request): note() tells the gate and the observer that an attempt
  // ended; decide() then judges the last one when no other is left.
  void note(const report& r) noexcept {
    ++attempts_;
    granted_ = false;  // a grant from before was used by this attempt
    if (gate* const g = config_.gate) g->record({r.outcome, attempts_ > 1, r.timed_out, r.now});
    if (observer* ob = config_.observer)
      ob->attempt_ended({r.number != 0 ? r.number : attempts_, r.outcome, r.took, r.timed_out, r.now});
  }

  // Another attempt beside those still running (a hedge), when `started`
  // attempts have been started in all: allowed only when the stop rule would
  // allow one more attempt now and the gate grants it now, as it would a
  // retry — a gate that denies or asks to wait refuses it (and keeps
  // nothing). Hedging never passes a budget or an attempt limit.
  bool hedge(time_point now, std::uint32_t started) noexcept {
    if (policy_->stop.decide({started - progressed_at_, now - start_, now, duration{0}}).stop) return false;
    gate* const g = config_.gate;
    if (!g) return true;
    const gate_request q{true, now, false};
    const gate_decision d = g->acquire(q);
    if (!d.allowed || d.recheck) return false;  // a recheck takes nothing
    if (d.not_before > now) {
      g->release(q);
      return false;
    }
    return true;
  }

  template <class G>
  decision decide(const report& r, G& rng) {
    gate* const g = config_.gate;
    if (r.outcome == attempt_outcome::success) return stopped(stop_reason::success, duration{-1});
    if (r.outcome == attempt_outcome::permanent) return stopped(stop_reason::permanent, duration{-1});

    if (r.made_progress) {
      sched_ = schedule_state{};
      progressed_at_ = attempts_;
    }
    decision out;
    duration delay = policy_->next_delay(sched_, rng);
    bool floored = false;  // a hint or the gate set the wait, not the schedule
    if (r.hint) {
      out.hint = std::max(*r.hint, duration{0});
      if (out.hint > delay) {
        delay = out.hint;
        floored = true;
      }
    }
    const duration elapsed = r.now - start_;
    const std::uint32_t counted = attempts_ - progressed_at_;
    auto verdict = policy_->stop.decide({counted, elapsed, r.now, delay});
    if (verdict.stop) return stopped(verdict.reason, out.hint);
    // Asked only once the stop rule agreed, so that a budget is not charged
    // for a retry that would not happen anyway.
    bool held = false;  // the gate granted something that must be given back if no retry follows
    if (g) {
      const gate_decision d = g->acquire({true, r.now, r.timed_out});
      if (!d.allowed) {
        denied(d.reason);
        return {true, d.reason, duration{0}, out.hint};
      }
      held = !d.recheck;
      out.recheck = d.recheck;
      if (d.not_before > r.now && d.not_before - r.now > delay) {
        delay = d.not_before - r.now;
        floored = true;
        // The longer wait must pass the stop rule again (before_elapsed and
        // before_deadline judge the wait itself).
        verdict = policy_->stop.decide({counted, elapsed, r.now, delay});
        if (verdict.stop) {
          if (held) g->release({true, r.now, r.timed_out});
          return stopped(stop_reason::deadline, out.hint);
        }
      }
    }
    if (floored && delay > verdict.max_wait) {
      if (held) g->release({true, r.now, r.timed_out});
      return stopped(stop_reason::deadline, out.hint);
    }
    out.delay = std::min(delay, verdict.max_wait);
    granted_ = held;
    last_request_ = {true, r.now, r.timed_out};
    if (observer* ob = config_.observer)
      ob->retry_scheduled({attempts_ + 1, out.delay, r.hint ? std::optional<duration>(out.hint) : std::nullopt, r.timed_out});
    return out;
  }

  // The retry after() allowed will not be made (cancelled during the wait):
  // gives the gate's grant back.
  void abandon() noexcept {
    if (granted_ && config_.gate) config_.gate->release(last_request_);
    granted_ = false;
    ended(stop_reason::cancelled);
  }
  // The operation ended without a decision of this step saying so (a
  // segmented download whose last part arrived): the observer hears it, once,
  // with the loop's own count of attempts. A no-op when the step already told.
  void finished(stop_reason why, std::uint32_t attempts) noexcept {
    if (told_ || !config_.observer) return;
    told_ = true;
    config_.observer->ended(why, attempts);
  }
  std::uint32_t attempts() const noexcept { return attempts_; }
  time_point started() const noexcept { return start_; }

 private:
  void ended(stop_reason why) noexcept { finished(why, attempts_); }
  void denied(stop_reason why) noexcept {
    if (config_.observer) config_.observer->gate_denied(why);
    ended(why);
  }
  decision stopped(stop_reason why, duration hint) noexcept {
    ended(why);
    return {true, why, duration{0}, hint};
  }

  const policy* policy_;
  config config_;
  time_point start_{};
  schedule_state sched_{};
  std::uint32_t attempts_ = 0;
  std::uint32_t progressed_at_ = 0;
  bool granted_ = false;
  bool told_ = false;  // the observer heard the end
  gate_request last_request_{};
};

}  // namespace backoff
