// SPDX-License-Identifier: BSL-1.0
#include "backoff/retrying.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
backoff::policy quick(std::uint32_t attempts) {
  return {.schedule = backoff::constant{.delay = 0ns}, .jitter = backoff::jitter::none(),
          .stop = backoff::stop::after_attempts(attempts)};
}
}  // namespace

TEST(Retrying, KeepsTheSignatureAndPassesTheArgumentsToEveryAttempt) {
  std::vector<std::string> seen;
  auto f = backoff::retrying(quick(3), [&](const std::string& s, int n) {
    seen.push_back(s + std::to_string(n));
    if (seen.size() < 3) throw std::runtime_error("again");
    return static_cast<int>(s.size()) + n;
  });
  const std::string arg = "abc";
  EXPECT_EQ(f(arg, 4), 7);
  EXPECT_EQ(seen, (std::vector<std::string>{"abc4", "abc4", "abc4"}));
}

TEST(Retrying, EachCallStartsAFreshSchedule) {
  backoff::manual_clock clock;
  std::vector<backoff::duration> delays;
  int calls = 0;
  auto f = backoff::retrying(
      backoff::policy{.schedule = backoff::exponential{.initial = 1s, .multiplier = 2.0, .max_delay = 60s},
                      .jitter = backoff::jitter::none(),
                      .stop = backoff::stop::after_attempts(3)},
      [&] {
        if (++calls % 3 != 0) throw std::runtime_error("x");
        return calls;
      },
      backoff::options<int>{.after_attempt = [&](const backoff::attempt<int>& a) { if (!a.last) delays.push_back(a.record.delay); },
                            .clock = &clock});
  EXPECT_EQ(f(), 3);
  EXPECT_EQ(f(), 6);
  EXPECT_EQ(delays, (std::vector<backoff::duration>{1s, 2s, 1s, 2s}));
}

TEST(Retrying, TheLastExceptionPropagatesUnchanged) {
  auto f = backoff::retrying(quick(2), []() -> int { throw std::out_of_range("nope"); });
  EXPECT_THROW(f(), std::out_of_range);
}

TEST(Retrying, OneWrapperServesManyThreads) {
  std::atomic<int> attempts{0};
  auto f = backoff::retrying(quick(3), [&](int x) {
    // Every call fails once, then succeeds: each needs exactly two attempts.
    thread_local int failed_for = -1;
    ++attempts;
    if (failed_for != x) {
      failed_for = x;
      throw std::runtime_error("once");
    }
    return x * 2;
  });
  std::vector<std::thread> threads;
  std::atomic<long> sum{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) sum += f(t * 1000 + i);
    });
  for (auto& th : threads) th.join();
  long want = 0;
  for (int v = 0; v < 8000; ++v) want += 2L * v;
  EXPECT_EQ(sum.load(), want);
  EXPECT_EQ(attempts.load(), 16000);
}
