// SPDX-License-Identifier: BSL-1.0
// backoff/budget.hpp — retry budgets: a cap on how much of the traffic may be
// retries, so that a long outage does not multiply the load on a server.
//
//   static backoff::retry_budget budget = backoff::retry_budget::aws_standard();
//   backoff::retry(policy, call, {.gate = &budget});
//
// Three documented behaviours:
//  - aws_standard: a token bucket (AWS SDKs and Tools Reference Guide, "Retry
//    behavior", standard mode): capacity 500; a retry costs 5 (10 after a
//    timeout); a success on the first try refunds 1, a success after retries
//    refunds that retry's cost. Denied when the bucket holds less than the cost.
//  - grpc: retry throttling (gRPC A6 "Client Retries", retryThrottling): tokens
//    start at max_tokens; each failed attempt takes 1, each success adds
//    token_ratio; retries are allowed only while tokens > max_tokens / 2.
//  - finagle: Finagle's RetryBudget (com.twitter.finagle.service.RetryBudget):
//    each request deposits, each retry withdraws; deposits expire after ttl
//    (10 s); a reserve of min_retries_per_sec × ttl (10/s) is always allowed;
//    percent_can_retry (0.2) of requests may be retried on top.
// Tokens are integer milli-tokens. The token-bucket modes are lock-free, and a
// success that finds the bucket full does no atomic read-modify-write.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>

#include "backoff/detail/validate.hpp"
#include "backoff/gate.hpp"

namespace backoff {

class retry_budget final : public gate {
 public:
  enum class mode : std::uint8_t { aws_standard, grpc, finagle };

  struct aws_options {
    std::int64_t capacity = 500;
    std::int64_t retry_cost = 5;
    std::int64_t timeout_cost = 10;
    std::int64_t no_retry_increment = 1;
  };
  struct grpc_options {
    double max_tokens = 10;   // (0, 1000]
    double token_ratio = 0.1;  // (0, 1], three decimals
  };
  struct finagle_options {
    duration ttl = std::chrono::seconds{10};   // [1 s, 60 s]
    double min_retries_per_sec = 10;           // may be fractional: 0.5 = one every 2 s
    double percent_can_retry = 0.2;            // [0, 1000]
  };

  static retry_budget aws_standard() { return aws_standard(aws_options{}); }
  static retry_budget aws_standard(aws_options o) {
    if (o.capacity <= 0) detail::invalid("backoff::retry_budget::aws_standard", "capacity", "> 0", o.capacity);
    if (o.retry_cost < 0) detail::invalid("backoff::retry_budget::aws_standard", "retry_cost", ">= 0", o.retry_cost);
    if (o.timeout_cost < 0) detail::invalid("backoff::retry_budget::aws_standard", "timeout_cost", ">= 0", o.timeout_cost);
    if (o.no_retry_increment < 0)
      detail::invalid("backoff::retry_budget::aws_standard", "no_retry_increment", ">= 0", o.no_retry_increment);
    // Tokens are kept in thousandths: larger values would overflow.
    constexpr std::int64_t most = std::numeric_limits<std::int64_t>::max() / 1000;
    for (const auto& [field, v] : {std::pair{"capacity", o.capacity}, std::pair{"retry_cost", o.retry_cost},
                                   std::pair{"timeout_cost", o.timeout_cost},
                                   std::pair{"no_retry_increment", o.no_retry_increment}})
      if (v > most) detail::invalid("backoff::retry_budget::aws_standard", field, "<= " + std::to_string(most), v);
    retry_budget b(mode::aws_standard);
    b.capacity_ = o.capacity * 1000;
    b.retry_cost_ = o.retry_cost * 1000;
    b.timeout_cost_ = o.timeout_cost * 1000;
    b.success_refund_ = o.no_retry_increment * 1000;
    b.tokens_.store(b.capacity_);
    return b;
  }
  static retry_budget grpc() { return grpc(grpc_options{}); }
  static retry_budget grpc(grpc_options o) {
    if (!(o.max_tokens > 0 && o.max_tokens <= 1000))
      detail::invalid("backoff::retry_budget::grpc", "max_tokens", "in (0, 1000]", o.max_tokens);
    if (!(o.token_ratio > 0 && o.token_ratio <= 1))
      detail::invalid("backoff::retry_budget::grpc", "token_ratio", "in (0, 1]", o.token_ratio);
    retry_budget b(mode::grpc);
    b.capacity_ = std::llround(o.max_tokens * 1000);
    b.success_refund_ = std::llround(o.token_ratio * 1000);  // gRPC keeps three decimals too
    b.retry_cost_ = 1000;
    b.tokens_.store(b.capacity_);
    return b;
  }
  static retry_budget finagle() { return finagle(finagle_options{}); }

