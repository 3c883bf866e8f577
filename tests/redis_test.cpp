// SPDX-License-Identifier: BSL-1.0
// backoff::redis: gates shared through a real redis-server (Debian's), started
// on an ephemeral loopback port by each test. Several fleet objects in one
// process stand for several processes: each has its own connections and threads.
#include "backoff/redis/fleet.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "redis_server.hpp"
#include "wait.hpp"

using namespace std::chrono_literals;
using backoff::redis::fleet;
using backoff::redis::shared_breaker;
using backoff::redis::shared_budget;
using backoff::redis::shared_host_backoff;

using backoff::testing::eventually;

namespace {

backoff::time_point now() { return std::chrono::steady_clock::now(); }

// A timeout generous enough for a loaded machine: these tests check what is
// shared, not how fast (the benchmarks measure that).
backoff::redis::fleet_options opts(const backoff::testing::redis_server& r, const std::string& prefix = "/t") {
  return {.url = r.url(prefix), .timeout = 2000ms, .sync_interval = 20ms};
}

backoff::gate_request retry_at(backoff::time_point t) { return {true, t, false}; }

// What a fleet warns of (fleet_options::on_warning), from its worker's thread.
class warning_log {
 public:
  std::function<void(const std::string&)> sink() {
    return [this](const std::string& w) {
      std::lock_guard lock(m_);
      all_.push_back(w);
    };
  }
  std::vector<std::string> all() const {
    std::lock_guard lock(m_);
    return all_;
  }
  // Waits for the first warning; "" when none came within `limit`.
  std::string first(std::chrono::milliseconds limit = 20s) const {
    if (!eventually([&] { return !all().empty(); }, limit)) return "";
    return all().front();
  }

 private:
  mutable std::mutex m_;
  std::vector<std::string> all_;
};

// The URL of a Redis that is not there: a port that was open and is now closed.
std::string unreachable_redis() {
  backoff::testing::redis_server gone;
  return "redis://127.0.0.1:" + std::to_string(gone.port());
}

}  // namespace

TEST(RedisUrl, ParsesHostPortAndPrefix) {
  const auto a = backoff::redis::parse_url("redis://10.0.0.5:6380/myapi");
  EXPECT_EQ(a.host, "10.0.0.5");
  EXPECT_EQ(a.port, 6380);
  EXPECT_EQ(a.prefix, "myapi");
  const auto b = backoff::redis::parse_url("redis://cache");
  EXPECT_EQ(b.host, "cache");
  EXPECT_EQ(b.port, 6379);
  EXPECT_EQ(b.prefix, "backoff");
  const auto c = backoff::redis::parse_url("redis://[::1]:7000/");
  EXPECT_EQ(c.host, "::1");
  EXPECT_EQ(c.port, 7000);
  // The limits themselves are ports.
  EXPECT_EQ(backoff::redis::parse_url("redis://h:1").port, 1);
  EXPECT_EQ(backoff::redis::parse_url("redis://h:65535").port, 65535);
  for (const char* bad : {"http://h:1", "redis://", "redis://h:0", "redis://h:65536", "redis://h:x", "redis://h:",
                          "redis://h/a{b}", "redis://[::1", "redis://h:63x79", "redis://h:6379 ", "redis://h:-1"}) {
    EXPECT_THROW(backoff::redis::parse_url(bad), std::invalid_argument) << bad;
  }
}

