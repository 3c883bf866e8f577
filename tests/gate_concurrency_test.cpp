// SPDX-License-Identifier: BSL-1.0
// Every shared gate hammered from 8 threads × 10^6 operations, with invariants
// checked. `make test` also runs these under ThreadSanitizer.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "backoff/breaker.hpp"
#include "backoff/budget.hpp"
#include "backoff/host_backoff.hpp"
#include "backoff/throttle.hpp"

using namespace std::chrono_literals;
using backoff::attempt_outcome;

namespace {
constexpr int kThreads = 8;
constexpr int kOps = 1'000'000;
const backoff::time_point t0{std::chrono::hours{1}};

template <class F>
void in_threads(F f) {
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) ts.emplace_back(f, i);
  for (auto& t : ts) t.join();
}
}  // namespace

TEST(Concurrency, AwsBudgetLosesNoUpdates) {
  auto b = backoff::retry_budget::aws_standard();
  std::atomic<std::int64_t> granted{0};
  std::atomic<bool> bad{false};
  in_threads([&](int id) {
    for (int i = 0; i < kOps / 2; ++i) {  // acquire + record: two operations
      const bool timeout = (i + id) % 3 == 0;
      if (b.acquire({true, t0, timeout}).allowed) {
        ++granted;
        const auto t = b.milli_tokens();
        if (t < 0 || t > b.capacity_milli()) bad = true;
        b.record({attempt_outcome::success, true, timeout, t0});  // refunds exactly the cost
      }
    }
  });
  EXPECT_FALSE(bad.load());
  EXPECT_GT(granted.load(), 0);
  EXPECT_EQ(b.milli_tokens(), b.capacity_milli());  // every acquire was refunded: nothing lost
}

TEST(Concurrency, AwsBudgetNeverGoesNegative) {
  auto b = backoff::retry_budget::aws_standard();
  std::atomic<std::int64_t> granted{0};
  in_threads([&](int) {
    for (int i = 0; i < kOps; ++i)
      if (b.acquire({true, t0, false}).allowed) ++granted;
  });
  EXPECT_EQ(granted.load(), 100);  // exactly 500 / 5, however the threads interleave
  EXPECT_EQ(b.milli_tokens(), 0);
}

TEST(Concurrency, GrpcBudgetStaysWithinBounds) {
  auto b = backoff::retry_budget::grpc({.max_tokens = 100, .token_ratio = 0.5});
  std::atomic<bool> bad{false};
  in_threads([&](int id) {
    for (int i = 0; i < kOps / 2; ++i) {  // acquire + record: two operations
      (void)b.acquire({true, t0, false});
      b.record({(i + id) % 2 ? attempt_outcome::success : attempt_outcome::retryable, false, false, t0});
      const auto t = b.milli_tokens();
      if (t < 0 || t > b.capacity_milli()) bad = true;
    }
  });
  EXPECT_FALSE(bad.load());
}

TEST(Concurrency, FinagleBudgetNeverOverdraws) {
  auto b = backoff::retry_budget::finagle();
  std::atomic<std::int64_t> deposits{0}, granted{0};
  in_threads([&](int id) {
    for (int i = 0; i < kOps; ++i) {
      if ((i + id) % 4 == 0) {
        b.record({attempt_outcome::success, false, false, t0});
        ++deposits;
      } else if (b.acquire({true, t0, false}).allowed) {
        ++granted;
      }
    }
  });
  // reserve 100 retries, plus one retry per 5 requests
  EXPECT_LE(granted.load(), 100 + deposits.load() / 5);
  EXPECT_GE(b.milli_tokens(), 0);
}

TEST(Concurrency, ThrottleProbabilityStaysAProbability) {
  backoff::adaptive_throttle t;
  std::atomic<bool> bad{false};
  in_threads([&](int id) {
    for (int i = 0; i < kOps / 2; ++i) {  // acquire + record: two operations
      const auto now = t0 + std::chrono::milliseconds(i);
      if (t.acquire({false, now, false}).allowed)
        t.record({(i + id) % 3 ? attempt_outcome::success : attempt_outcome::retryable, false, false, now});
      if (i % 1024 == 0) {
        const double p = t.reject_probability(now);
        if (p < 0 || p > 1) bad = true;
      }
    }
  });
  EXPECT_FALSE(bad.load());
}

TEST(Concurrency, BreakerStaysClosedForAHealthyBackendAndOpensForADeadOne) {
  backoff::circuit_breaker healthy, dead;
  std::atomic<int> refused{0};
  in_threads([&](int) {
    for (int i = 0; i < kOps / 4; ++i) {  // four operations
      if (healthy.acquire({false, t0, false}).allowed) healthy.record({attempt_outcome::success, false, false, t0});
      if (dead.acquire({false, t0, false}).allowed) dead.record({attempt_outcome::retryable, false, false, t0});
      else ++refused;
    }
  });
  EXPECT_EQ(healthy.current(), backoff::circuit_breaker::state::closed);
  EXPECT_EQ(dead.current(), backoff::circuit_breaker::state::open);
  EXPECT_GT(refused.load(), kThreads * kOps / 4 - 1000);
}

TEST(Concurrency, HostBackoffStaysBounded) {
  backoff::host_backoff h({.max_entries = 1600});
  std::vector<std::string> keys;
  for (int k = 0; k < 5000; ++k) keys.push_back("h" + std::to_string(k));
  in_threads([&](int id) {
    for (int i = 0; i < kOps; ++i) {
      const std::string& key = keys[static_cast<std::size_t>((i * 7 + id) % 5000)];
      if (i % 3) h.on_failure(key, t0 + std::chrono::milliseconds(i));
      else h.on_success(key, t0 + std::chrono::milliseconds(i));
    }
  });
  EXPECT_LE(h.size(), 1600u);
}
