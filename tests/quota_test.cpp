// SPDX-License-Identifier: BSL-1.0
// Pacing from announced quotas (backoff/quota.hpp), on virtual time: the
// pacer's rules one by one, then many concurrent clients against a simulated
// quota'd server in each header dialect.
#include "backoff/quota.hpp"

#include <gtest/gtest.h>

#include <queue>
#include <string>
#include <vector>

#include "backoff/http/ratelimit.hpp"

using namespace std::chrono_literals;
using backoff::quota_notice;
using backoff::quota_pacer;
using backoff::time_point;

namespace {

const time_point t0{std::chrono::hours{1}};

quota_notice left(std::uint64_t remaining, backoff::duration reset, std::optional<std::uint64_t> limit = {}) {
  quota_notice n;
  n.remaining = remaining;
  n.reset = reset;
  n.limit = limit;
  return n;
}

// Reserves for `key` at `now`; returns when the request may go.
time_point go(quota_pacer& p, const char* key, time_point now, quota_pacer::reservation* r = nullptr) {
  time_point at;
  const auto got = p.reserve(key, now, at);
  if (r) *r = got;
  return at;
}

}  // namespace

TEST(QuotaPacer, NothingIsHeldBeforeTheFirstNotice) {
  quota_pacer p;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(go(p, "a", t0), time_point{});
  EXPECT_FALSE(p.snapshot("a", t0).paced);
  EXPECT_EQ(p.snapshot("a", t0).in_flight, 100u);
}

TEST(QuotaPacer, ASpentWindowHoldsUntilTheResetThenOneQuotaPerWindow) {
  quota_pacer p;
  quota_pacer::reservation r;
  EXPECT_EQ(go(p, "a", t0, &r), time_point{});
  const quota_notice n = left(2, 10s, 3);
  p.answered("a", &r, t0, &n);
  EXPECT_EQ(go(p, "a", t0), time_point{});
  EXPECT_EQ(go(p, "a", t0), time_point{});
  // Spent: the next three (the limit) wait for the reset, the three after one window more.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(go(p, "a", t0 + 1s), t0 + 10s) << i;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(go(p, "a", t0 + 1s), t0 + 20s) << i;
  EXPECT_EQ(go(p, "a", t0 + 1s), t0 + 30s);
  EXPECT_EQ(p.snapshot("a", t0 + 1s).held, 7u);
}

TEST(QuotaPacer, RequestsInFlightCountSoTheLastTokensAreNotOverrun) {
  quota_pacer p;
  quota_pacer::reservation r;
  go(p, "a", t0, &r);
  const quota_notice n = left(3, 5s);
  p.answered("a", &r, t0, &n);
  // Three may go; none has been answered yet, and a fourth must wait.
  EXPECT_EQ(go(p, "a", t0), time_point{});
  EXPECT_EQ(go(p, "a", t0), time_point{});
  EXPECT_EQ(go(p, "a", t0), time_point{});
  EXPECT_EQ(go(p, "a", t0), t0 + 5s);
  EXPECT_EQ(p.snapshot("a", t0).in_flight, 3u);
}

// When what the server counts is all ours, the answers still in flight do not
// hold anything back: a lone client uses its whole quota. When it counts more
// than we sent, someone else spends it too, and requests in flight count.
TEST(QuotaPacer, ALoneClientUsesItsWholeQuotaAndASharedOneLeavesRoomForWhatIsInFlight) {
  quota_pacer alone;
  std::vector<quota_pacer::reservation> r(8);
  for (auto& x : r) EXPECT_EQ(go(alone, "a", t0, &x), time_point{});
  const quota_notice first = left(9, 5s, 10);  // 1 used: ours; 7 more of ours in flight
  alone.answered("a", &r[0], t0, &first);
  EXPECT_EQ(go(alone, "a", t0), time_point{});  // 9 sent of 10
  EXPECT_EQ(go(alone, "a", t0), time_point{});  // 10 sent of 10
  EXPECT_EQ(go(alone, "a", t0), t0 + 5s);

  // Answers out of order: c (processed last) comes back first; a and b were
  // processed before it, so c's 7 counts them, and 7 more may go, not 5.
  quota_pacer reordered;
  std::vector<quota_pacer::reservation> abc(3);
  for (auto& x : abc) go(reordered, "a", t0, &x);
  const quota_notice after_c = left(7, 5s, 10);
  reordered.answered("a", &abc[2], t0, &after_c);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(go(reordered, "a", t0), time_point{}) << i;
  EXPECT_EQ(go(reordered, "a", t0), t0 + 5s);

  quota_pacer shared;
  for (auto& x : r) EXPECT_EQ(go(shared, "a", t0, &x), time_point{});
  const quota_notice busy = left(9, 5s, 20);  // 11 used: more than the 8 we sent
  shared.answered("a", &r[0], t0, &busy);
  EXPECT_EQ(go(shared, "a", t0), time_point{});  // 9 left, 7 in flight: 2 more
  EXPECT_EQ(go(shared, "a", t0), time_point{});
  EXPECT_EQ(go(shared, "a", t0), t0 + 5s);
}

