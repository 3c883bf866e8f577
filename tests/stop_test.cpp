// SPDX-License-Identifier: BSL-1.0
#include "backoff/stop.hpp"

#include <gtest/gtest.h>

#include <chrono>

using namespace std::chrono_literals;
using backoff::stop_reason;
using backoff::stop_rule;
namespace stop = backoff::stop;

namespace {
const backoff::time_point t0{std::chrono::hours{1}};
stop_rule::context at(std::uint32_t attempts, backoff::duration elapsed, backoff::duration next = 1s) {
  return {attempts, elapsed, t0 + elapsed, next};
}
}  // namespace

TEST(Stop, AfterAttempts) {
  const auto r = stop::after_attempts(3);
  EXPECT_FALSE(r.decide(at(2, 0s)).stop);
  const auto d = r.decide(at(3, 0s));
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.reason, stop_reason::exhausted);
  EXPECT_EQ(r.max_attempts(), 3u);
  EXPECT_FALSE(r.uses_clock());
}

TEST(Stop, AfterElapsedShortensTheLastWait) {
  const auto r = stop::after_elapsed(10s);
  auto d = r.decide(at(1, 7s, 5s));
  EXPECT_FALSE(d.stop);
  EXPECT_EQ(d.max_wait, 3s);
  d = r.decide(at(2, 10s));
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.reason, stop_reason::deadline);
  EXPECT_TRUE(r.uses_clock());
}

TEST(Stop, BeforeElapsedRefusesAWaitThatCrosses) {
  const auto r = stop::before_elapsed(10s);
  EXPECT_FALSE(r.decide(at(1, 7s, 3s)).stop);
  EXPECT_TRUE(r.decide(at(1, 7s, 3001ms)).stop);
}

TEST(Stop, DeadlineAndBeforeDeadline) {
  const auto r = stop::at_deadline(t0 + 5s);
  auto d = r.decide(at(1, 4s, 10s));
  EXPECT_FALSE(d.stop);
  EXPECT_EQ(d.max_wait, 1s);
  EXPECT_TRUE(r.decide(at(2, 5s)).stop);
  const auto b = stop::before_deadline(t0 + 5s);
  EXPECT_FALSE(b.decide(at(1, 4s, 1s)).stop);
  EXPECT_TRUE(b.decide(at(1, 4s, 1001ms)).stop);
}

TEST(Stop, EitherStopsOnTheFirst) {
  const auto r = stop::after_attempts(5) | stop::after_elapsed(10s);
  EXPECT_TRUE(r.decide(at(5, 1s)).stop);
  EXPECT_EQ(r.decide(at(5, 1s)).reason, stop_reason::exhausted);
  EXPECT_TRUE(r.decide(at(2, 11s)).stop);
  EXPECT_EQ(r.decide(at(2, 11s)).reason, stop_reason::deadline);
  EXPECT_EQ(r.decide(at(2, 8s, 5s)).max_wait, 2s);
  EXPECT_EQ(r.max_attempts(), 5u);
}

TEST(Stop, BothStopsOnlyWhenBothHold) {
  const auto r = stop::after_attempts(3) & stop::after_elapsed(10s);
  EXPECT_FALSE(r.decide(at(5, 1s)).stop);
  EXPECT_FALSE(r.decide(at(2, 11s)).stop);
  EXPECT_TRUE(r.decide(at(3, 10s)).stop);
  // Once the elapsed limit has passed it no longer shortens waits.
  EXPECT_EQ(r.decide(at(2, 11s, 4s)).max_wait, backoff::duration::max());
}

TEST(Stop, NestedExpressions) {
  const auto r = (stop::after_attempts(10) & stop::after_elapsed(1s)) | stop::after_attempts(20);
  EXPECT_FALSE(r.decide(at(10, 0s)).stop);
  EXPECT_TRUE(r.decide(at(10, 2s)).stop);
  EXPECT_TRUE(r.decide(at(20, 0s)).stop);
  EXPECT_EQ(r.max_attempts(), 20u);
  // The same with the compound rule on the right: its operands move up.
  const auto right = stop::after_attempts(20) | (stop::after_elapsed(1s) & stop::after_attempts(10));
  EXPECT_FALSE(right.decide(at(10, 0s)).stop);
  EXPECT_FALSE(right.decide(at(9, 2s)).stop);
  EXPECT_TRUE(right.decide(at(10, 2s)).stop);
  EXPECT_EQ(right.decide(at(10, 2s)).reason, stop_reason::deadline);
  EXPECT_TRUE(right.decide(at(20, 0s)).stop);
  const auto n = stop::never() | stop::after_attempts(2);
  EXPECT_TRUE(n.decide(at(2, 0s)).stop);
  EXPECT_FALSE(stop::never().decide(at(1000000, 1000h)).stop);
}

TEST(Stop, TooManyRulesIsAnError) {
  auto r = stop::after_attempts(1);
  for (int i = 0; i < 7; ++i) r = r | stop::after_attempts(2);
  EXPECT_EQ(r.max_attempts(), 1u);
  EXPECT_THROW(r = r | stop::after_attempts(3), std::invalid_argument);
}

TEST(Stop, ZeroAttemptsOrNegativeTimesAreRejected) {
  try {
    (void)stop::after_attempts(0);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "backoff::stop::after_attempts: n must be >= 1 (got 0)");
  }
  EXPECT_THROW((void)stop::after_elapsed(-1s), std::invalid_argument);
  EXPECT_THROW((void)stop::before_elapsed(-1ns), std::invalid_argument);
  // The limits themselves are allowed: no wait at all fits before 0.
  EXPECT_NO_THROW((void)stop::before_elapsed(0s));
  EXPECT_TRUE(stop::before_elapsed(0s).decide(at(1, 0s, 1ns)).stop);
  EXPECT_FALSE(stop::before_elapsed(0s).decide(at(1, 0s, 0s)).stop);
}
