// SPDX-License-Identifier: BSL-1.0
#include "backoff/jitter.hpp"

#include <gtest/gtest.h>

#include <chrono>

#include "backoff/policy.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

constexpr std::size_t kSamples = 200'000;

std::vector<double> draw(const backoff::jitter& j, nanoseconds d, nanoseconds cap, std::uint64_t seed) {
  backoff::fast_rng rng{seed};
  std::vector<double> out(kSamples);
  for (auto& x : out) x = static_cast<double>(j.apply(d, cap, rng).count());
  return out;
}

double uniform_cdf(double x, double lo, double hi) { return x <= lo ? 0.0 : x >= hi ? 1.0 : (x - lo) / (hi - lo); }

}  // namespace

TEST(JitterKS, FullIsUniformFromZeroToD) {
  const auto s = draw(backoff::jitter::full(), 4s, 64s, 1);
  const double d = backoff_test::ks_statistic(s, [](double x) { return uniform_cdf(x, 0, 4e9); });
  EXPECT_LT(d, backoff_test::ks_critical_001(s.size()));
}

TEST(JitterKS, EqualIsUniformFromHalfToD) {
  const auto s = draw(backoff::jitter::equal(), 4s, 64s, 2);
  const double d = backoff_test::ks_statistic(s, [](double x) { return uniform_cdf(x, 2e9, 4e9); });
  EXPECT_LT(d, backoff_test::ks_critical_001(s.size()));
}

TEST(JitterKS, ProportionalIsUniformAroundD) {
  const auto s = draw(backoff::jitter::proportional(0.2), 10s, 64s, 3);
  const double d = backoff_test::ks_statistic(s, [](double x) { return uniform_cdf(x, 8e9, 12e9); });
  EXPECT_LT(d, backoff_test::ks_critical_001(s.size()));
}

TEST(JitterKS, AdditiveIsUniformAboveD) {
  const auto s = draw(backoff::jitter::additive(1000ms), 2s, 64s, 4);
  const double d = backoff_test::ks_statistic(s, [](double x) { return uniform_cdf(x, 2e9, 3e9); });
  EXPECT_LT(d, backoff_test::ks_critical_001(s.size()));
}

TEST(JitterKS, DecorrelatedFirstDrawIsUniformFromBaseToThreeBase) {
  const backoff::decorrelated s{.base = 100ms, .max_delay = 10s};
  backoff::fast_rng rng{5};
  std::vector<double> samples(kSamples);
  for (auto& x : samples) {
    backoff::schedule_state st;
    x = static_cast<double>(s.next(st, rng).count());
  }
  const double d = backoff_test::ks_statistic(samples, [](double x) { return uniform_cdf(x, 1e8, 3e8); });
  EXPECT_LT(d, backoff_test::ks_critical_001(samples.size()));
}

TEST(JitterKS, TheTestCanFail) {
  // A shifted distribution must be rejected, or the tests above prove nothing.
  const auto s = draw(backoff::jitter::full(), 4s, 64s, 6);
  const double d = backoff_test::ks_statistic(s, [](double x) { return uniform_cdf(x, 0, 4.1e9); });
  EXPECT_GT(d, backoff_test::ks_critical_001(s.size()));
}

TEST(Jitter, NeverExceedsTheCap) {
  backoff::fast_rng rng{11};
  const backoff::jitter kinds[] = {backoff::jitter::none(), backoff::jitter::full(), backoff::jitter::equal(),
                                   backoff::jitter::proportional(1.0), backoff::jitter::additive(10s)};
  for (const auto& j : kinds) {
    for (int i = 0; i < 20000; ++i) {
      const nanoseconds cap = backoff::uniform_duration(rng, 0ns, 100s);
      const nanoseconds d = backoff::uniform_duration(rng, 0ns, 200s);
      const auto out = j.apply(d, cap, rng);
      ASSERT_GE(out.count(), 0);
      ASSERT_LE(out, cap) << backoff::to_string(j.type);
    }
  }
}

TEST(Jitter, SaturatesNearTheMaximum) {
  backoff::fast_rng rng{12};
  const auto big = nanoseconds::max();
  EXPECT_EQ(backoff::jitter::additive(big).apply(big, big, rng), big);
  EXPECT_LE(backoff::jitter::proportional(1.0).apply(big, big, rng), big);
  EXPECT_GE(backoff::jitter::proportional(1.0).apply(big, big, rng).count(), 0);
}

TEST(Jitter, ExactUnderSeed) {
  backoff::fast_rng a{21}, b{21};
  for (int i = 0; i < 100; ++i) {
    const nanoseconds d = std::chrono::milliseconds{100 * (i + 1)};
    EXPECT_EQ(backoff::jitter::full().apply(d, 64s, a), backoff::uniform_duration(b, 0ns, d));
    EXPECT_EQ(backoff::jitter::equal().apply(d, 64s, a), d / 2 + backoff::uniform_duration(b, 0ns, d - d / 2));
    EXPECT_EQ(backoff::jitter::additive(1s).apply(d, 64s, a), d + backoff::uniform_duration(b, 0ns, 1s));
  }
}

TEST(Jitter, BadFractionOrAdditiveNamesFieldAndValue) {
  try {
    (void)backoff::jitter::proportional(1.5);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "backoff::jitter: fraction must be in [0, 1] (got 1.5)");
  }
  EXPECT_THROW((void)backoff::jitter::proportional(-0.1), std::invalid_argument);
  EXPECT_THROW((void)backoff::jitter::additive(-1ms), std::invalid_argument);
  // The limits themselves are valid: no added jitter at all, and all of the delay.
  backoff::fast_rng zero_rng;
  EXPECT_EQ(backoff::jitter::additive(0ms).apply(5s, 64s, zero_rng), 5s);
  // Fields left out are the limits too: an additive jitter written as an
  // aggregate without its bound adds nothing, to the nanosecond.
  const backoff::jitter bare{.type = backoff::jitter::kind::additive};
  EXPECT_EQ(bare.max_added, 0ns);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(bare.apply(5s, 64s, zero_rng), 5s);
  EXPECT_EQ(backoff::jitter::proportional(0.0).apply(5s, 64s, zero_rng), 5s);
  const backoff::policy p{.jitter = {backoff::jitter::kind::proportional, 2.0}};
  backoff::fast_rng rng;
  EXPECT_THROW((void)p.preview(3, rng), std::invalid_argument);
}