// Four processes on one quota of 40: each sends 10 a window and holds 10
// places in each later one.
TEST(QuotaPacer, PartiesShareEachWindowEqually) {
  quota_pacer p;
  p.set_parties("a", 4, t0);
  quota_pacer::reservation r;
  go(p, "a", t0, &r);
  const quota_notice n = left(39, 2s, 40);
  p.answered("a", &r, t0, &n);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(go(p, "a", t0), time_point{}) << i;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(go(p, "a", t0), t0 + 2s) << i;
  EXPECT_EQ(go(p, "a", t0), t0 + 4s);
  EXPECT_EQ(p.snapshot("a", t0).parties, 4u);
  p.set_parties("b", 0, t0);  // 0 is one
  EXPECT_EQ(p.snapshot("b", t0).parties, 1u);
}

// Two of four processes leave mid-window: they spent their share of it (and
// perhaps of the next, if their clock rolled over first), so the others'
// shares grow from the window after the next, not at once.
TEST(QuotaPacer, FewerPartiesGrowTheShareTwoWindowsLater) {
  quota_pacer p;
  p.set_parties("a", 4, t0);
  quota_pacer::reservation r;
  go(p, "a", t0, &r);
  const quota_notice n = left(30, 2s, 40);  // the others spent 9
  p.answered("a", &r, t0, &n);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(go(p, "a", t0), time_point{}) << i;
  p.set_parties("a", 2, t0 + 100ms);
  EXPECT_EQ(go(p, "a", t0 + 100ms), t0 + 2s);  // still a share of 10 in this window
  EXPECT_EQ(p.snapshot("a", t0 + 2s).parties, 4u);  // and the next
  EXPECT_EQ(p.snapshot("a", t0 + 4s).parties, 2u);
  p.set_parties("a", 3, t0 + 4s);  // more parties: at once
  EXPECT_EQ(p.snapshot("a", t0 + 4s).parties, 3u);
}

// A process that joins mid-window, told by the fleet that 8 of 40 are left and
// that 4 processes share them, takes 2 of the 8, not all of them.
TEST(QuotaPacer, AJoinerTakesItsShareOfWhatIsLeft) {
  quota_pacer p;
  p.set_parties("a", 4, t0);
  quota_notice fleet = left(8, 2s, 40);
  p.learn("a", fleet, t0);
  EXPECT_EQ(go(p, "a", t0), time_point{});
  EXPECT_EQ(go(p, "a", t0), time_point{});
  EXPECT_EQ(go(p, "a", t0), t0 + 2s);
  EXPECT_EQ(p.snapshot("a", t0).in_flight, 2u);  // a fleet's notice is no answer of ours
}

// Without an announced window, the longest reset seen is the window, rounded
// up to whole seconds: a reset seen 10 ms into a 2 s window says 1.99 s.
TEST(QuotaPacer, AWindowGuessedFromResetsIsWholeSeconds) {
  quota_pacer p;
  quota_pacer::reservation r;
  go(p, "a", t0, &r);
  quota_notice n = left(0, 1990ms, 1);
  p.answered("a", &r, t0, &n);
  EXPECT_EQ(go(p, "a", t0), t0 + 1990ms);
  EXPECT_EQ(go(p, "a", t0), t0 + 1990ms + 2s);
}

TEST(QuotaPacer, AnAnswerWithoutANoticeStillUsesOneOfTheQuota) {
  quota_pacer p;
  quota_pacer::reservation r1, r2;
  go(p, "a", t0, &r1);
  const quota_notice n = left(2, 5s);
  p.answered("a", &r1, t0, &n);
  go(p, "a", t0, &r2);
  p.answered("a", &r2, t0, nullptr);  // answered, no headers this time
  EXPECT_EQ(p.snapshot("a", t0).remaining, 1u);
  EXPECT_EQ(go(p, "a", t0), time_point{});
  EXPECT_EQ(go(p, "a", t0), t0 + 5s);
}

