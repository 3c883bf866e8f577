// SPDX-License-Identifier: BSL-1.0
#include "backoff/throttle.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using backoff::adaptive_throttle;
using backoff::attempt_outcome;

namespace {
const backoff::time_point t0{std::chrono::hours{1}};
}

TEST(Throttle, ProbabilityFollowsTheSreFormula) {
  adaptive_throttle t({.min_requests = 1});
  // 100 requests, 40 accepted: p = (100 − 2·40) / 101.
  int accepted = 0;
  for (int i = 0; i < 100; ++i) {
    t.acquire({false, t0, false});
    if (accepted < 40) {
      t.record({attempt_outcome::success, false, false, t0});
      ++accepted;
    } else {
      t.record({attempt_outcome::retryable, false, false, t0});
    }
  }
  EXPECT_NEAR(t.reject_probability(t0), 20.0 / 101.0, 1e-12);
}

TEST(Throttle, HealthyBackendIsNeverThrottled) {
  adaptive_throttle t;
  for (int i = 0; i < 10000; ++i) {
    ASSERT_TRUE(t.acquire({false, t0, false}).allowed);
    t.record({attempt_outcome::success, false, false, t0});
  }
  EXPECT_EQ(t.reject_probability(t0), 0.0);
}

TEST(Throttle, ColdStartIsNotStarved) {
  adaptive_throttle t({.min_requests = 20});
  for (int i = 0; i < 19; ++i) {
    EXPECT_TRUE(t.acquire({false, t0, false}).allowed);
    t.record({attempt_outcome::retryable, false, false, t0});
  }
  EXPECT_EQ(t.reject_probability(t0), 0.0);
}

TEST(Throttle, RejectsAboutTheRightShareWhenTheBackendRefusesEverything) {
  adaptive_throttle t({.seed = 7});
  int rejected = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const auto d = t.acquire({false, t0, false});
    if (!d.allowed) {
      ++rejected;
      EXPECT_EQ(d.reason, backoff::stop_reason::throttled);
      continue;
    }
    t.record({attempt_outcome::retryable, false, false, t0});
  }
  // p → (requests)/(requests+1) ≈ 1 once past the floor; nearly all are rejected.
  EXPECT_GT(rejected, n * 9 / 10);
}

TEST(Throttle, TheWindowForgets) {
  adaptive_throttle t({.window = 2min, .min_requests = 1});
  for (int i = 0; i < 100; ++i) {
    t.acquire({false, t0, false});
    t.record({attempt_outcome::retryable, false, false, t0});
  }
  EXPECT_GT(t.reject_probability(t0), 0.9);
  EXPECT_GT(t.reject_probability(t0 + 119s), 0.9);
  EXPECT_EQ(t.reject_probability(t0 + 2min + 2s), 0.0);
}

TEST(Throttle, Validation) {
  EXPECT_THROW(adaptive_throttle({.k = 0.5}), std::invalid_argument);
  EXPECT_THROW(adaptive_throttle({.window = 10ms}), std::invalid_argument);
}

// Mild overload is throttled too, in proportion: with the rejection
// probability between 0.1 and 0.45, some requests are refused locally. (A
// mutant that throttled only above 0.5 survived every other test.)
TEST(Throttle, MildOverloadIsThrottledInProportion) {
  adaptive_throttle t({.min_requests = 1, .seed = 3});
  for (int i = 0; i < 100; ++i) {
    t.acquire({false, t0, false});
    t.record({i < 45 ? attempt_outcome::success : attempt_outcome::retryable, false, false, t0});
  }
  ASSERT_NEAR(t.reject_probability(t0), 10.0 / 101.0, 1e-12);
  int denied = 0;
  for (int i = 0; i < 60; ++i) {  // p climbs from 0.10 to 0.43 as requests go unanswered
    const auto d = t.acquire({false, t0, false});
    if (!d.allowed) ++denied;
  }
  EXPECT_LT(t.reject_probability(t0), 0.5);
  EXPECT_GE(denied, 5);   // about 16 expected
  EXPECT_LE(denied, 35);
}
