// SPDX-License-Identifier: BSL-1.0
// backoff/breaker.hpp — a circuit breaker: stop calling a backend that keeps
// failing, then let a few probes find out whether it has recovered.
//
//   static backoff::circuit_breaker breaker;            // Polly's defaults
//   backoff::retry(policy, call, {.gate = &breaker, .gate_first_attempt = true});
//
//   closed ──(failure ratio ≥ 0.1 over 30 s, with ≥ 100 calls)──> open
//   open ──(break duration passed)──> half-open: up to `probes` attempts go through
//   half-open ──(a probe succeeds)──> closed     half-open ──(a probe fails)──> open
// Each consecutive trip multiplies the break (5 s, 10 s, 20 s … up to
// max_break); closing resets it. Defaults follow Polly v8's
// CircuitBreakerStrategyOptions (FailureRatio 0.1, MinimumThroughput 100,
// SamplingDuration 30 s, BreakDuration 5 s).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

#include "backoff/detail/saturate.hpp"
#include "backoff/detail/validate.hpp"
#include "backoff/gate.hpp"
#include "backoff/observer.hpp"

namespace backoff {

class circuit_breaker final : public gate {
 public:
  enum class state : std::uint8_t { closed, open, half_open };

  struct options {
    double failure_ratio = 0.1;               // (0, 1]
    std::uint32_t minimum_throughput = 100;   // >= 2
    duration sampling = std::chrono::seconds{30};
    duration break_duration = std::chrono::seconds{5};
    double break_growth = 2.0;                // >= 1: factor per consecutive trip
    duration max_break = std::chrono::minutes{5};
    std::uint32_t probes = 1;                 // concurrent attempts allowed when half-open
    backoff::observer* observer = nullptr;    // told each change of state (under the breaker's lock)
  };

  circuit_breaker() : circuit_breaker(options{}) {}
  explicit circuit_breaker(options o) : o_(o) {
    if (!(o.failure_ratio > 0 && o.failure_ratio <= 1))
      detail::invalid("backoff::circuit_breaker", "failure_ratio", "in (0, 1]", o.failure_ratio);
    if (o.minimum_throughput < 2)
      detail::invalid("backoff::circuit_breaker", "minimum_throughput", ">= 2", o.minimum_throughput);
    if (o.sampling < std::chrono::milliseconds{500})
      detail::invalid("backoff::circuit_breaker", "sampling", ">= 500ms", o.sampling);
    if (o.break_duration < std::chrono::milliseconds{1})
      detail::invalid("backoff::circuit_breaker", "break_duration", ">= 1ms", o.break_duration);
    if (!(o.break_growth >= 1)) detail::invalid("backoff::circuit_breaker", "break_growth", ">= 1", o.break_growth);
    if (o.max_break < o.break_duration)
      detail::invalid("backoff::circuit_breaker", "max_break", ">= break_duration", o.max_break);
    if (o.probes == 0) detail::invalid("backoff::circuit_breaker", "probes", ">= 1", o.probes);
    slot_width_ = o.sampling / slots;
  }

  state current() const noexcept { return state_.load(std::memory_order_acquire); }
  std::uint32_t trips() const noexcept {
    std::lock_guard lock(mutex_);
    return consecutive_trips_;
  }

  gate_decision acquire(const gate_request& r) noexcept override {
    // The closed path reads one atomic and takes no lock.
    if (state_.load(std::memory_order_acquire) == state::closed) return gate_decision::allow();
    std::lock_guard lock(mutex_);
    const state s = state_.load(std::memory_order_relaxed);
    if (s == state::open) {
      if (r.now < open_until_) return gate_decision::deny(stop_reason::circuit_open);
      state_.store(state::half_open, std::memory_order_release);
      changed(state::open, state::half_open);
      probes_in_flight_ = 0;
    }
    if (state_.load(std::memory_order_relaxed) == state::half_open) {
      if (probes_in_flight_ >= o_.probes) return gate_decision::deny(stop_reason::circuit_open);
      ++probes_in_flight_;
    }
    return gate_decision::allow();
  }

  // A probe that was handed out but will not be used goes back, so that the
  // breaker does not wait forever for its result.
  void release(const gate_request& r) noexcept override {
    (void)r;
    if (state_.load(std::memory_order_acquire) != state::half_open) return;
    std::lock_guard lock(mutex_);
    if (state_.load(std::memory_order_relaxed) == state::half_open && probes_in_flight_ > 0) --probes_in_flight_;
  }

  void record(const gate_outcome& o) noexcept override {
    const bool failed = o.outcome == attempt_outcome::retryable;
    std::lock_guard lock(mutex_);
    const state s = state_.load(std::memory_order_relaxed);
    if (s == state::half_open) {
      if (probes_in_flight_ > 0) --probes_in_flight_;
      if (failed) {
        trip_locked(o.now);
      } else {
        state_.store(state::closed, std::memory_order_release);
        changed(state::half_open, state::closed);
        consecutive_trips_ = 0;
        reset_window_locked();
      }
      return;
    }
    if (s == state::open) return;  // late results of calls started before the trip
    advance_locked(o.now);
    auto& sl = slots_[current_];
    ++sl.total;
    if (failed) ++sl.failures;
    std::uint64_t total = 0, failures = 0;
    for (const auto& x : slots_) {
      if (x.index < 0 || now_index_ - x.index >= slots) continue;
      total += x.total;
      failures += x.failures;
    }
    if (failed && total >= o_.minimum_throughput &&
        static_cast<double>(failures) >= o_.failure_ratio * static_cast<double>(total))
      trip_locked(o.now);
  }

  // When an open breaker lets the next probe through.
  time_point open_until() const noexcept {
    std::lock_guard lock(mutex_);
    return open_until_;
  }

 private:
  static constexpr int slots = 10;  // the sampling window in ten buckets, like Polly's
  void changed(state from, state to) const noexcept {
    if (o_.observer) o_.observer->breaker_changed(static_cast<breaker_state>(from), static_cast<breaker_state>(to));
  }
  struct slot {
    std::int64_t index = -1;
    std::uint64_t total = 0, failures = 0;
  };

  void trip_locked(time_point now) noexcept {
    double factor = 1.0;
    for (std::uint32_t i = 0; i < consecutive_trips_ && factor * static_cast<double>(o_.break_duration.count()) <
                                                            static_cast<double>(o_.max_break.count());
         ++i)
      factor *= o_.break_growth;
    const duration brk = std::min(o_.max_break, detail::from_double_ns(static_cast<double>(o_.break_duration.count()) * factor));
    open_until_ = detail::add(now, brk);
    ++consecutive_trips_;
    const state from = state_.load(std::memory_order_relaxed);
    state_.store(state::open, std::memory_order_release);
    changed(from, state::open);
    reset_window_locked();
  }
  void reset_window_locked() noexcept { slots_.fill({}); }
  void advance_locked(time_point now) noexcept {
    const std::int64_t idx = now.time_since_epoch() / slot_width_;
    current_ = static_cast<int>(((idx % slots) + slots) % slots);
    if (slots_[current_].index != idx) slots_[current_] = {idx, 0, 0};
    now_index_ = idx;
  }

  options o_;
  duration slot_width_{};
  std::atomic<state> state_{state::closed};
  mutable std::mutex mutex_;
  std::array<slot, slots> slots_{};
  int current_ = 0;
  std::int64_t now_index_ = 0;
  time_point open_until_{};
  std::uint32_t probes_in_flight_ = 0;
  std::uint32_t consecutive_trips_ = 0;
};

}  // namespace backoff