TEST(QuotaPacer, WithinAWindowTheLeastRemainingAndTheEarliestResetWin) {
  quota_pacer p;
  quota_pacer::reservation a, b, c;
  go(p, "a", t0, &a);
  go(p, "a", t0, &b);
  go(p, "a", t0, &c);
  // Answers come back out of order: the later one processed says less.
  const quota_notice first = left(5, 8s), later = left(9, 9s), sooner = left(7, 7s);
  p.answered("a", &a, t0, &first);
  p.answered("a", &b, t0 + 100ms, &later);  // processed before a: more left and a later reset
  EXPECT_EQ(p.snapshot("a", t0 + 100ms).remaining, 5u);   // a's 5 counted b already
  EXPECT_EQ(p.snapshot("a", t0 + 100ms).limit, 10u);      // but b says the quota is at least 10
  EXPECT_EQ(p.snapshot("a", t0 + 100ms).reset, t0 + 8s);
  p.answered("a", &c, t0 + 200ms, &sooner);
  EXPECT_EQ(p.snapshot("a", t0 + 200ms).reset, t0 + 200ms + 7s);
}

TEST(QuotaPacer, AnAnswerToARequestOfAnEarlierWindowIsNotBelieved) {
  quota_pacer p;
  quota_pacer::reservation r0, late;
  go(p, "a", t0, &r0);
  go(p, "a", t0, &late);
  const quota_notice n = left(10, 2s, 10);
  p.answered("a", &r0, t0, &n);
  // The window rolls over; then the late answer from the old window says 0 left, 1 s.
  const quota_notice stale = left(0, 1s);
  p.answered("a", &late, t0 + 2100ms, &stale);
  const auto s = p.snapshot("a", t0 + 2100ms);
  EXPECT_EQ(s.window_number, 1u);
  EXPECT_EQ(s.remaining, 10u);  // a full quota: the late answer's 0 was of the last window
  EXPECT_EQ(s.reset, t0 + 4s);
}

TEST(QuotaPacer, HeldRequestsAreInFlightWhenTheirWindowBegins) {
  quota_pacer p;
  quota_pacer::reservation r;
  go(p, "a", t0, &r);
  const quota_notice n = left(0, 2s, 4);
  p.answered("a", &r, t0, &n);
  for (int i = 0; i < 6; ++i) go(p, "a", t0);  // 4 at t0+2s, 2 at t0+4s
  auto s = p.snapshot("a", t0 + 2s);
  EXPECT_EQ(s.window_number, 1u);
  EXPECT_EQ(s.in_flight, 4u);
  EXPECT_EQ(s.held, 2u);
  EXPECT_EQ(go(p, "a", t0 + 2s), t0 + 4s);  // the next window has two places left: 4 − 2 held
  EXPECT_EQ(go(p, "a", t0 + 2s), t0 + 4s);
  EXPECT_EQ(go(p, "a", t0 + 2s), t0 + 6s);
}

TEST(QuotaPacer, ARefusalEmptiesTheWindowUntilItsRetryAfter) {
  quota_pacer p;
  quota_pacer::reservation r;
  go(p, "a", t0, &r);
  const auto n = backoff::http::quota_notice_of(429, {}, std::chrono::system_clock::now(), backoff::duration{3s});
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->exhausted);
  p.answered("a", &r, t0, &*n);
  EXPECT_EQ(go(p, "a", t0), t0 + 3s);
  // A 200 without quota headers is no notice; a 429 always is.
  EXPECT_FALSE(backoff::http::quota_notice_of(200, {}, std::chrono::system_clock::now()));
}

TEST(QuotaPacer, WithoutAResetNothingIsHeld) {
  quota_pacer p;
  quota_pacer::reservation r;
  go(p, "a", t0, &r);
  quota_notice n;
  n.remaining = 0;
  p.answered("a", &r, t0, &n);
  EXPECT_TRUE(p.snapshot("a", t0).paced);
  EXPECT_EQ(go(p, "a", t0), time_point{});
}

TEST(QuotaPacer, CancelGivesBackAHeldPlaceAndAnInFlightOne) {
  quota_pacer p;
  quota_pacer::reservation r, now1, held1, held2;
  go(p, "a", t0, &r);
  const quota_notice n = left(1, 2s, 2);
  p.answered("a", &r, t0, &n);
  EXPECT_EQ(go(p, "a", t0, &now1), time_point{});
  EXPECT_EQ(go(p, "a", t0, &held1), t0 + 2s);
  EXPECT_EQ(go(p, "a", t0), t0 + 2s);
  EXPECT_EQ(go(p, "a", t0, &held2), t0 + 4s);
  p.cancel("a", held1, t0);
  EXPECT_EQ(go(p, "a", t0), t0 + 2s);  // its place is free again
  p.cancel("a", now1, t0);
  EXPECT_EQ(go(p, "a", t0), time_point{});
}

