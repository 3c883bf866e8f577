// SPDX-License-Identifier: BSL-1.0
#include "backoff/breaker.hpp"

#include <gtest/gtest.h>

#include "backoff/retry.hpp"

using namespace std::chrono_literals;
using backoff::attempt_outcome;
using backoff::circuit_breaker;
using backoff::stop_reason;

namespace {
const backoff::time_point t0{std::chrono::hours{1}};
void feed(circuit_breaker& b, int successes, int failures, backoff::time_point t) {
  for (int i = 0; i < successes; ++i) b.record({attempt_outcome::success, false, false, t});
  for (int i = 0; i < failures; ++i) b.record({attempt_outcome::retryable, false, false, t});
}
bool allowed(circuit_breaker& b, backoff::time_point t) { return b.acquire({false, t, false}).allowed; }
}  // namespace

TEST(Breaker, TripsAtTheFailureRatioWithMinimumThroughput) {
  circuit_breaker b;  // 0.1, 100, 30 s, 5 s
  feed(b, 90, 9, t0);
  EXPECT_EQ(b.current(), circuit_breaker::state::closed);  // 99 calls: below the minimum
  feed(b, 0, 1, t0);                                       // 100 calls, 10 failures: 0.1
  EXPECT_EQ(b.current(), circuit_breaker::state::open);
  EXPECT_EQ(b.acquire({false, t0 + 1s, false}).reason, stop_reason::circuit_open);
}

TEST(Breaker, NoTripBelowTheMinimumThroughputOrTheRatio) {
  circuit_breaker b;
  feed(b, 0, 99, t0);
  EXPECT_EQ(b.current(), circuit_breaker::state::closed);
  circuit_breaker c;
  feed(c, 1000, 50, t0);  // 4.8 %
  EXPECT_EQ(c.current(), circuit_breaker::state::closed);
}

TEST(Breaker, OldFailuresLeaveTheWindow) {
  circuit_breaker b;
  feed(b, 0, 50, t0);
  feed(b, 200, 0, t0 + 31s);  // the failures are older than 30 s
  feed(b, 0, 10, t0 + 31s);   // 10 / 210 < 0.1
  EXPECT_EQ(b.current(), circuit_breaker::state::closed);
}

TEST(Breaker, HalfOpenProbesAndGrowingBreaks) {
  circuit_breaker b({.minimum_throughput = 10, .break_duration = 5s, .break_growth = 2.0, .max_break = 15s,
                     .probes = 1});
  feed(b, 0, 10, t0);
  ASSERT_EQ(b.current(), circuit_breaker::state::open);
  EXPECT_FALSE(allowed(b, t0 + 4999ms));
  EXPECT_TRUE(allowed(b, t0 + 5s));  // the probe
  EXPECT_EQ(b.current(), circuit_breaker::state::half_open);
  EXPECT_FALSE(allowed(b, t0 + 5s));  // one probe at a time
  feed(b, 0, 1, t0 + 6s);             // the probe failed: open again, for 10 s
  EXPECT_EQ(b.current(), circuit_breaker::state::open);
  EXPECT_EQ(b.open_until(), t0 + 16s);
  EXPECT_FALSE(allowed(b, t0 + 15s));
  EXPECT_TRUE(allowed(b, t0 + 16s));
  feed(b, 0, 1, t0 + 16s);  // third trip: 20 s, capped at 15 s
  EXPECT_EQ(b.open_until(), t0 + 31s);
  EXPECT_EQ(b.trips(), 3u);
  EXPECT_TRUE(allowed(b, t0 + 31s));
  feed(b, 1, 0, t0 + 31s);  // the probe succeeded: closed, and the break resets
  EXPECT_EQ(b.current(), circuit_breaker::state::closed);
  EXPECT_EQ(b.trips(), 0u);
  EXPECT_TRUE(allowed(b, t0 + 31s));
  feed(b, 0, 10, t0 + 32s);
  EXPECT_EQ(b.open_until(), t0 + 37s);
}

TEST(Breaker, ValidationNamesTheField) {
  try {
    circuit_breaker b({.failure_ratio = 1.5});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "backoff::circuit_breaker: failure_ratio must be in (0, 1] (got 1.5)");
  }
  EXPECT_THROW(circuit_breaker({.probes = 0}), std::invalid_argument);
  EXPECT_THROW(circuit_breaker({.break_duration = 10s, .max_break = 5s}), std::invalid_argument);
}

TEST(BreakerInTheLoop, AnOpenCircuitRefusesTheFirstAttempt) {
  circuit_breaker b({.minimum_throughput = 10});
  backoff::manual_clock clock;
  int calls = 0;
  auto fail = [&]() -> int { ++calls; throw std::runtime_error("down"); };
  const backoff::policy quick{.schedule = backoff::constant{.delay = 10ms}, .stop = backoff::stop::after_attempts(20)};
  auto r = backoff::try_retry(quick, fail,
                              {.gate = &b, .gate_first_attempt = true, .clock = &clock});
  EXPECT_EQ(r.reason, stop_reason::circuit_open);
  EXPECT_EQ(calls, 10);  // the tenth failure tripped it
  ASSERT_TRUE(r.error);
  calls = 0;
  auto again = backoff::try_retry(backoff::policy{}, fail, {.gate = &b, .gate_first_attempt = true, .clock = &clock});
  EXPECT_EQ(again.reason, stop_reason::circuit_open);
  EXPECT_EQ(calls, 0);
  EXPECT_THROW(backoff::retry(backoff::policy{}, fail, {.gate = &b, .gate_first_attempt = true, .clock = &clock}),
               backoff::retry_error);
}

TEST(Breaker, AnOpenBreakerIgnoresLateResults) {
  circuit_breaker b({.minimum_throughput = 10, .break_duration = 5s});
  feed(b, 0, 10, t0);
  ASSERT_EQ(b.current(), circuit_breaker::state::open);
  const auto until = b.open_until();
  const auto trips = b.trips();
  feed(b, 0, 50, t0 + 1s);  // results of calls started before the trip
  feed(b, 50, 0, t0 + 2s);
  EXPECT_EQ(b.current(), circuit_breaker::state::open);
  EXPECT_EQ(b.open_until(), until);
  EXPECT_EQ(b.trips(), trips);
  EXPECT_TRUE(allowed(b, t0 + 5s));  // the break ends when it was going to
}