TEST(RedisUrl, TakesAUserAndAPercentDecodedPasswordAndHidesIt) {
  const auto a = backoff::redis::parse_url("redis://:s3cret@127.0.0.1:7001/p");
  EXPECT_EQ(a.user, "");
  EXPECT_EQ(a.password, "s3cret");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 7001);
  const auto b = backoff::redis::parse_url("redis://app:p%40ss%3Aw0rd@cache:6380");
  EXPECT_EQ(b.user, "app");
  EXPECT_EQ(b.password, "p@ss:w0rd");
  EXPECT_EQ(b.host, "cache");
  const auto c = backoff::redis::parse_url("redis://token@cache");  // no ':': the password, as Redis clients read it
  EXPECT_EQ(c.user, "");
  EXPECT_EQ(c.password, "token");
  // Every escape decodes, the low ones too (%09 is a tab).
  EXPECT_EQ(backoff::redis::parse_url("redis://:a%09b%2F@cache").password, "a\tb/");
  const auto d = backoff::redis::parse_url("redis://a@b@cache");  // the last '@' ends the userinfo
  EXPECT_EQ(d.host, "cache");
  EXPECT_EQ(backoff::redis::shown_url("redis://app:s3cret@cache:6380/x"), "redis://app:***@cache:6380/x");
  EXPECT_EQ(backoff::redis::shown_url("redis://cache:6380/x"), "redis://cache:6380/x");
  try {
    (void)backoff::redis::parse_url("redis://:s3cret@cache:0");
    ADD_FAILURE() << "port 0 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).find("s3cret"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(":***@"), std::string::npos) << e.what();
  }
  EXPECT_THROW(backoff::redis::parse_url("redis://:bad%zz@cache"), std::invalid_argument);
  EXPECT_THROW(backoff::redis::parse_url("redis://:bad%4@cache"), std::invalid_argument);
}