TEST(QuotaPacer, IdleWindowsAreSkippedAtOnce) {
  quota_pacer p;
  quota_pacer::reservation r;
  go(p, "a", t0, &r);
  const quota_notice n = left(0, 1s, 5);
  p.answered("a", &r, t0, &n);
  const auto s = p.snapshot("a", t0 + 1h + 500ms);  // 3600 windows later
  EXPECT_EQ(s.remaining, 5u);
  EXPECT_EQ(s.reset, t0 + 1h + 1s);
  EXPECT_EQ(s.window_number, 3600u);
}

TEST(QuotaPacer, KeysAreIndependentAndBounded) {
  quota_pacer p({.entry_ttl = 1s, .max_entries = 8});
  quota_pacer::reservation r;
  go(p, "a", t0, &r);
  const quota_notice n = left(0, 10s);
  p.answered("a", &r, t0, &n);
  EXPECT_EQ(go(p, "b", t0), time_point{});
  for (int i = 0; i < 100; ++i) go(p, std::to_string(i).c_str(), t0 + std::chrono::seconds{i});
  EXPECT_LE(p.size(), 8u);
  EXPECT_THROW(quota_pacer({.max_entries = 0}), std::invalid_argument);
}

// A key idle past entry_ttl whose window has ended is forgotten in the next
// sweep (every 64th new key); one whose reset is still ahead is kept.
TEST(QuotaPacer, IdleKeysWhoseWindowEndedAreForgotten) {
  quota_pacer p({.entry_ttl = 1s, .max_entries = 1000});
  for (int i = 0; i < 10; ++i) {
    quota_pacer::reservation r;
    const std::string key = "old" + std::to_string(i);
    go(p, key.c_str(), t0, &r);
    const quota_notice n = left(5, 1s, 10);
    p.answered(key.c_str(), &r, t0, &n);
  }
  {
    quota_pacer::reservation r;
    go(p, "ahead", t0, &r);
    const quota_notice n = left(5, 50min, 10);  // its window ends after the sweep
    p.answered("ahead", &r, t0, &n);
  }
  EXPECT_EQ(p.size(), 11u);
  // Eleven keys so far; the 64th new key sweeps (before it is added).
  for (int i = 0; i < 52; ++i) go(p, ("new" + std::to_string(i)).c_str(), t0 + 30min);
  EXPECT_EQ(p.size(), 63u);
  go(p, "new52", t0 + 30min);
  EXPECT_EQ(p.size(), 54u);  // the ten old ones are gone; "ahead" stays
  EXPECT_EQ(p.snapshot("ahead", t0 + 30min).limit, 10u);
}

// The gate of one request: acquire reserves, release gives back, answered
// reports the oldest reservation's answer.
TEST(QuotaPacer, TheGateReservesAndReportsInOrder) {
  quota_pacer p;
  auto g = p.for_key("h");
  const backoff::gate_request rq{false, t0, false};
  EXPECT_EQ(g.acquire(rq).not_before, time_point{});
  g.answered(t0, left(0, 4s, 2));
  auto other = p.for_key("h");
  EXPECT_EQ(other.acquire(rq).not_before, t0 + 4s);
  other.release(rq);
  EXPECT_EQ(p.snapshot("h", t0).held, 0u);
  EXPECT_EQ(p.snapshot("h", t0).in_flight, 0u);
}

// ---------------------------------------------------------------------------
// Eight clients, 120 requests, against a server that allows 40 per fixed
// window of 2 s and says so in each dialect: paced, none is refused and the
// work ends in the third window (the quota's minimum: 4 s).

