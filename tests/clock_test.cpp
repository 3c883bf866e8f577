// SPDX-License-Identifier: BSL-1.0
#include "backoff/clock.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

using namespace std::chrono_literals;

TEST(ManualClock, SleepAdvancesInstantly) {
  backoff::manual_clock c;
  const auto start = c.now();
  EXPECT_TRUE(c.sleep_for(64s, {}));
  EXPECT_EQ(c.now() - start, 64s);
  c.advance(1s);
  EXPECT_EQ(c.now() - start, 65s);
  c.advance(-5s);
  EXPECT_EQ(c.now() - start, 65s);
  EXPECT_EQ(c.total_slept(), 64s);
  EXPECT_EQ(c.sleep_count(), 1u);
}

TEST(ManualClock, CancelledSleepDoesNotAdvance) {
  backoff::manual_clock c;
  std::stop_source s;
  s.request_stop();
  const auto start = c.now();
  EXPECT_FALSE(c.sleep_for(10s, s.get_token()));
  EXPECT_EQ(c.now(), start);
}

TEST(RealClock, StopTokenInterruptsALongSleep) {
  std::stop_source s;
  std::jthread canceller([&] {
    std::this_thread::sleep_for(20ms);
    s.request_stop();
  });
  const auto t = std::chrono::steady_clock::now();
  EXPECT_FALSE(backoff::real_clock::instance().sleep_for(1h, s.get_token()));
  // Generous bound: the point is that it did not sleep an hour.
  EXPECT_LT(std::chrono::steady_clock::now() - t, 60s);
}

TEST(RealClock, ShortSleepCompletes) {
  std::stop_source s;
  const auto t = std::chrono::steady_clock::now();
  EXPECT_TRUE(backoff::real_clock::instance().sleep_for(1ms, s.get_token()));
  EXPECT_GE(std::chrono::steady_clock::now() - t, 1ms);
  EXPECT_TRUE(backoff::real_clock::instance().sleep_for(1ms, {}));
}