TEST(RedisFleet, AReleaseTimeReachesAnotherProcessAndIsNeverLowered) {
  backoff::testing::redis_server redis;
  fleet a(opts(redis)), b(opts(redis));
  ASSERT_FALSE(a.degraded());
  shared_host_backoff ha(a), hb(b);
  auto gate_b = hb.for_key("api:443");
  (void)ha.for_key("api:443");
  const auto t0 = now();
  ha.hold("api:443", t0, 3s);
  ASSERT_TRUE(eventually([&] { return hb.release_time("api:443", now()) > t0 + 2s; }));
  // Both processes agree on the instant (wall-clock milliseconds in Redis).
  const auto ra = ha.release_time("api:443", now()), rb = hb.release_time("api:443", now());
  EXPECT_LT(std::chrono::abs(ra - rb), 20ms);
  EXPECT_GE(gate_b.acquire({false, now(), false}).not_before, t0 + 2s);
  const std::string stored = redis.command("GET '{t:api:443}:release'");
  const auto ttl = std::stoll(redis.command("PTTL '{t:api:443}:release'"));
  EXPECT_GT(ttl, 60'000);  // expires a minute after the release time
  EXPECT_LE(ttl, 63'000);
  // A shorter hint from another process lowers nothing, here or there.
  hb.hold("api:443", now(), 1s);
  std::this_thread::sleep_for(100ms);  // nothing to wait for: this checks that nothing changed
  EXPECT_EQ(redis.command("GET '{t:api:443}:release'"), stored);
  EXPECT_GE(ha.release_time("api:443", now()), ra - 1ms);
  // Nor from a process that never read the key: Redis keeps the later time.
  fleet c(opts(redis));
  shared_host_backoff hc(c);
  hc.hold("api:443", now(), 1s);
  ASSERT_TRUE(eventually([&] { return hc.release_time("api:443", now()) > t0 + 2s; }));  // it learns the later one
  EXPECT_EQ(redis.command("GET '{t:api:443}:release'"), stored);
  // A longer one raises it everywhere.
  hb.hold("api:443", now(), 10s);
  ASSERT_TRUE(eventually([&] { return ha.release_time("api:443", now()) > t0 + 8s; }));
  EXPECT_GT(std::stoll(redis.command("GET '{t:api:443}:release'")), std::stoll(stored));
}

TEST(RedisFleet, AFreshProcessObeysAReleaseLearnedBeforeItStarted) {
  backoff::testing::redis_server redis;
  fleet a(opts(redis));
  shared_host_backoff ha(a);
  ha.hold("h:80", now(), 5s);
  ASSERT_TRUE(eventually([&] { return redis.command("EXISTS '{t:h:80}:release'") == "1"; }));
  fleet late(opts(redis));  // the cron job that starts afterwards
  shared_host_backoff hl(late);
  auto g = hl.for_key("h:80");  // reads the key before returning
  EXPECT_GT(g.acquire({false, now(), false}).not_before, now() + 4s);
  EXPECT_EQ(hl.release_time("other:80", now()), backoff::time_point{});
}

TEST(RedisFleet, TheFleetBudgetGrantsAtMostItsRatioOfTheFleetsRequests) {
  backoff::testing::redis_server redis;
  fleet a(opts(redis)), b(opts(redis));
  const shared_budget::options o{.ratio = 0.5, .min_per_second = 0, .window = 10s, .max_lease = 4};
  shared_budget ba(a, "api", o), bb(b, "api", o);
  // No requests yet: no retry anywhere.
  EXPECT_FALSE(ba.acquire(retry_at(now())).allowed);
  for (int i = 0; i < 10; ++i) {
    ba.record({backoff::attempt_outcome::retryable, false, false, now()});
    bb.record({backoff::attempt_outcome::retryable, false, false, now()});
  }
  // 20 requests in the fleet, ratio 0.5: ten retries in all, whoever asks.
  int granted = 0;
  const auto end = now() + 20s;  // time to collect the ten; a loaded machine syncs slower
  while (now() < end && granted < 10) {
    for (auto* g : {&ba, &bb})
      if (g->acquire(retry_at(now())).allowed) ++granted;
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(granted, 10);
  std::this_thread::sleep_for(200ms);  // ten sync intervals: nothing more may come
  for (auto* g : {&ba, &bb}) EXPECT_FALSE(g->acquire(retry_at(now())).allowed);
  // The hash holds the counts, and expires.
  const auto ttl = std::stoll(redis.command("PTTL '{t:api}:budget'"));
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 21'000);
}

TEST(RedisFleet, AReleasedTokenGoesBackToTheLease) {
  backoff::testing::redis_server redis;
  fleet a(opts(redis));
  shared_budget b(a, "api", {.ratio = 1, .min_per_second = 0, .window = 10s, .max_lease = 1});
  b.record({backoff::attempt_outcome::retryable, false, false, now()});
  ASSERT_TRUE(eventually([&] { return b.lease() == 1; }));
  const auto r = retry_at(now());
  ASSERT_TRUE(b.acquire(r).allowed);
  EXPECT_EQ(b.lease(), 0);
  b.release(r);
  EXPECT_EQ(b.lease(), 1);
}

TEST(RedisFleet, WithRedisGoneTheGatesAreLocalAndTheyRejoinWhenItIsBack) {
  backoff::testing::redis_server redis;
  warning_log warned;
  auto o = opts(redis);
  o.timeout = 200ms;
  o.on_warning = warned.sink();
  fleet a(o), b(opts(redis));
  shared_host_backoff ha(a), hb(b);
  (void)ha.for_key("k");
  (void)hb.for_key("k");
  shared_budget budget(a, "k", {.ratio = 0.1, .min_per_second = 10, .window = 10s, .max_lease = 1});
  redis.stop();
  ha.hold("k", now(), 2s);  // the command fails: a is degraded
  ASSERT_TRUE(eventually([&] { return a.degraded(); }));
  EXPECT_GT(ha.release_time("k", now()), now() + 1s);  // still obeyed here
  // The local budget answers: its reserve (10/s over 10 s) allows a retry.
  EXPECT_TRUE(budget.acquire(retry_at(now())).allowed);
  redis.start();
  ASSERT_TRUE(eventually([&] { return !a.degraded(); }, 20s));
  // Rejoined: what a learned while away went up, and news flows again.
  ASSERT_TRUE(eventually([&] { return hb.release_time("k", now()) > now() + 500ms; }, 20s));
  ha.hold("k", now(), 30s);
  ASSERT_TRUE(eventually([&] { return hb.release_time("k", now()) > now() + 20s; }, 20s));
  const auto warnings = warned.all();
  ASSERT_GE(warnings.size(), 2u);
  EXPECT_NE(warnings.front().find("unreachable"), std::string::npos) << warnings.front();
  EXPECT_NE(warnings.back().find("back"), std::string::npos) << warnings.back();
}

// Something that is not Redis on the port: its bytes are refused as replies,
// the fleet is degraded with one warning saying so, and nothing waits on it.
TEST(RedisFleet, AServerThatSendsGarbageIsNotRedis) {
  const backoff::testing::loopback_listener listener;
  std::atomic<bool> done{false};
  std::thread garbage([&] {
    while (!done) {
      pollfd p{listener.fd(), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int fd = ::accept(listener.fd(), nullptr, nullptr);
      if (fd < 0) continue;
      const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
      (void)::send(fd, junk, sizeof junk - 1, MSG_NOSIGNAL);
      ::close(fd);
    }
  });
  warning_log warned;
  {
    fleet f({.url = "redis://127.0.0.1:" + std::to_string(listener.port()) + "/g",
             .timeout = 2000ms,
             .on_warning = warned.sink()});
    EXPECT_TRUE(f.degraded());
  }
  done = true;
  garbage.join();
  const auto first = warned.first(0ms);
  EXPECT_NE(first.find("not a Redis reply"), std::string::npos) << first;
}

TEST(RedisFleet, AnUnreachableRedisIsReportedAtOnceAndFailClosedDeniesRetries) {
  const std::string gone = unreachable_redis();
  warning_log warned;
  fleet open_fleet({.url = gone, .timeout = 200ms, .on_warning = warned.sink()});
  EXPECT_TRUE(open_fleet.degraded());
  // The warning says why: the port refused the connection.
  const auto first = warned.first();
  EXPECT_NE(first.find("unreachable (" + std::string(std::strerror(ECONNREFUSED))), std::string::npos) << first;
  shared_budget open_budget(open_fleet, "k", {.ratio = 0.1, .min_per_second = 10, .window = 10s, .max_lease = 1});
  EXPECT_TRUE(open_budget.acquire(retry_at(now())).allowed);
  fleet closed_fleet({.url = gone, .timeout = 200ms, .fail_closed = true});
  shared_budget closed_budget(closed_fleet, "k", {.ratio = 0.1, .min_per_second = 10, .window = 10s, .max_lease = 1});
  EXPECT_FALSE(closed_budget.acquire(retry_at(now())).allowed);
  EXPECT_TRUE(closed_budget.acquire({false, now(), false}).allowed);  // first attempts always go
}

// Fail-open is not "no budget": with Redis away, the process's own budget
// (the same rule over its own requests) takes over at once.
TEST(RedisFleet, WithRedisAwayRetriesAreHeldToTheLocalBudget) {
  const std::string gone = unreachable_redis();
  fleet f({.url = gone, .timeout = 200ms});
  ASSERT_TRUE(f.degraded());
  shared_budget b(f, "k", {.ratio = 0.1, .min_per_second = 1, .window = 10s, .max_lease = 1});
  int allowed = 0;
  while (allowed < 1000 && b.acquire(retry_at(now())).allowed) ++allowed;
  EXPECT_EQ(allowed, 10);  // the reserve: 1 retry a second over the 10 s window
  EXPECT_EQ(b.acquire(retry_at(now())).reason, backoff::stop_reason::budget_exhausted);
  // 100 first attempts, banked by the worker: 10 % of them may be retried.
  // The worker may bank them in more than one pass (under TSan, CI once saw
  // 8 retries allowed at first), so the retries are counted until the tenth.
  for (int i = 0; i < 100; ++i) b.record({backoff::attempt_outcome::success, false, false, now()});
  int more = 0;
  ASSERT_TRUE(eventually([&] {
    while (more < 1000 && b.acquire(retry_at(now())).allowed) ++more;
    return more >= 10;
  }));
  EXPECT_EQ(more, 10);
  EXPECT_EQ(b.acquire(retry_at(now())).reason, backoff::stop_reason::budget_exhausted);
}

TEST(RedisFleet, ABreakerThatOpensInOneProcessOpensTheFleet) {
  backoff::testing::redis_server redis;
  fleet a(opts(redis)), b(opts(redis));
  const shared_breaker::options o{.local = {.failure_ratio = 0.5, .minimum_throughput = 2, .break_duration = 500ms},
                                  .quorum = 1};
  shared_breaker ka(a, "api", o), kb(b, "api", o);
  ASSERT_TRUE(kb.acquire({false, now(), false}).allowed);
  for (int i = 0; i < 2; ++i) ka.record({backoff::attempt_outcome::retryable, false, false, now()});
  ASSERT_TRUE(eventually([&] { return !kb.acquire({false, now(), false}).allowed; }));
  EXPECT_EQ(kb.acquire({false, now(), false}).reason, backoff::stop_reason::circuit_open);
  // After the break, one process probes; its success closes the fleet.
  std::this_thread::sleep_for(500ms);
  shared_breaker* prober = nullptr;
  ASSERT_TRUE(eventually([&] {
    if (ka.acquire({false, now(), false}).allowed) prober = &ka;
    else if (kb.acquire({false, now(), false}).allowed) prober = &kb;
    return prober != nullptr;
  }));
  shared_breaker* other = prober == &ka ? &kb : &ka;
  EXPECT_FALSE(other->acquire({false, now(), false}).allowed);  // one probe in the fleet
  prober->record({backoff::attempt_outcome::success, false, false, now()});
  ASSERT_TRUE(eventually([&] { return other->acquire({false, now(), false}).allowed; }));
}

// A process that starts while the fleet's breaker is open reads it when it
// makes its breaker, and refuses its very first request (as a fresh process
// obeys a release time learned before it started).
TEST(RedisFleet, AFreshProcessFindsTheFleetsBreakerOpen) {
  backoff::testing::redis_server redis;
  fleet a(opts(redis));
  const shared_breaker::options o{.local = {.failure_ratio = 0.5, .minimum_throughput = 2, .break_duration = 60s},
                                  .quorum = 1};
  shared_breaker ka(a, "api", o);
  for (int i = 0; i < 2; ++i) ka.record({backoff::attempt_outcome::retryable, false, false, now()});
  // Once the open state is in Redis (written by a's worker), every process
  // made from then on refuses at once.
  ASSERT_TRUE(eventually([&] {
    fleet probe(opts(redis));
    shared_breaker kp(probe, "api", o);
    return !kp.acquire({false, now(), false}).allowed;
  }));
  fleet late(opts(redis));
  ASSERT_FALSE(late.degraded());
  shared_breaker kl(late, "api", o);
  const auto d = kl.acquire({false, now(), false});  // at once: no waiting for a sync
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason, backoff::stop_reason::circuit_open);
}

TEST(RedisFleet, WithAQuorumOneSickProcessDoesNotOpenTheFleet) {
  backoff::testing::redis_server redis;
  warning_log warned;
  auto o_warn = opts(redis);
  o_warn.on_warning = warned.sink();
  fleet a(o_warn), b(o_warn), c(o_warn);
  const shared_breaker::options o{.local = {.failure_ratio = 0.5, .minimum_throughput = 2, .break_duration = 5s},
                                  .quorum = 2};
  shared_breaker ka(a, "api", o), kb(b, "api", o), kc(c, "api", o);
  for (int i = 0; i < 2; ++i) ka.record({backoff::attempt_outcome::retryable, false, false, now()});
  ASSERT_TRUE(eventually([&] { return redis.command("ZCARD '{t:api}:votes'") == "1"; }));
  std::this_thread::sleep_for(100ms);  // checks that nothing happens
  EXPECT_TRUE(kc.acquire({false, now(), false}).allowed);
  for (int i = 0; i < 2; ++i) kb.record({backoff::attempt_outcome::retryable, false, false, now()});
  ASSERT_TRUE(eventually([&] { return !kc.acquire({false, now(), false}).allowed; }));
  EXPECT_TRUE(kc.fleet_open(now()));
  const auto warnings = warned.all();
  EXPECT_TRUE(warnings.empty()) << warnings.front();  // no script ever failed
}

TEST(RedisCluster, KeySlotsFollowTheHashTagRule) {
  using backoff::redis::key_slot;
  EXPECT_EQ(key_slot("123456789"), 12739);  // CRC16/XMODEM 0x31C3, the Redis Cluster specification's check value
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("user1000"));
  EXPECT_EQ(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
  EXPECT_NE(key_slot("foo{}{bar}"), key_slot("bar"));        // an empty tag: the whole key …
  EXPECT_NE(key_slot("foo{}{bar}"), key_slot(""));           // … not the empty tag
  EXPECT_EQ(key_slot("foo{{bar}}zap"), key_slot("{bar"));      // the tag ends at the first '}'
  EXPECT_EQ(key_slot("{a:api:443}:release"), key_slot("{a:api:443}:budget"));
  EXPECT_EQ(key_slot(""), 0);
}

// The issue's case: six prefixes through the URL of one node of a 3-master
// cluster. Before, only the keys of that node's slots were kept (MOVED was an
// error); now each key is written on its slot's master and read back.
TEST(RedisCluster, EveryPrefixIsSharedWhicheverNodeServesItsSlot) {
  backoff::testing::redis_cluster cluster(3);
  std::set<int> owners;
  for (const std::string p : {"a", "b", "c", "d", "e", "f"}) {
    warning_log warned;
    const backoff::redis::fleet_options o{
        .url = cluster.url("/" + p), .timeout = 2000ms, .sync_interval = 20ms, .on_warning = warned.sink()};
    fleet a(o), b(o);
    ASSERT_FALSE(a.degraded()) << p;
    shared_host_backoff ha(a), hb(b);
    (void)hb.for_key("api:443");
    const auto t0 = now();
    ha.hold("api:443", t0, 5s);
    const std::string key = "{" + p + ":api:443}:release";
    ASSERT_TRUE(eventually([&] { return cluster.command("EXISTS '" + key + "'") == "1"; })) << p;
    ASSERT_TRUE(eventually([&] { return hb.release_time("api:443", now()) > t0 + 4s; })) << p;
    owners.insert(cluster.owner(key));
    for (const auto& w : warned.all()) EXPECT_EQ(w.find("error"), std::string::npos) << p << ": " << w;
  }
  EXPECT_GE(owners.size(), 2u) << "the six keys all live on one node: the test would not see MOVED";
}

// A master dies (the URL's node, which also serves the key's slot) and its
// replica takes over: the release time survives, and the fleet finds the new
// master through the nodes it learnt from CLUSTER SLOTS, within seconds.
TEST(RedisCluster, AFailoverOfTheUrlsNodeKeepsTheFleetAndItsReleaseTime) {
  backoff::testing::redis_cluster cluster(3, 1);
  std::string prefix, key;
  std::size_t home = cluster.size();
  for (char c = 'a'; c <= 'z' && home == cluster.size(); ++c) {
    prefix = std::string(1, c);
    key = "{" + prefix + ":api:443}:release";
    const int port = cluster.owner(key);
    for (std::size_t i = 0; i < cluster.size(); ++i)
      if (cluster.node(i).port() == port) home = i;
  }
  ASSERT_LT(home, cluster.size());
  backoff::redis::fleet_options o{.url = cluster.node(home).url("/" + prefix), .timeout = 2000ms, .sync_interval = 20ms};
  fleet a(o), b(o);
  ASSERT_FALSE(a.degraded());
  shared_host_backoff ha(a), hb(b);
  (void)hb.for_key("api:443");
  ha.hold("api:443", now(), 60s);
  ASSERT_TRUE(eventually([&] { return cluster.command("EXISTS '" + key + "'") == "1"; }));
  const std::string stored = cluster.command("GET '" + key + "'");
  // The replica has it. Under ThreadSanitizer the replica may still be in its
  // first sync: ask again until it acknowledges (one CI run got "0" after 5 s).
  ASSERT_TRUE(eventually([&] { return cluster.node(home).command("WAIT 1 1000") == "1"; }, 30s));
  const int old_master = cluster.node(home).port();
  cluster.node(home).stop();
  ASSERT_TRUE(eventually([&] { const int p = cluster.owner(key); return p != 0 && p != old_master; }, 30s));
  EXPECT_EQ(cluster.command("GET '" + key + "'"), stored);  // not lost
  // A longer hold goes to the new master, and the other process hears of it.
  ha.hold("api:443", now(), 120s);
  ASSERT_TRUE(eventually([&] { return cluster.command("GET '" + key + "'") != stored; }, 30s));
  ASSERT_TRUE(eventually([&] { return hb.release_time("api:443", now()) > now() + 100s; }, 30s));
  EXPECT_FALSE(a.degraded());
}

// A TLS Redis that goes away under a connected fleet: the writes that follow
// go to a closed connection. OpenSSL writes with write(2), whose SIGPIPE would
// kill the whole process (it did, in make bench-fleet); the fleet must only
// lose Redis and keep the gates local.
TEST(RedisFleet, ATlsRedisThatGoesAwayDoesNotKillTheProcessWithSigpipe) {
  const auto dir = std::filesystem::temp_directory_path() / ("backoff-tls-pipe-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  backoff::testing::make_test_certificates(dir.string());
  struct sigaction old{};
  struct sigaction dfl{};
  dfl.sa_handler = SIG_DFL;  // as in a program that never heard of SIGPIPE
  ::sigaction(SIGPIPE, &dfl, &old);
  {
    backoff::testing::redis_server redis("", false, dir.string());
    backoff::redis::fleet f({.url = redis.url("/pipe"), .ca_file = (dir / "ca.pem").string()});
    backoff::redis::shared_host_backoff hosts(f);
    ASSERT_TRUE(eventually([&] { return !f.degraded(); }));
    redis.stop();
    for (int i = 0; i < 50 && !f.degraded(); ++i) {
      hosts.hold("k" + std::to_string(i), now(), 60s);  // each one a write to Redis
      std::this_thread::sleep_for(20ms);
    }
    EXPECT_TRUE(eventually([&] { return f.degraded(); }));
  }
  ::sigaction(SIGPIPE, &old, nullptr);
  std::filesystem::remove_all(dir);
}

// A TLS Redis reached by a name its certificate does not carry is not
// trusted, even though the CA signed it: "127.1" reaches 127.0.0.1, but the
// certificate names only 127.0.0.1 and localhost. By "localhost" it is.
TEST(RedisFleet, TheTlsCertificateMustNameTheHost) {
  const auto dir = std::filesystem::temp_directory_path() / ("backoff-tls-name-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  backoff::testing::make_test_certificates(dir.string());
  {
    backoff::testing::redis_server redis("", false, dir.string());
    const std::string port = std::to_string(redis.port());
    warning_log warned;
    fleet wrong({.url = "rediss://127.1:" + port + "/n",
                 .ca_file = (dir / "ca.pem").string(),
                 .timeout = 5s,
                 .on_warning = warned.sink()});
    EXPECT_TRUE(wrong.degraded());
    const auto first = warned.first();
    EXPECT_NE(first.find("certificate"), std::string::npos) << first;
    fleet right({.url = "rediss://localhost:" + port + "/n", .ca_file = (dir / "ca.pem").string(), .timeout = 5s});
    EXPECT_TRUE(eventually([&] { return !right.degraded(); }));
  }
  std::filesystem::remove_all(dir);
}

// A port that takes the connection but never answers the TLS handshake (the
// kernel accepts it; nobody reads): the fleet gives up at its timeout and
// says so, rather than calling the half-made connection Redis.
TEST(RedisFleet, ATlsHandshakeThatNeverAnswersTimesOut) {
  const backoff::testing::loopback_listener listener;
  warning_log warned;
  {
    fleet f({.url = "rediss://127.0.0.1:" + std::to_string(listener.port()) + "/t",
             .timeout = 100ms,
             .on_warning = warned.sink()});
    EXPECT_TRUE(f.degraded());
  }
  const auto first = warned.first();
  EXPECT_NE(first.find("timed out after 100 ms"), std::string::npos) << first;
}

// The key gate of a shared host_backoff, in a loop: a failure pushes the
// release time in this process and in the other one; a success lowers the
// count of failures (as the local host_backoff does).
TEST(RedisFleet, ASharedHostGateRecordsFailuresForTheFleet) {
  backoff::testing::redis_server redis;
  fleet a(opts(redis)), b(opts(redis));
  ASSERT_FALSE(a.degraded());
  shared_host_backoff ha(a), hb(b);
  auto gate = ha.for_key("svc:80");
  (void)hb.for_key("svc:80");
  const auto t0 = now();
  for (int i = 0; i < 3; ++i) gate.record({backoff::attempt_outcome::retryable, true, false, t0});
  EXPECT_EQ(ha.local().failures("svc:80"), 3u);
  EXPECT_GE(ha.release_time("svc:80", t0), t0 + 4s);  // 1 s, 2 s, 4 s
  ASSERT_TRUE(eventually([&] { return hb.release_time("svc:80", now()) >= t0 + 3s; }));
  gate.record({backoff::attempt_outcome::success, true, false, t0 + 5s});
  EXPECT_EQ(ha.local().failures("svc:80"), 2u);
  gate.record({backoff::attempt_outcome::permanent, true, false, t0 + 5s});  // neither
  EXPECT_EQ(ha.local().failures("svc:80"), 2u);
}

// The bounds the header gives are the ones enforced, each error naming
// shared_budget: a 10-minute window was refused by the local fallback's own
// limit (60 s), with that budget's name.
TEST(RedisFleet, SharedBudgetOptionsAreChecked) {
  backoff::testing::redis_server redis;
  fleet f(opts(redis));
  for (const auto& bad : {shared_budget::options{.ratio = 0.1, .min_per_second = -1},
                          shared_budget::options{.ratio = 0.1, .window = std::chrono::milliseconds(999)},
                          shared_budget::options{.ratio = 0.1, .window = std::chrono::minutes(11)},
                          shared_budget::options{.ratio = 0.0005},
                          shared_budget::options{.ratio = 11},
                          shared_budget::options{.ratio = 0.1, .min_per_second = 2e6}}) {
    try {
      shared_budget b(f, "k", bad);
      ADD_FAILURE() << "accepted ratio " << bad.ratio << ", min_per_second " << bad.min_per_second;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("backoff::redis::shared_budget: "), std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW(shared_budget(f, "k", {.ratio = 0.1, .window = std::chrono::seconds(1)}));
  EXPECT_NO_THROW(shared_budget(f, "k", {.ratio = 0.1, .window = std::chrono::minutes(10)}));
  EXPECT_NO_THROW(shared_budget(f, "k", {.ratio = 0}));
  EXPECT_NO_THROW(shared_budget(f, "k", {.ratio = 10, .min_per_second = 1e6}));
}
