// SPDX-License-Identifier: BSL-1.0
#include "backoff/host_backoff.hpp"

#include <gtest/gtest.h>

#include "backoff/retry.hpp"

using namespace std::chrono_literals;
using backoff::host_backoff;

namespace {
const backoff::time_point t0{std::chrono::hours{1}};
}

TEST(HostBackoff, FailuresPushTheReleaseTime) {
  host_backoff h;  // 1 s, ×2, up to 60 s, no jitter
  EXPECT_EQ(h.release_time("a", t0), backoff::time_point{});
  h.on_failure("a", t0);
  EXPECT_EQ(h.release_time("a", t0), t0 + 1s);
  h.on_failure("a", t0);
  EXPECT_EQ(h.release_time("a", t0), t0 + 2s);
  h.on_failure("a", t0);
  EXPECT_EQ(h.release_time("a", t0), t0 + 4s);
  EXPECT_EQ(h.failures("a"), 3u);
  EXPECT_EQ(h.release_time("b", t0), backoff::time_point{});  // keys are independent
}

// The default schedule doubles from 1 s and stops at one minute (as documented
// in host_backoff::options); found by a generated mutant (60 s → 61 s).
TEST(HostBackoff, TheDefaultScheduleStopsAtOneMinute) {
  host_backoff h;
  for (int i = 0; i < 20; ++i) h.on_failure("a", t0);
  EXPECT_EQ(h.release_time("a", t0), t0 + 60s);
}

TEST(HostBackoff, RetryAfterSetsAFloorAndNothingLowersTheHorizon) {
  host_backoff h;
  h.on_failure("a", t0, 30s);
  EXPECT_EQ(h.release_time("a", t0), t0 + 30s);
  h.on_failure("a", t0 + 1s);  // 2 s backoff would end earlier: the horizon stays
  EXPECT_EQ(h.release_time("a", t0), t0 + 30s);
  h.on_failure("a", t0 + 1s, 5s);  // a shorter hint does not lower it either
  EXPECT_EQ(h.release_time("a", t0), t0 + 30s);
  h.on_failure("a", t0, 100h);  // clamped to max_hint (1 h)
  EXPECT_EQ(h.release_time("a", t0), t0 + 1h);
}

TEST(HostBackoff, SuccessLowersTheFailureCountByOne) {
  host_backoff h;
  for (int i = 0; i < 5; ++i) h.on_failure("a", t0);
  h.on_success("a", t0 + 1min);
  EXPECT_EQ(h.failures("a"), 4u);
  h.on_failure("a", t0 + 1min);  // back to 5 failures: 16 s
  EXPECT_EQ(h.release_time("a", t0 + 1min), t0 + 1min + 16s);
}

TEST(HostBackoff, IdleEntriesExpireAndSizeIsBounded) {
  host_backoff h({.entry_ttl = 1min, .max_entries = 160});
  for (int i = 0; i < 5000; ++i) h.on_failure("host-" + std::to_string(i), t0);
  EXPECT_LE(h.size(), 160u);
  // Long after, the idle ones go.
  for (int i = 0; i < 200; ++i) (void)h.release_time("probe-" + std::to_string(i), t0 + 1h);
  EXPECT_LT(h.size(), 160u);
}

TEST(HostBackoff, TheGateMakesEveryLoopWaitForTheHost) {
  host_backoff h;
  backoff::manual_clock clock;
  h.on_failure("api", clock.now(), 20s);  // another request saw Retry-After: 20
  auto gate = h.for_key("api");
  int calls = 0;
  const auto start = clock.now();
  auto r = backoff::try_retry(backoff::policy{}, [&] { return ++calls; },
                              {.gate = &gate, .gate_first_attempt = true, .clock = &clock});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(calls, 1);
  EXPECT_GE(clock.now() - start, 20s);  // waited for the host's release time first
  EXPECT_EQ(h.failures("api"), 0u);     // and the success counted
}

