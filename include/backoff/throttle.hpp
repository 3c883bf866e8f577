// SPDX-License-Identifier: BSL-1.0
// backoff/throttle.hpp — adaptive client-side throttling (Google SRE book,
// "Handling Overload"): when the backend accepts fewer requests than the client
// sends, reject the excess locally instead of adding to the overload.
//
//   static backoff::adaptive_throttle throttle;        // one per backend
//   backoff::retry(policy, call, {.gate = &throttle, .gate_first_attempt = true});
//
// Each attempt is rejected locally with probability
//     max(0, (requests − K × accepts) / (requests + 1))
// over a sliding window (default 2 minutes, K = 2). `requests` counts every
// attempt the client wanted to make, including those rejected locally; `accepts`
// counts those the backend accepted (any outcome but a retryable failure). Below
// `min_requests` in the window it never rejects, so a cold start is not starved.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>

#include "backoff/detail/validate.hpp"
#include "backoff/gate.hpp"
#include "backoff/random.hpp"

namespace backoff {

class adaptive_throttle final : public gate {
 public:
  struct options {
    duration window = std::chrono::minutes{2};
    double k = 2.0;                  // >= 1; lower rejects sooner
    std::uint32_t min_requests = 20;  // no rejection below this many requests in the window
    std::uint64_t seed = 0x5eed;     // for the rejection draws; fixed for reproducible runs
  };

  adaptive_throttle() : adaptive_throttle(options{}) {}
  explicit adaptive_throttle(options o) : o_(o), rng_(o.seed) {
    if (o.window < std::chrono::seconds{1}) detail::invalid("backoff::adaptive_throttle", "window", ">= 1s", o.window);
    if (!(o.k >= 1.0)) detail::invalid("backoff::adaptive_throttle", "k", ">= 1", o.k);
    slot_width_ = o.window / slots;
  }

  gate_decision acquire(const gate_request& r) noexcept override {
    std::lock_guard lock(mutex_);
    advance(r.now);
    ++slots_[current_].requests;
    const double p = reject_probability_locked();
    if (p > 0 && uniform_unit(rng_) < p) return gate_decision::deny(stop_reason::throttled);
    return gate_decision::allow();
  }

  // An allowed request that will not be sent is not counted.
  void release(const gate_request& r) noexcept override {
    std::lock_guard lock(mutex_);
    advance(r.now);
    if (slots_[current_].requests > 0) --slots_[current_].requests;
  }

  void record(const gate_outcome& o) noexcept override {
    if (o.outcome == attempt_outcome::retryable) return;
    std::lock_guard lock(mutex_);
    advance(o.now);
    ++slots_[current_].accepts;
  }

  // The current rejection probability, for dashboards and tests.
  double reject_probability(time_point now) noexcept {
    std::lock_guard lock(mutex_);
    advance(now);
    return reject_probability_locked();
  }

 private:
  static constexpr int slots = 60;
  struct slot {
    std::int64_t index = -1;
    std::uint64_t requests = 0, accepts = 0;
  };

  void advance(time_point now) noexcept {
    const std::int64_t idx = now.time_since_epoch() / slot_width_;
    current_ = static_cast<int>(((idx % slots) + slots) % slots);
    if (slots_[current_].index != idx) slots_[current_] = {idx, 0, 0};
    now_index_ = idx;
  }
  double reject_probability_locked() const noexcept {
    std::uint64_t requests = 0, accepts = 0;
    for (const auto& s : slots_) {
      if (s.index < 0 || now_index_ - s.index >= slots) continue;
      requests += s.requests;
      accepts += s.accepts;
    }
    if (requests < o_.min_requests) return 0.0;
    const double p = (static_cast<double>(requests) - o_.k * static_cast<double>(accepts)) /
                     (static_cast<double>(requests) + 1.0);
    return p > 0 ? p : 0.0;
  }

  options o_;
  duration slot_width_{};
  std::mutex mutex_;
  std::array<slot, slots> slots_{};
  int current_ = 0;
  std::int64_t now_index_ = 0;
  fast_rng rng_;
};

}  // namespace backoff