  // backoff's recommendation, chosen with the simulator (docs/simulations.md):
  // retries may be 10 % of requests over 10 s, plus 0.2 retries/s so that a
  // quiet client can still retry. Share one per upstream host.
  static retry_budget recommended() {
    return finagle({.ttl = std::chrono::seconds{10}, .min_retries_per_sec = 0.2, .percent_can_retry = 0.1});
  }
  static retry_budget finagle(finagle_options o) {
    if (o.ttl < std::chrono::seconds{1} || o.ttl > std::chrono::seconds{60})
      detail::invalid("backoff::retry_budget::finagle", "ttl", "in [1s, 60s]", o.ttl);
    // The bounds keep Finagle's integer arithmetic (1000 / percent withdrawals,
    // a reserve of rate × ttl withdrawals) far from overflow.
    if (!(o.min_retries_per_sec >= 0 && o.min_retries_per_sec <= 1e6))
      detail::invalid("backoff::retry_budget::finagle", "min_retries_per_sec", "in [0, 1e6]", o.min_retries_per_sec);
    if (!(o.percent_can_retry == 0 || (o.percent_can_retry >= 0.001 && o.percent_can_retry <= 1000)))
      detail::invalid("backoff::retry_budget::finagle", "percent_can_retry", "0 or in [0.001, 1000]", o.percent_can_retry);
    retry_budget b(mode::finagle);
    // Finagle's arithmetic: a request deposits 1000; a retry withdraws
    // 1000 / percent; the reserve is min_retries_per_sec × ttl withdrawals.
    b.deposit_ = 1000;
    // (Finagle uses 1001 for percent 0: deposits alone never pay for a retry.)
    b.withdrawal_ = o.percent_can_retry == 0 ? 1001 : static_cast<std::int64_t>(1000.0 / o.percent_can_retry);
    const auto ttl_s = std::chrono::duration_cast<std::chrono::seconds>(o.ttl).count();
    b.reserve_ = static_cast<std::int64_t>(o.min_retries_per_sec * static_cast<double>(ttl_s) * static_cast<double>(b.withdrawal_));
    b.ttl_slots_ = static_cast<int>(ttl_s);
    b.slots_ = std::make_unique<slot[]>(static_cast<std::size_t>(ttl_s));
    return b;
  }

  retry_budget(retry_budget&& o) noexcept
      : mode_(o.mode_), capacity_(o.capacity_), retry_cost_(o.retry_cost_), timeout_cost_(o.timeout_cost_),
        success_refund_(o.success_refund_), tokens_(o.tokens_.load()), deposit_(o.deposit_),
        withdrawal_(o.withdrawal_), reserve_(o.reserve_), ttl_slots_(o.ttl_slots_), slots_(std::move(o.slots_)),
        current_(o.current_), now_sec_(o.now_sec_) {}

  mode kind() const noexcept { return mode_; }
  // The bucket's content in milli-tokens (token-bucket modes), or the windowed
  // balance (finagle) as of the last operation.
  std::int64_t milli_tokens() const noexcept {
    if (mode_ != mode::finagle) return tokens_.load(std::memory_order_relaxed);
    std::lock_guard lock(mutex_);
    return balance_locked();
  }
  std::int64_t capacity_milli() const noexcept { return capacity_; }

