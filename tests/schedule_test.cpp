// SPDX-License-Identifier: BSL-1.0
#include "backoff/schedule.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;
using backoff::schedule_state;
using std::chrono::nanoseconds;

namespace {

template <class S>
std::vector<nanoseconds> first(const S& s, int n, std::uint64_t seed = 1) {
  backoff::fast_rng rng{seed};
  schedule_state st;
  std::vector<nanoseconds> out;
  for (int i = 0; i < n; ++i) out.push_back(s.next(st, rng));
  return out;
}

std::string invalid_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no exception";
}

}  // namespace

TEST(Schedule, ConstantIsConstant) {
  const auto d = first(backoff::constant{.delay = 250ms}, 5);
  for (auto x : d) EXPECT_EQ(x, 250ms);
}

TEST(Schedule, LinearGrowsByIncrementAndStopsAtCap) {
  const auto d = first(backoff::linear{.initial = 1s, .increment = 500ms, .max_delay = 2500ms}, 6);
  const std::vector<nanoseconds> want{1s, 1500ms, 2s, 2500ms, 2500ms, 2500ms};
  EXPECT_EQ(d, want);
}

TEST(Schedule, ExponentialDoublesAndTruncatesAtCap) {
  const auto d = first(backoff::exponential{.initial = 1s, .multiplier = 2.0, .max_delay = 64s}, 9);
  const std::vector<nanoseconds> want{1s, 2s, 4s, 8s, 16s, 32s, 64s, 64s, 64s};
  EXPECT_EQ(d, want);
}

TEST(Schedule, ExponentialWithFractionalMultiplierMatchesFormula) {
  const backoff::exponential e{.initial = 100ms, .multiplier = 1.6, .max_delay = 120s};
  const auto d = first(e, 30);
  for (std::size_t n = 0; n < d.size(); ++n) {
    const double want = std::min(120e9, 100e6 * std::pow(1.6, static_cast<double>(n)));
    EXPECT_NEAR(static_cast<double>(d[n].count()), want, want * 1e-12 + 1.0) << "n=" << n;
  }
}

TEST(Schedule, DecorrelatedStaysWithinBaseAndThreeTimesPrevious) {
  const backoff::decorrelated s{.base = 10ms, .max_delay = 2s};
  backoff::fast_rng rng{99};
  schedule_state st;
  nanoseconds prev = 10ms;
  for (int i = 0; i < 10000; ++i) {
    const auto d = s.next(st, rng);
    EXPECT_GE(d, 10ms);
    EXPECT_LE(d, std::min<nanoseconds>(2s, 3 * prev));
    prev = d;
  }
}

TEST(Schedule, DecorrelatedMatchesFormulaUnderSeed) {
  const backoff::decorrelated s{.base = 5ms, .max_delay = 2s};
  backoff::fast_rng a{7}, b{7};
  schedule_state st;
  nanoseconds prev = 5ms;
  for (int i = 0; i < 50; ++i) {
    // min(cap, U(base, 3 × previous)) with previous starting at base.
    const auto want = std::min<nanoseconds>(2s, backoff::uniform_duration(b, 5ms, 3 * prev));
    const auto got = s.next(st, a);
    ASSERT_EQ(got, want) << "i=" << i;
    prev = got;
  }
}

TEST(Schedule, SameSeedSameDelaysOtherSeedOtherDelays) {
  const backoff::schedule s = backoff::decorrelated{.base = 1ms, .max_delay = 10s};
  EXPECT_EQ(first(s, 20, 42), first(s, 20, 42));
  EXPECT_NE(first(s, 20, 42), first(s, 20, 43));
}

TEST(Schedule, VariantDispatchesToEachKind) {
  backoff::schedule s = backoff::linear{.initial = 1s, .increment = 1s, .max_delay = 3s};
  EXPECT_EQ(s.name(), "linear");
  EXPECT_EQ(s.cap(), 3s);
  EXPECT_EQ(first(s, 4), (std::vector<nanoseconds>{1s, 2s, 3s, 3s}));
  s = backoff::constant{.delay = 5ms};
  EXPECT_EQ(s.cap(), 5ms);
  EXPECT_EQ(backoff::schedule{}.name(), "exponential");
}

