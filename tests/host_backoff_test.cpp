// SPDX-License-Identifier: BSL-1.0
#include "backoff/host_backoff.hpp"

#include <gtest/gtest.h>

#include "backoff/retry.hpp"

#include <memory>

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
  EXPECT_EQ(h.failures("b"), 0u);                              // a key never seen has none
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

// A key idle past entry_ttl starts over at its next failure, whether or not
// a sweep has dropped it yet; idle keys are freed by the 64th operation on
// their shard.
TEST(HostBackoff, AKeyIdlePastItsTtlStartsOverAndIsFreedWithin64Operations) {
  host_backoff h({.entry_ttl = 1min, .max_entries = 50});  // one shard
  for (int i = 0; i < 5; ++i) h.on_failure("a", t0);  // 16 s
  h.on_failure("b", t0);
  h.on_failure("c", t0);
  h.on_failure("a", t0 + 2min);  // idle for 2 min: one failure, 1 s
  EXPECT_EQ(h.release_time("a", t0 + 2min), t0 + 2min + 1s);
  EXPECT_EQ(h.failures("a"), 1u);
  // Nine operations so far; "b" and "c" are idle but still held.
  for (int i = 9; i < 63; ++i) (void)h.release_time("unknown", t0 + 2min);
  EXPECT_EQ(h.size(), 3u);
  (void)h.release_time("unknown", t0 + 2min);  // the 64th
  EXPECT_EQ(h.size(), 1u);
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

// --- release by probe (options::probe) -------------------------------------------------------

namespace {
host_backoff probing() { return host_backoff({.probe = {.enabled = true}}); }
}  // namespace

// A hint closes the key: before the release everyone is asked to come back at
// it; at the release one request goes alone and the others recheck, a little
// apart, until the probe's outcome is known.
TEST(HostBackoff, AProbeGoesAloneWhenTheReleaseTimeComes) {
  auto h = probing();
  h.hold("api", t0, 2s);
  EXPECT_TRUE(h.closed("api"));
  const auto early = h.admit("api", t0 + 1s, false);
  EXPECT_TRUE(early.allowed);
  EXPECT_TRUE(early.recheck);
  EXPECT_EQ(early.not_before, t0 + 2s);
  const auto probe = h.admit("api", t0 + 2s, true);
  EXPECT_TRUE(probe.allowed);
  EXPECT_FALSE(probe.recheck);
  EXPECT_EQ(probe.not_before, backoff::time_point{});  // at once
  for (int i = 0; i < 20; ++i) {
    const auto other = h.admit("api", t0 + 2s, true);
    EXPECT_TRUE(other.recheck);
    EXPECT_GE(other.not_before, t0 + 2s + 50ms);
    EXPECT_LE(other.not_before, t0 + 2s + 150ms);
  }
}

// The probe fails with a new Retry-After: the key stays closed until then, and
// one new probe goes at the new release; nobody else went in between.
TEST(HostBackoff, AProbeThatMeetsANewHintClosesTheKeyAgain) {
  auto h = probing();
  h.hold("api", t0, 2s);
  ASSERT_FALSE(h.admit("api", t0 + 2s, true).recheck);  // the probe
  h.on_failure("api", t0 + 2100ms, 5s);
  EXPECT_TRUE(h.closed("api"));
  const auto d = h.admit("api", t0 + 2200ms, true);
  EXPECT_TRUE(d.recheck);
  EXPECT_EQ(d.not_before, t0 + 7100ms);
  EXPECT_FALSE(h.admit("api", t0 + 7100ms, true).recheck);  // the next probe
  EXPECT_TRUE(h.admit("api", t0 + 7100ms, true).recheck);
}

// A probe whose outcome never comes (its loop was cancelled) does not close
// the key forever: after probe_timeout another request probes.
TEST(HostBackoff, AProbeWithNoOutcomeLetsAnotherGoAfterItsTimeout) {
  auto h = probing();
  h.hold("api", t0, 1s);
  ASSERT_FALSE(h.admit("api", t0 + 1s, true).recheck);
  EXPECT_TRUE(h.admit("api", t0 + 5999ms, true).recheck);
  EXPECT_FALSE(h.admit("api", t0 + 6s, true).recheck);  // 5 s later
}

namespace {
// 39 requests held while 40 came in 10 s (4 a second) ask again, as the loops
// do, whenever the gate tells them to, on virtual time in 1 ms steps; each
// that goes ends at once as `ok` says. Returns when each went, from the opening.
std::vector<backoff::duration> drain(host_backoff& h, backoff::time_point opened, bool ok) {
  std::vector<backoff::time_point> ask(39, opened);
  std::vector<backoff::duration> went;
  for (auto now = opened; now < opened + 30s && went.size() < ask.size(); now += 1ms) {
    for (auto& t : ask) {
      if (t > now) continue;
      const auto d = h.admit("api", now, true);
      if (d.recheck || d.not_before > now) {
        t = std::max(d.not_before, now + 1ms);
        continue;
      }
      t = backoff::time_point::max();
      went.push_back(now - opened);
      if (ok) h.on_success("api", now);
      else h.on_failure("api", now);
    }
  }
  return went;
}
std::unique_ptr<host_backoff> opened_after_forty(backoff::time_point& opened) {
  auto owned = std::make_unique<host_backoff>(
      host_backoff::options{.schedule = backoff::constant{.delay = backoff::duration{0}}, .probe = {.enabled = true}});
  host_backoff& h = *owned;
  h.hold("api", t0, 10s);
  for (int i = 0; i < 40; ++i) (void)h.admit("api", t0 + i * 250ms, false);  // arrivals while closed
  EXPECT_FALSE(h.admit("api", t0 + 10s, true).recheck);                     // the probe
  opened = t0 + 10s + 50ms;
  h.on_success("api", opened);
  EXPECT_FALSE(h.closed("api"));
  return owned;
}
std::ptrdiff_t within(const std::vector<backoff::duration>& at, backoff::duration from, backoff::duration to) {
  return std::count_if(at.begin(), at.end(), [&](auto t) { return t >= from && t < to; });
}
}  // namespace

// The probe succeeds: the held requests leave by a ramp that starts at a
// quarter of the rate they came at (4 a second), doubles every 100 ms and
// stays at 1.5 times it — never all at once.
TEST(HostBackoff, AfterTheProbeHeldRequestsLeaveBySlowStart) {
  backoff::time_point opened;
  auto h = opened_after_forty(opened);
  const auto at = drain(*h, opened, true);
  ASSERT_EQ(at.size(), 39u);
  EXPECT_LE(within(at, 0ms, 100ms), 1);   // 1 a second: 0.1 place (plus a random phase)
  EXPECT_LE(within(at, 0ms, 300ms), 2);
  EXPECT_GE(within(at, 1s, 2s), 5);       // 1.5 × 4 = 6 a second at the top
  EXPECT_LE(within(at, 1s, 2s), 7);
  EXPECT_GE(at.back(), 5s);               // 39 at 6 a second: about 6.5 s
  EXPECT_LE(at.back(), 8s);
}

// Failures while the ramp runs (the server is back, but not for everyone):
// the pace drops by 30 % and grows slowly (AIMD) instead of doubling on.
TEST(HostBackoff, FailuresSlowTheRampDown) {
  backoff::time_point opened;
  auto good = opened_after_forty(opened);
  auto bad = opened_after_forty(opened);
  const auto fine = drain(*good, opened, true);
  const auto failing = drain(*bad, opened, false);
  EXPECT_LT(within(failing, 0s, 2s), within(fine, 0s, 2s));
  EXPECT_LE(within(failing, 1s, 2s), 2);  // held near a quarter of 4 a second
}

// Once the ramp's pace is ahead of the requests it ends: a request long
// after the opening goes at once; and with requests still coming, but fewer
// than the pace, a whole step at the full rate with nobody waiting ends it too
// (a burst afterwards is not paced).
TEST(HostBackoff, TheRampEndsWhenItIsAheadOfTheRequests) {
  {
    auto h = probing();
    h.hold("api", t0, 2s);
    for (int i = 0; i < 4; ++i) (void)h.admit("api", t0, false);
    ASSERT_FALSE(h.admit("api", t0 + 2s, true).recheck);
    h.on_success("api", t0 + 2s);
    EXPECT_EQ(h.admit("api", t0 + 10s, false).not_before, backoff::time_point{});
    EXPECT_EQ(h.admit("api", t0 + 10s, false).not_before, backoff::time_point{});
  }
  auto h = probing();
  h.hold("api", t0, 2s);
  for (int i = 0; i < 8; ++i) (void)h.admit("api", t0, false);  // 4 a second
  ASSERT_FALSE(h.admit("api", t0 + 2s, true).recheck);
  h.on_success("api", t0 + 2s);
  auto now = t0 + 2s;
  for (int i = 0; i < 10; ++i, now += 300ms) (void)h.admit("api", now, false);  // 3.3 a second, never idle
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(h.admit("api", now, false).recheck) << i;
}

// Fleet-wide probes: may_probe says whether this process may send it (the
// Redis lock); on_open hears this process's probe succeed; open() is how
// another process's success reaches here — unless a newer hint holds the key.
TEST(HostBackoff, TheFleetDecidesWhoProbesAndHearsTheOpening) {
  bool lock_held = false;
  int opened = 0;
  host_backoff h({.probe = {.enabled = true,
                            .may_probe = [&](std::string_view, backoff::time_point) { return lock_held; },
                            .on_open = [&](std::string_view key, backoff::time_point, backoff::time_point release) {
                              EXPECT_EQ(key, "api");
                              EXPECT_EQ(release, t0 + 1s);
                              ++opened;
                            }}});
  h.hold("api", t0, 1s);
  EXPECT_TRUE(h.admit("api", t0 + 1s, true).recheck);  // another process holds the lock
  lock_held = true;
  EXPECT_FALSE(h.admit("api", t0 + 1200ms, true).recheck);
  h.on_success("api", t0 + 1300ms);
  EXPECT_EQ(opened, 1);
  h.on_success("api", t0 + 1400ms);  // already open: said once
  EXPECT_EQ(opened, 1);

  h.hold("b", t0, 1s);
  h.hold("b", t0 + 500ms, 3s);  // a newer hint: until 3.5 s
  h.open("b", t0 + 1s, t0 + 1s);  // an opening of the older release
  EXPECT_TRUE(h.closed("b"));
  h.open("b", t0 + 3500ms, t0 + 3500ms);
  EXPECT_FALSE(h.closed("b"));
}

// Without options::probe nothing changes: everyone goes at the release time.
TEST(HostBackoff, WithoutProbesEveryoneGoesAtTheReleaseTime) {
  host_backoff h;
  h.hold("api", t0, 2s);
  EXPECT_FALSE(h.closed("api"));
  for (int i = 0; i < 3; ++i) {
    const auto d = h.admit("api", t0 + 2s, true);
    EXPECT_FALSE(d.recheck);
    EXPECT_EQ(d.not_before, t0 + 2s);
  }
}

// The sync loop honours a recheck: it waits, asks again (with recheck set),
// and attempts only once allowed; the budget before the host in a chain gives
// back what it took each time the host said "not yet".
TEST(HostBackoff, TheLoopWaitsForTheProbeAndAsksAgain) {
  auto h = probing();
  backoff::manual_clock clock;
  const auto start = clock.now();
  h.hold("api", start, 1s);
  // Another request took the probe at the release and succeeds 350 ms later.
  ASSERT_FALSE(h.admit("api", start + 1s, true).recheck);
  struct watcher final : backoff::gate {
    host_backoff* h;
    backoff::time_point opens;
    int asked = 0, rechecks = 0;
    backoff::gate_decision acquire(const backoff::gate_request& r) noexcept override {
      ++asked;
      if (r.recheck) ++rechecks;
      if (r.now >= opens && h->closed("api")) h->on_success("api", r.now);
      return h->admit("api", r.now, r.recheck);
    }
    void record(const backoff::gate_outcome&) noexcept override {}
  } w;
  w.h = &h;
  w.opens = start + 1350ms;
  // A gate before the host's in the chain, which counts what it grants.
  struct counter final : backoff::gate {
    int held = 0;
    backoff::gate_decision acquire(const backoff::gate_request&) noexcept override {
      ++held;
      return {};
    }
    void record(const backoff::gate_outcome&) noexcept override {}
    void release(const backoff::gate_request&) noexcept override { --held; }
  } before;
  backoff::gate_chain chain{&before, &w};
  int calls = 0;
  backoff::time_point attempted{};
  auto r = backoff::try_retry(backoff::policy{}, [&] {
    ++calls;
    attempted = clock.now();
    return 1;
  }, {.gate = &chain, .gate_first_attempt = true, .clock = &clock});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(calls, 1);
  EXPECT_GE(attempted, start + 1350ms);  // not before the probe succeeded
  EXPECT_LE(attempted, start + 3s);      // and soon after (the ramp's first places)
  EXPECT_GE(w.rechecks, 2);
  EXPECT_EQ(w.asked, w.rechecks + 1);
  EXPECT_EQ(before.held, 1);  // every "not yet" gave its grant back; the attempt kept one
}

namespace {
// Says "not yet, ask again in `every`" until `until`, then allows.
struct not_until final : backoff::gate {
  backoff::time_point until;
  backoff::duration every;
  int asked = 0;
  backoff::gate_decision acquire(const backoff::gate_request& r) noexcept override {
    ++asked;
    if (r.now < until) return backoff::gate_decision::ask_again(r.now + every);
    return {};
  }
  void record(const backoff::gate_outcome&) noexcept override {}
};
}  // namespace

// A retry's recheck is judged by the stop rule again: a gate that keeps saying
// "not yet" past the deadline stops the loop at its deadline, with the last
// error kept, and no attempt is made in between.
TEST(HostBackoff, ARecheckPastTheDeadlineStopsTheLoop) {
  backoff::manual_clock clock;
  not_until g;
  g.until = clock.now() + 1h;
  g.every = 4s;
  int calls = 0;
  const backoff::policy p{.schedule = backoff::constant{1s}, .jitter = backoff::jitter::none(),
                          .stop = backoff::stop::before_elapsed(10s)};
  auto r = backoff::try_retry(p, [&]() -> int {
    ++calls;
    throw std::runtime_error("refused");
  }, {.classify = {.retry_exception = [](const std::exception_ptr&) { return true; }}, .gate = &g, .clock = &clock});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.reason, backoff::stop_reason::deadline);
  EXPECT_EQ(calls, 1);
  EXPECT_GE(g.asked, 2);  // asked after the first failure, then again after each wait
}
