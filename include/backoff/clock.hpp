// SPDX-License-Identifier: BSL-1.0
// backoff/clock.hpp — injectable time: what the retry loop reads and how it waits.
//
//   backoff::manual_clock clock;                 // starts at an arbitrary epoch
//   auto r = backoff::retry(policy, fn, {.clock = &clock});
//   clock.total_slept();                         // what the loop would have waited
//
// The interface follows absl's ClockInterface: now() plus an interruptible wait.
// All times are on the monotonic (steady) clock; wall-clock time appears only
// where HTTP dates need it (backoff/http/retry_after.hpp).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stop_token>
#include <thread>

#include "backoff/detail/saturate.hpp"

namespace backoff {

using duration = std::chrono::nanoseconds;
using time_point = std::chrono::steady_clock::time_point;

class clock {
 public:
  virtual ~clock() = default;

  // The current time on this clock.
  virtual time_point now() const noexcept = 0;

  // Waits until `deadline` or until `stop` is requested, whichever comes first.
  // Returns true when the full wait elapsed, false when it was cancelled.
  virtual bool sleep_until(time_point deadline, std::stop_token stop) = 0;

  bool sleep_for(duration d, std::stop_token stop) { return sleep_until(detail::add(now(), d), std::move(stop)); }
};

// std::chrono::steady_clock and real sleeping. A cancellable sleep wakes within
// the scheduler's latency (well under a millisecond) of request_stop().
class real_clock final : public clock {
 public:
  static real_clock& instance() noexcept {
    static real_clock clock;
    return clock;
  }

  time_point now() const noexcept override { return std::chrono::steady_clock::now(); }

  bool sleep_until(time_point deadline, std::stop_token stop) override {
    if (!stop.stop_possible()) {
      std::this_thread::sleep_until(deadline);
      return true;
    }
    // One waiter per thread: condition_variable_any allocates when it is built,
    // so it is built once per thread and not once per retry.
    thread_local std::mutex mutex;
    thread_local std::condition_variable_any cv;
    std::unique_lock lock(mutex);
    cv.wait_until(lock, stop, deadline, [] { return false; });
    return !stop.stop_requested();
  }
};

// A clock that only moves when told to, for tests and the simulator (like
// absl's SimulatedClock). sleep_until() returns at once after advancing the
// clock to the deadline, so a test of a 64 s backoff runs in microseconds.
// Thread-safe.
class manual_clock final : public clock {
 public:
  explicit manual_clock(time_point start = time_point{std::chrono::hours{24}}) noexcept
      : now_(start.time_since_epoch().count()) {}

  time_point now() const noexcept override { return time_point{time_point::duration{now_.load(std::memory_order_acquire)}}; }

  bool sleep_until(time_point deadline, std::stop_token stop) override {
    if (stop.stop_requested()) return false;
    const auto target = deadline.time_since_epoch().count();
    auto current = now_.load(std::memory_order_acquire);
    if (target > current) {
      slept_.fetch_add(target - current, std::memory_order_relaxed);
      while (current < target && !now_.compare_exchange_weak(current, target, std::memory_order_acq_rel)) {
      }
    }
    sleeps_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  // Moves the clock forward by `d` (negative values are ignored: time never runs back).
  void advance(duration d) noexcept {
    if (d.count() > 0) now_.fetch_add(std::chrono::duration_cast<time_point::duration>(d).count(), std::memory_order_acq_rel);
  }

  // Sum of all waits performed through sleep_until, and how many there were.
  duration total_slept() const noexcept { return duration{slept_.load(std::memory_order_relaxed)}; }
  std::uint64_t sleep_count() const noexcept { return sleeps_.load(std::memory_order_relaxed); }

 private:
  std::atomic<time_point::rep> now_;
  std::atomic<time_point::rep> slept_{0};
  std::atomic<std::uint64_t> sleeps_{0};
};

}  // namespace backoff