TEST(ScheduleOverflow, MillionRetriesWithHugeMultiplierSaturateAtCap) {
  const backoff::exponential e{.initial = 1ns, .multiplier = 1e6, .max_delay = nanoseconds::max()};
  backoff::fast_rng rng;
  schedule_state st;
  nanoseconds last{};
  for (int i = 0; i < 1'000'000; ++i) {
    last = e.next(st, rng);
    ASSERT_GE(last.count(), 0) << "i=" << i;
  }
  EXPECT_EQ(last, nanoseconds::max());
}

TEST(ScheduleOverflow, TwoToTheNForAMillionAttemptsNeverWraps) {
  const backoff::exponential e{.initial = 1s, .multiplier = 2.0, .max_delay = 64s};
  backoff::fast_rng rng;
  schedule_state st;
  for (int i = 0; i < 1'000'000; ++i) {
    const auto d = e.next(st, rng);
    ASSERT_GE(d, 1s);
    ASSERT_LE(d, 64s);
  }
  EXPECT_EQ(st.retry, 1'000'000u);
}

TEST(ScheduleOverflow, LinearAndDecorrelatedNearTheMaximum) {
  const backoff::linear l{.initial = nanoseconds::max() / 2, .increment = nanoseconds::max() / 2,
                          .max_delay = nanoseconds::max()};
  for (auto d : first(l, 100)) EXPECT_GE(d.count(), 0);
  const backoff::decorrelated dc{.base = nanoseconds::max() / 4, .max_delay = nanoseconds::max()};
  for (auto d : first(dc, 100)) {
    EXPECT_GE(d, nanoseconds::max() / 4);
  }
}

TEST(ScheduleValidation, BadValuesNameTheFieldAndValue) {
  EXPECT_EQ(invalid_message([] { [[maybe_unused]] backoff::schedule s = backoff::exponential{.multiplier = 0.5}; }),
            "backoff::exponential: multiplier must be >= 1 and finite (got 0.5)");
  EXPECT_EQ(invalid_message([] { [[maybe_unused]] backoff::schedule s = backoff::exponential{.initial = 0s}; }),
            "backoff::exponential: initial must be > 0 (got 0s)");
  EXPECT_EQ(invalid_message([] { [[maybe_unused]] backoff::schedule s = backoff::exponential{.initial = 2s, .max_delay = 1s}; }),
            "backoff::exponential: max_delay must be >= initial (got 1s)");
  EXPECT_EQ(invalid_message([] { [[maybe_unused]] backoff::schedule s = backoff::constant{.delay = -1ms}; }),
            "backoff::constant: delay must be >= 0 (got -1ms)");
  EXPECT_EQ(invalid_message([] { [[maybe_unused]] backoff::schedule s = backoff::linear{.increment = -1s}; }),
            "backoff::linear: increment must be >= 0 (got -1s)");
  EXPECT_EQ(invalid_message([] { [[maybe_unused]] backoff::schedule s = backoff::decorrelated{.base = -5ms}; }),
            "backoff::decorrelated: base must be > 0 (got -5ms)");
  EXPECT_THROW((backoff::schedule{backoff::exponential{.multiplier = std::numeric_limits<double>::infinity()}}),
               std::invalid_argument);
  EXPECT_THROW((backoff::schedule{backoff::exponential{.multiplier = std::nan("")}}), std::invalid_argument);
}

TEST(Listed, SpellsOutTheWaitsAndRepeatsTheLast) {
  const backoff::schedule s = backoff::listed{.delays = {1s, 5s, 30s}};
  backoff::schedule_state st;
  backoff::fast_rng rng{1};
  std::vector<std::chrono::nanoseconds> got;
  for (int i = 0; i < 5; ++i) got.push_back(s.next(st, rng));
  EXPECT_EQ(got, (std::vector<std::chrono::nanoseconds>{1s, 5s, 30s, 30s, 30s}));
  EXPECT_EQ(s.cap(), 30s);
  EXPECT_EQ(s.name(), "listed");
  EXPECT_THROW(backoff::schedule(backoff::listed{.delays = {}}), std::invalid_argument);
  EXPECT_THROW(backoff::schedule(backoff::listed{.delays = {1s, -1s}}), std::invalid_argument);
  // Far past the end, still the last one (the retry counter saturates, never wraps).
  st.retry = std::numeric_limits<std::uint32_t>::max();
  EXPECT_EQ(s.next(st, rng), 30s);
}
