// SPDX-License-Identifier: BSL-1.0
#include "backoff/presets.hpp"

#include <gtest/gtest.h>

#include <chrono>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

// min(2^n s + random_number_milliseconds, maximum_backoff), r uniform in [0, 1000] ms.
TEST(Presets, GoogleCloudIsExactlyTheDocumentedFormula) {
  for (auto cap : {64s, 32s}) {
    const auto p = backoff::presets::google_cloud({.maximum_backoff = cap, .max_attempts = 20});
    backoff::fast_rng a{77}, b{77};
    const auto waits = p.preview(19, a);
    for (std::size_t n = 0; n < waits.size(); ++n) {
      // Reproduce the draw order: the schedule draws nothing, the jitter one number.
      const nanoseconds r = backoff::uniform_duration(b, 0ns, 1000ms);
      const nanoseconds two_n = std::chrono::seconds{std::int64_t{1} << std::min<std::size_t>(n, 20)};
      EXPECT_EQ(waits[n], std::min<nanoseconds>(two_n + r, cap)) << "n=" << n;
    }
    EXPECT_EQ(waits.back(), cap);  // stays at the cap, with no jitter left
  }
  EXPECT_EQ(backoff::presets::google_cloud().stop.max_attempts(), 10u);
}

TEST(Presets, GoogleCloudJitterIsWithinOneSecondBeforeTheCap) {
  const auto p = backoff::presets::google_cloud();
  backoff::fast_rng rng{3};
  for (int trial = 0; trial < 2000; ++trial) {
    const auto w = p.preview(5, rng);
    for (std::size_t n = 0; n < w.size(); ++n) {
      const nanoseconds base = std::chrono::seconds{1 << n};
      ASSERT_GE(w[n], base);
      ASSERT_LE(w[n], base + 1s);
    }
  }
}

TEST(Presets, AwsStandard) {
  const auto p = backoff::presets::aws_standard();
  EXPECT_EQ(p.stop.max_attempts(), 3u);
  EXPECT_EQ(p.jitter.type, backoff::jitter::kind::full);
  EXPECT_EQ(p.schedule.cap(), 20s);
  backoff::fast_rng rng{1};
  for (int t = 0; t < 1000; ++t) {
    const auto w = p.preview(8, rng);
    for (std::size_t i = 0; i < w.size(); ++i) ASSERT_LE(w[i], std::min<nanoseconds>(20s, std::chrono::seconds{1 << i}));
  }
}

TEST(Presets, GrpcConnectionBackoff) {
  const auto p = backoff::presets::grpc_connection();
  const auto* e = p.schedule.get_if<backoff::exponential>();
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->initial, 1s);
  EXPECT_DOUBLE_EQ(e->multiplier, 1.6);
  EXPECT_EQ(e->max_delay, 120s);
  EXPECT_DOUBLE_EQ(p.jitter.fraction, 0.2);
  EXPECT_EQ(p.stop.max_attempts(), 0u);  // gRPC reconnects forever
  EXPECT_EQ(backoff::presets::grpc_connection(7).stop.max_attempts(), 7u);
  backoff::fast_rng rng{2};
  const auto w = p.preview(3, rng);
  EXPECT_GE(w[2], 2560ms * 0.8);
  EXPECT_LE(w[2], 2560ms * 1.2);
}

TEST(Presets, CurlRetryDoublesToTenMinutesWithoutJitter) {
  const auto p = backoff::presets::curl_retry(12);
  backoff::fast_rng rng;
  const auto w = p.preview(12, rng);
  const std::vector<nanoseconds> want{1s, 2s, 4s, 8s, 16s, 32s, 64s, 128s, 256s, 512s, 600s, 600s};
  EXPECT_EQ(w, want);
  EXPECT_EQ(p.stop.max_attempts(), 13u);
}