TEST(HostBackoff, SmallMaxEntriesAreAnExactBound) {
  for (std::size_t max : {std::size_t{1}, std::size_t{10}, std::size_t{20}, std::size_t{100}}) {
    backoff::host_backoff hosts({.max_entries = max});
    const backoff::time_point t{std::chrono::hours{1}};
    for (int i = 0; i < 1000; ++i) hosts.on_failure("host-" + std::to_string(i), t);
    EXPECT_LE(hosts.size(), max) << max;
    EXPECT_GE(hosts.size(), 1u) << max;
  }
}

// A full table makes room when a new key comes, never when a key already in it
// is read or held again: reading must not forget the hold it is asked about.
// (Found by `backoff simulate fleet`: with max_entries = 1 every release_time()
// evicted the only key, so a Retry-After held nobody.)
TEST(HostBackoff, AFullTableKeepsTheKeysItIsAskedAbout) {
  for (std::size_t max : {std::size_t{1}, std::size_t{2}, std::size_t{8}}) {
    backoff::host_backoff hosts({.max_entries = max});
    const backoff::time_point t{std::chrono::hours{1}};
    for (std::size_t i = 0; i < max; ++i) hosts.hold("k" + std::to_string(i), t, 10s);
    for (int round = 0; round < 100; ++round)
      for (std::size_t i = 0; i < max; ++i) {
        EXPECT_EQ(hosts.release_time("k" + std::to_string(i), t), t + 10s) << max << " " << i;
        hosts.hold("k" + std::to_string(i), t, 5s);  // a shorter hint: nothing moves, nothing goes
      }
    EXPECT_EQ(hosts.size(), max);
    // A new key evicts the least recently used, and only when it comes.
    hosts.hold("new", t, 20s);
    EXPECT_EQ(hosts.release_time("new", t), t + 20s) << max;
    EXPECT_LE(hosts.size(), max);
  }
}

// With release_spread, requests held by one release time leave spread over a
// fraction of their wait after it — never before it.
TEST(HostBackoff, HeldRequestsLeaveSpreadAfterTheReleaseTime) {
  backoff::host_backoff hosts({.release_spread = 0.5});
  const backoff::time_point t{std::chrono::hours{1}};
  hosts.hold("api", t, 10s);
  auto gate = hosts.for_key("api");
  backoff::duration lo = 1h, hi{0};
  for (int i = 0; i < 2000; ++i) {
    const auto at = gate.acquire({false, t, false}).not_before;
    ASSERT_GE(at, t + 10s);
    ASSERT_LE(at, t + 15s);  // half of the 10 s wait
    lo = std::min(lo, at - t);
    hi = std::max(hi, at - t);
  }
  EXPECT_LT(lo, 10s + 100ms);
  EXPECT_GT(hi, 15s - 100ms);
  // Asked later, a shorter wait: a smaller spread. After the release, none.
  EXPECT_LE(gate.acquire({false, t + 8s, false}).not_before, t + 11s);
  EXPECT_EQ(gate.acquire({false, t + 20s, false}).not_before, t + 10s);
  EXPECT_EQ(hosts.release_time("api", t), t + 10s);  // the release time itself is unchanged
  EXPECT_THROW(backoff::host_backoff({.release_spread = 1.5}), std::invalid_argument);
}

TEST(HostBackoff, SuccessLowersTheCountButNeverTheReleaseTime) {
  backoff::host_backoff hosts;
  const backoff::time_point t{std::chrono::hours{1}};
  hosts.on_failure("h", t);
  hosts.on_failure("h", t);
  const auto release = hosts.release_time("h", t);
  ASSERT_GT(release, t);
  hosts.on_success("h", t);
  EXPECT_EQ(hosts.failures("h"), 1u);
  EXPECT_EQ(hosts.release_time("h", t), release);
}

TEST(HostBackoff, AShorterHoldNeverLowersAndAHugeOneIsClamped) {
  backoff::host_backoff hosts({.max_hint = std::chrono::hours{1}});
  const backoff::time_point t{std::chrono::hours{1}};
  hosts.hold("h", t, std::chrono::minutes{10});
  hosts.hold("h", t, std::chrono::seconds{5});
  EXPECT_EQ(hosts.release_time("h", t), t + std::chrono::minutes{10});
  hosts.hold("h", t, std::chrono::hours{24 * 365});
  EXPECT_EQ(hosts.release_time("h", t), t + std::chrono::hours{1});
}