  gate_decision acquire(const gate_request& r) noexcept override {
    if (!r.retry) return gate_decision::allow();
    switch (mode_) {
      case mode::aws_standard: {
        const std::int64_t cost = r.after_timeout ? timeout_cost_ : retry_cost_;
        std::int64_t have = tokens_.load(std::memory_order_relaxed);
        do {
          if (have < cost) return gate_decision::deny(stop_reason::budget_exhausted);
        } while (!tokens_.compare_exchange_weak(have, have - cost, std::memory_order_acq_rel, std::memory_order_relaxed));
        return gate_decision::allow();
      }
      case mode::grpc:
        // gRPC only checks here; failures pay in record().
        if (tokens_.load(std::memory_order_relaxed) * 2 > capacity_) return gate_decision::allow();
        return gate_decision::deny(stop_reason::budget_exhausted);
      case mode::finagle: {
        std::lock_guard lock(mutex_);
        advance_locked(r.now);
        if (balance_locked() < withdrawal_) return gate_decision::deny(stop_reason::budget_exhausted);
        slots_[current_].withdrawn += withdrawal_;
        return gate_decision::allow();
      }
    }
    return gate_decision::allow();
  }

  // Refunds what acquire(r) withdrew, for a retry that will not be made.
  void release(const gate_request& r) noexcept override {
    if (!r.retry) return;
    switch (mode_) {
      case mode::aws_standard: add(r.after_timeout ? timeout_cost_ : retry_cost_); break;
      case mode::grpc: break;  // acquire only looked
      case mode::finagle: {
        std::lock_guard lock(mutex_);
        advance_locked(r.now);
        auto& s = slots_[current_];
        s.withdrawn = std::max<std::int64_t>(0, s.withdrawn - withdrawal_);
        break;
      }
    }
  }

  void record(const gate_outcome& o) noexcept override {
    switch (mode_) {
      case mode::aws_standard:
        if (o.outcome == attempt_outcome::success) add(o.retry ? (o.timeout ? timeout_cost_ : retry_cost_) : success_refund_);
        break;
      case mode::grpc:
        if (o.outcome == attempt_outcome::success) add(success_refund_);
        else if (o.outcome == attempt_outcome::retryable) take(1000);
        break;
      case mode::finagle:
        if (!o.retry) {
          std::lock_guard lock(mutex_);
          advance_locked(o.now);
          slots_[current_].deposited += deposit_;
        }
        break;
    }
  }

 private:
  explicit retry_budget(mode m) noexcept : mode_(m) {}

  // Adds to the bucket, capped at capacity. A full bucket is left alone
  // without a read-modify-write: the common case under normal traffic.
  void add(std::int64_t n) noexcept {
    std::int64_t have = tokens_.load(std::memory_order_relaxed);
    while (have < capacity_) {
      if (tokens_.compare_exchange_weak(have, std::min(capacity_, have + n), std::memory_order_acq_rel,
                                        std::memory_order_relaxed))
        return;
    }
  }
  void take(std::int64_t n) noexcept {
    std::int64_t have = tokens_.load(std::memory_order_relaxed);
    while (have > 0) {
      if (tokens_.compare_exchange_weak(have, std::max<std::int64_t>(0, have - n), std::memory_order_acq_rel,
                                        std::memory_order_relaxed))
        return;
    }
  }

  // Finagle mode: one slot per second of the ttl window.
  struct slot {
    std::int64_t second = -1;
    std::int64_t deposited = 0, withdrawn = 0;
  };
  void advance_locked(time_point now) noexcept {
    const std::int64_t sec = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    current_ = static_cast<int>(((sec % ttl_slots_) + ttl_slots_) % ttl_slots_);
    if (slots_[current_].second != sec) slots_[current_] = {sec, 0, 0};
    now_sec_ = sec;
  }
  std::int64_t balance_locked() const noexcept {
    std::int64_t deposited = 0, withdrawn = 0;
    for (int i = 0; i < ttl_slots_; ++i) {
      if (slots_[i].second < 0 || now_sec_ - slots_[i].second >= ttl_slots_) continue;
      deposited += slots_[i].deposited;
      withdrawn += slots_[i].withdrawn;
    }
    return reserve_ + deposited - withdrawn;
  }

  mode mode_;
  std::int64_t capacity_ = 0, retry_cost_ = 0, timeout_cost_ = 0, success_refund_ = 0;
  alignas(64) std::atomic<std::int64_t> tokens_{0};
  std::int64_t deposit_ = 0, withdrawal_ = 0, reserve_ = 0;
  int ttl_slots_ = 1;
  mutable std::mutex mutex_;
  // Finagle mode only, one per second of the ttl: a budget per host stays
  // small (a few hundred bytes) when there are many.
  std::unique_ptr<slot[]> slots_;
  int current_ = 0;
  std::int64_t now_sec_ = 0;
};

}  // namespace backoff
