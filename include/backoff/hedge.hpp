// SPDX-License-Identifier: BSL-1.0
// backoff/hedge.hpp — hedged requests: when a call is merely slow, send a
// second copy and take whichever answers first ("The Tail at Scale", Dean and
// Barroso 2013: hedging at the 95th percentile latency costs about 5 % more
// requests and cuts the tail by an order of magnitude).
//
//   static backoff::latency_sketch api_latency;              // one per key (host, endpoint)
//   const backoff::hedge_policy hedge{.max_attempts = 2, .adaptive = &api_latency};
//   auto [ec, n] = co_await backoff::asio::async_hedge(ex, hedge, op, asio::as_tuple(asio::use_awaitable));
//
// This header holds what needs no event loop: the policy and the latency
// sketch that an adaptive delay reads. backoff/asio_hedge.hpp runs it. Only
// operations that are safe to run twice may be hedged (reads, PUT, DELETE,
// requests with an Idempotency-Key): the first copy is not stopped when the
// second starts.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>

#include "backoff/clock.hpp"
#include "backoff/detail/validate.hpp"
#include "backoff/policy.hpp"

namespace backoff {

// Recent latencies of one key, lock-free: a log-scale histogram of 4 buckets
// per doubling from 100 µs (each bucket spans a factor of 2^(1/4) ≈ 1.19, so a
// quantile is read within 19 %) up to about 23 minutes, whose counts are
// halved every `half_life` samples so that the last few hundred dominate.
// add() is one relaxed fetch_add (and, every half_life samples, a pass that
// halves the counts); quantile() reads every bucket. Safe from any thread.
class latency_sketch {
 public:
  static constexpr std::size_t buckets = 96;
  static constexpr duration lowest = std::chrono::microseconds(100);
  // Fewer samples than this: quantile() has no answer (the fixed delay rules).
  static constexpr std::uint32_t min_samples = 20;

  explicit latency_sketch(std::uint32_t half_life = 256) : half_life_(half_life) {
    if (half_life < min_samples) detail::invalid("backoff::latency_sketch", "half_life", ">= 20", half_life);
  }

  void add(duration d) noexcept {
    counts_[index(d)].fetch_add(1, std::memory_order_relaxed);
    if (since_halved_.fetch_add(1, std::memory_order_relaxed) + 1 == half_life_) {
      since_halved_.store(0, std::memory_order_relaxed);
      for (auto& c : counts_) {
        const std::uint32_t v = c.load(std::memory_order_relaxed);
        c.fetch_sub(v - v / 2, std::memory_order_relaxed);  // what arrived meanwhile stays
      }
    }
  }

  // The q-quantile (0 < q < 1) of the recent latencies, as the upper bound of
  // its bucket (a hedge then starts a little late rather than early); none
  // while fewer than min_samples are held.
  std::optional<duration> quantile(double q) const noexcept {
    std::array<std::uint32_t, buckets> seen{};
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < buckets; ++i) total += seen[i] = counts_[i].load(std::memory_order_relaxed);
    if (total < min_samples) return std::nullopt;
    const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
    std::uint64_t below = 0;
    for (std::size_t i = 0; i < buckets; ++i) {
      below += seen[i];
      if (below >= rank) return upper_bound(i);
    }
    return upper_bound(buckets - 1);
  }

  // The samples held now (after halving, fewer than were added).
  std::uint64_t held() const noexcept {
    std::uint64_t total = 0;
    for (const auto& c : counts_) total += c.load(std::memory_order_relaxed);
    return total;
  }

  // Bucket i holds [lowest·2^((i-1)/4), lowest·2^(i/4)); bucket 0 all below lowest.
  static std::size_t index(duration d) noexcept {
    if (d < lowest) return 0;
    const double r = std::log2(static_cast<double>(d.count()) / static_cast<double>(lowest.count()));
    const auto i = static_cast<std::size_t>(r * 4) + 1;
    return i < buckets ? i : buckets - 1;
  }
  static duration upper_bound(std::size_t i) noexcept {
    return std::chrono::duration_cast<duration>(
        std::chrono::duration<double, std::nano>(static_cast<double>(lowest.count()) * std::exp2(static_cast<double>(i) / 4)));
  }

 private:
  std::array<std::atomic<std::uint32_t>, buckets> counts_{};
  std::atomic<std::uint32_t> since_halved_{0};
  const std::uint32_t half_life_;
};

// When to send another copy, how many at most, and what happens when every
// copy failed. Defaults as Polly's hedging (one extra copy after 2 s) — set
// `adaptive` to hedge at the latency quantile instead, as the paper advises.
struct hedge_policy {
  // Copies in flight at most, the first included (gRPC A6 caps it at 5). 1
  // turns hedging off: the operation is a plain retry loop.
  std::uint32_t max_attempts = 2;
  // The wait before each further copy while the others run. With `adaptive`,
  // the wait until its sketch holds enough samples.
  duration delay = std::chrono::seconds(2);
  // Recent latencies of this key: the wait is their `quantile`, at least
  // `floor`; every copy that succeeds adds its latency. Shared by every
  // operation on the key and must outlive them.
  latency_sketch* adaptive = nullptr;
  double quantile = 0.95;
  duration floor = std::chrono::milliseconds(10);
  // When every copy of a round failed (and none may still start), the retry
  // loop decides as async_retry does: wait, then a new round.
  backoff::policy retry{};

  // The wait before the next copy now.
  duration hedge_delay() const noexcept {
    if (adaptive)
      if (const auto q = adaptive->quantile(quantile)) return *q > floor ? *q : floor;
    return delay;
  }

  // Throws std::invalid_argument naming the field.
  void validate() const {
    if (max_attempts < 1 || max_attempts > 10)
      detail::invalid("backoff::hedge_policy", "max_attempts", "in 1..10", max_attempts);
    if (delay < duration{0}) detail::invalid("backoff::hedge_policy", "delay", ">= 0", delay);
    if (!(quantile > 0 && quantile < 1)) detail::invalid("backoff::hedge_policy", "quantile", "in (0, 1)", quantile);
    if (floor < duration{0}) detail::invalid("backoff::hedge_policy", "floor", ">= 0", floor);
    retry.validate();
  }
};

}  // namespace backoff