namespace {

struct sim_server {
  std::string dialect;
  std::size_t limit = 40;
  backoff::duration window = 2s;
  long long number = -1;
  std::size_t used = 0, refused = 0;
  std::chrono::system_clock::time_point wall0{std::chrono::seconds{1'800'000'000}};

  // Answers a request processed at `now`: status and headers.
  std::pair<long, std::vector<backoff::http::header>> answer(time_point now) {
    const auto since = now - t0;
    const long long n = since / window;
    if (n != number) number = n, used = 0;
    const bool refuse = used >= limit;
    if (!refuse) ++used;
    const auto left = window * (n + 1) - since;
    const auto secs = std::chrono::ceil<std::chrono::seconds>(left).count();
    const std::string r = std::to_string(limit - used), l = std::to_string(limit), t = std::to_string(secs);
    std::vector<backoff::http::header> h;
    if (dialect == "ietf") {
      h = {{"RateLimit", "\"q\";r=" + r + ";t=" + t}, {"RateLimit-Policy", "\"q\";q=" + l + ";w=2"}};
    } else if (dialect == "ratelimit") {
      h = {{"RateLimit-Limit", l}, {"RateLimit-Remaining", r}, {"RateLimit-Reset", t}};
    } else if (dialect == "x-ratelimit") {
      const auto at = wall0 + std::chrono::duration_cast<std::chrono::system_clock::duration>(since + left);
      h = {{"X-RateLimit-Limit", l},
           {"X-RateLimit-Remaining", r},
           {"X-RateLimit-Reset", std::to_string(std::chrono::ceil<std::chrono::seconds>(at.time_since_epoch()).count())}};
    } else if (dialect == "openai") {
      h = {{"x-ratelimit-limit-requests", l},
           {"x-ratelimit-remaining-requests", r},
           {"x-ratelimit-reset-requests", std::to_string(std::chrono::ceil<std::chrono::milliseconds>(left).count()) + "ms"}};
    }
    if (refuse) {
      ++refused;
      h.emplace_back("Retry-After", t);
    }
    return {refuse ? 429 : 200, h};
  }
};

struct sim_result {
  std::size_t refused = 0;
  backoff::duration took{};
};

// `clients` loops, each: reserve, wait, send (processed after `latency`,
// answered after 2 × latency), until `requests` succeeded in all.
sim_result simulate(const std::string& dialect, bool paced, int clients = 8, int requests = 120,
                    backoff::duration latency = 15ms) {
  sim_server server{dialect};
  quota_pacer pacer;
  struct event {
    time_point at;
    int client;
    int kind;  // 0: ready to ask, 1: processed by the server, 2: answered
    bool operator>(const event& o) const { return at > o.at || (at == o.at && client > o.client); }
  };
  std::priority_queue<event, std::vector<event>, std::greater<>> events;
  std::vector<std::optional<quota_pacer::key_gate>> gates(static_cast<std::size_t>(clients));
  std::vector<std::pair<long, std::vector<backoff::http::header>>> answers(static_cast<std::size_t>(clients));
  int started = 0, done = 0;
  time_point end = t0;
  for (int c = 0; c < clients; ++c) events.push({t0, c, 0});
  while (!events.empty() && done < requests) {
    const event e = events.top();
    events.pop();
    const auto i = static_cast<std::size_t>(e.client);
    if (e.kind == 0) {
      if (started >= requests) continue;
      ++started;
      gates[i].emplace(pacer.for_key("h"));
      const time_point at = paced ? gates[i]->acquire({false, e.at, false}).not_before : time_point{};
      events.push({std::max(at, e.at) + latency, e.client, 1});
    } else if (e.kind == 1) {
      answers[i] = server.answer(e.at);
      events.push({e.at + latency, e.client, 2});
    } else {
      const auto& [status, headers] = answers[i];
      const auto wall = server.wall0 + std::chrono::duration_cast<std::chrono::system_clock::duration>(e.at - t0);
      const auto n = backoff::http::quota_notice_of(status, headers, wall, backoff::duration{1s});
      if (paced) gates[i]->answered(e.at, n);
      if (status == 200) {
        ++done;
        end = e.at;
        events.push({e.at, e.client, 0});
      } else {
        --started;  // retried: after the pacer says, or (unpaced) after the Retry-After
        const auto retry_at = paced ? e.at : e.at + std::chrono::seconds{std::stoll(headers.back().second)};
        events.push({retry_at, e.client, 0});
      }
    }
  }
  return {server.refused, end - t0};
}

}  // namespace

class QuotaDialects : public ::testing::TestWithParam<const char*> {};

TEST_P(QuotaDialects, PacedClientsMeetNo429AndFinishInTheQuotasMinimum) {
  const auto r = simulate(GetParam(), true);
  EXPECT_EQ(r.refused, 0u);
  EXPECT_GE(r.took, 4s);          // 120 at 40 per 2 s: the third window
  EXPECT_LE(r.took, 4s + 300ms);  // and early in it
  // Without pacing the same clients run into the wall every window.
  EXPECT_GE(simulate(GetParam(), false).refused, 8u);
}

INSTANTIATE_TEST_SUITE_P(All, QuotaDialects, ::testing::Values("ietf", "ratelimit", "x-ratelimit", "openai"));

TEST(QuotaPacer, WithoutHeadersPacingChangesNothing) {
  const auto r = simulate("none", true);
  EXPECT_GT(r.refused, 0u);  // only the 429s' Retry-After can help
}
