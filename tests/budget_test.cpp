// SPDX-License-Identifier: BSL-1.0
#include "backoff/budget.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <stdexcept>

#include "backoff/retry.hpp"

using namespace std::chrono_literals;
using backoff::attempt_outcome;
using backoff::stop_reason;

namespace {
const backoff::time_point t0{std::chrono::hours{1}};
backoff::gate_request retry_at(backoff::time_point t, bool timeout = false) { return {true, t, timeout}; }
backoff::gate_outcome outcome(attempt_outcome o, bool retry, backoff::time_point t = t0, bool timeout = false) {
  return {o, retry, timeout, t};
}
}  // namespace

TEST(BudgetAws, CapacityFiveHundredRetryCostFive) {
  auto b = backoff::retry_budget::aws_standard();
  EXPECT_EQ(b.milli_tokens(), 500'000);
  int allowed = 0;
  while (b.acquire(retry_at(t0)).allowed) ++allowed;
  EXPECT_EQ(allowed, 100);  // 500 / 5
  EXPECT_EQ(b.milli_tokens(), 0);
  EXPECT_EQ(b.acquire(retry_at(t0)).reason, stop_reason::budget_exhausted);
  EXPECT_TRUE(b.acquire({false, t0, false}).allowed);  // first attempts are never refused
}

TEST(BudgetAws, TimeoutsCostTen) {
  auto b = backoff::retry_budget::aws_standard();
  int allowed = 0;
  while (b.acquire(retry_at(t0, true)).allowed) ++allowed;
  EXPECT_EQ(allowed, 50);
}

TEST(BudgetAws, RefundsOnSuccess) {
  auto b = backoff::retry_budget::aws_standard();
  ASSERT_TRUE(b.acquire(retry_at(t0)).allowed);
  ASSERT_TRUE(b.acquire(retry_at(t0, true)).allowed);
  EXPECT_EQ(b.milli_tokens(), 485'000);
  b.record(outcome(attempt_outcome::success, true));  // a retry succeeded: its cost (5) comes back
  EXPECT_EQ(b.milli_tokens(), 490'000);
  b.record(outcome(attempt_outcome::success, true, t0, true));  // after a timeout: 10
  EXPECT_EQ(b.milli_tokens(), 500'000);
  b.record(outcome(attempt_outcome::success, false));  // full: stays at capacity
  EXPECT_EQ(b.milli_tokens(), 500'000);
  ASSERT_TRUE(b.acquire(retry_at(t0)).allowed);
  b.record(outcome(attempt_outcome::success, false));  // first-try success: 1
  EXPECT_EQ(b.milli_tokens(), 496'000);
  b.record(outcome(attempt_outcome::retryable, false));  // failures cost nothing by themselves
  EXPECT_EQ(b.milli_tokens(), 496'000);
}

TEST(BudgetGrpc, RetriesStopAtHalfTheTokens) {
  auto b = backoff::retry_budget::grpc({.max_tokens = 10, .token_ratio = 0.1});
  EXPECT_EQ(b.milli_tokens(), 10'000);
  for (int i = 0; i < 4; ++i) b.record(outcome(attempt_outcome::retryable, false));
  EXPECT_TRUE(b.acquire(retry_at(t0)).allowed);  // 6 > 5
  b.record(outcome(attempt_outcome::retryable, true));
  EXPECT_EQ(b.milli_tokens(), 5'000);
  EXPECT_FALSE(b.acquire(retry_at(t0)).allowed);  // 5 is not > 5
  b.record(outcome(attempt_outcome::success, false));
  EXPECT_EQ(b.milli_tokens(), 5'100);
  EXPECT_TRUE(b.acquire(retry_at(t0)).allowed);
  for (int i = 0; i < 100; ++i) b.record(outcome(attempt_outcome::retryable, false));
  EXPECT_EQ(b.milli_tokens(), 0);  // never negative
  for (int i = 0; i < 1000; ++i) b.record(outcome(attempt_outcome::success, false));
  EXPECT_EQ(b.milli_tokens(), 10'000);  // never above max_tokens
}

TEST(BudgetFinagle, ReserveAllowsMinRetriesPerSecondOverTheTtl) {
  auto b = backoff::retry_budget::finagle();  // ttl 10 s, 10/s, 20 %
  int allowed = 0;
  while (b.acquire(retry_at(t0)).allowed) ++allowed;
  EXPECT_EQ(allowed, 100);  // 10 per second × 10 s with no traffic
  // Withdrawals expire with the ttl.
  allowed = 0;
  while (b.acquire(retry_at(t0 + 10s)).allowed) ++allowed;
  EXPECT_EQ(allowed, 100);
}

TEST(BudgetFinagle, TwentyPercentOfRequestsOnTopOfTheReserve) {
  auto b = backoff::retry_budget::finagle();
  for (int i = 0; i < 500; ++i) b.record(outcome(attempt_outcome::success, false, t0));
  int allowed = 0;
  while (b.acquire(retry_at(t0 + 1s)).allowed) ++allowed;
  EXPECT_EQ(allowed, 100 + 100);  // reserve + 20 % of 500
  // Retries deposit nothing.
  b.record(outcome(attempt_outcome::success, true, t0 + 1s));
  EXPECT_FALSE(b.acquire(retry_at(t0 + 1s)).allowed);
  // 10 s after the deposits they are gone, and so are the withdrawals.
  allowed = 0;
  while (b.acquire(retry_at(t0 + 11s)).allowed) ++allowed;
  EXPECT_EQ(allowed, 100);
}

TEST(BudgetValidation, BadNumbersNameTheField) {
  try {
    (void)backoff::retry_budget::grpc({.max_tokens = 0});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "backoff::retry_budget::grpc: max_tokens must be in (0, 1000] (got 0)");
  }
  EXPECT_THROW((void)backoff::retry_budget::aws_standard({.capacity = -1}), std::invalid_argument);
  EXPECT_THROW((void)backoff::retry_budget::finagle({.ttl = 100s}), std::invalid_argument);
  EXPECT_THROW((void)backoff::retry_budget::finagle({.percent_can_retry = -0.5}), std::invalid_argument);
  // gRPC's token_ratio is in (0, 1]: each bound itself, and past it.
  EXPECT_THROW((void)backoff::retry_budget::grpc({.token_ratio = 0}), std::invalid_argument);
  EXPECT_THROW((void)backoff::retry_budget::grpc({.token_ratio = 1.001}), std::invalid_argument);
  EXPECT_NO_THROW((void)backoff::retry_budget::grpc({.token_ratio = 1}));
  EXPECT_NO_THROW((void)backoff::retry_budget::grpc({.token_ratio = 0.001}));
}

TEST(BudgetInTheLoop, ADeniedRetryEndsTheLoopWithTheLastError) {
  auto b = backoff::retry_budget::aws_standard({.capacity = 10});  // two retries' worth
  backoff::manual_clock clock;
  int calls = 0;
  auto r = backoff::try_retry(backoff::policy{.stop = backoff::stop::after_attempts(10)},
                              [&]() -> int { ++calls; throw std::runtime_error("503"); },
                              {.gate = &b, .clock = &clock});
  EXPECT_EQ(r.reason, stop_reason::budget_exhausted);
  EXPECT_EQ(calls, 3);
  ASSERT_TRUE(r.error);
  try {
    std::rethrow_exception(r.error);
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "503");
  }
  // retry() rethrows the real error, not a wrapper.
  EXPECT_THROW(backoff::retry(backoff::policy{}, []() -> int { throw std::out_of_range("x"); },
                              {.gate = &b, .clock = &clock}),
               std::out_of_range);
}

TEST(BudgetInTheLoop, SuccessAfterRetriesRefundsThroughTheLoop) {
  auto b = backoff::retry_budget::aws_standard();
  backoff::manual_clock clock;
  int calls = 0;
  auto r = backoff::try_retry(backoff::policy{}, [&]() -> int {
    if (++calls < 3) throw std::runtime_error("x");
    return 1;
  }, {.gate = &b, .clock = &clock});
  EXPECT_TRUE(r.ok());
  // Two retries cost 10; the success of the last retry refunds 5.
  EXPECT_EQ(b.milli_tokens(), 495'000);
}

TEST(BudgetFinagle, AMovedBudgetKeepsItsWindow) {
  // Ten requests at t0, one 15 s later: the first ten have left the 10 s
  // window. The moved budget must still know what "now" is, or it counts them.
  // (15 s, not 20: a whole number of windows later, the second request's slot
  // would be the first ten's, overwritten, and nothing would be left to count.)
  auto b = backoff::retry_budget::finagle({.ttl = 10s, .min_retries_per_sec = 0, .percent_can_retry = 100});
  for (int i = 0; i < 10; ++i) b.record(outcome(attempt_outcome::success, false, t0));
  b.record(outcome(attempt_outcome::success, false, t0 + 15s));
  const std::int64_t before = b.milli_tokens();
  EXPECT_EQ(before, 1000);
  auto moved = std::move(b);
  EXPECT_EQ(moved.milli_tokens(), before);
}

TEST(BudgetRecommended, TenPercentOfRequestsPlusASmallReserve) {
  auto b = backoff::retry_budget::recommended();
  int allowed = 0;
  while (b.acquire(retry_at(t0)).allowed) ++allowed;
  EXPECT_EQ(allowed, 2);  // a quiet client: 0.2 retries/s over 10 s
  for (int i = 0; i < 1000; ++i) b.record(outcome(attempt_outcome::success, false, t0));
  allowed = 0;
  while (b.acquire(retry_at(t0)).allowed) ++allowed;
  EXPECT_EQ(allowed, 100);  // 10 % of 1000 requests
}

TEST(Budget, NumbersThatWouldOverflowAreRejected) {
  using backoff::retry_budget;
  EXPECT_THROW(retry_budget::aws_standard({.no_retry_increment = -1}), std::invalid_argument);
  EXPECT_THROW(retry_budget::aws_standard({.capacity = std::numeric_limits<std::int64_t>::max() / 1000 + 1}),
               std::invalid_argument);
  EXPECT_NO_THROW(retry_budget::aws_standard({.capacity = std::numeric_limits<std::int64_t>::max() / 1000}));
  EXPECT_THROW(retry_budget::finagle({.percent_can_retry = 1e-300}), std::invalid_argument);
  EXPECT_THROW(retry_budget::finagle({.min_retries_per_sec = 1e300}), std::invalid_argument);
  EXPECT_NO_THROW(retry_budget::finagle({.min_retries_per_sec = 1e6, .percent_can_retry = 0.001}));
}
