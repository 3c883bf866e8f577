// SPDX-License-Identifier: BSL-1.0
// backoff get/run --share: several backoff processes, one redis-server (Debian's,
// on an ephemeral loopback port), one fault server; what the fleet shares is
// read from the server's log of requests.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "cli_support.hpp"
#include "redis_server.hpp"
#include "wait.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using backoff::testing::fault;
using namespace cli_test;

using backoff::testing::eventually;

namespace {


// A TCP proxy on 127.0.0.1 that closes each connection once `cut` bytes of
// the server's replies have gone through: every reply past that is cut in
// the middle (issue 20's chaos case).
class cutting_proxy {
 public:
  cutting_proxy(int upstream, std::size_t cut) : upstream_(upstream), cut_(cut) {
    accepter_ = std::thread([this] { accept_loop(); });
  }
  ~cutting_proxy() {
    stop_ = true;
    accepter_.join();
    for (auto& t : pipes_) t.join();
  }
  int port() const { return listener_.port(); }
  std::size_t connections() const { return connections_; }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listener_.fd(), POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int client = ::accept(listener_.fd(), nullptr, nullptr);
      if (client < 0) continue;
      ++connections_;
      pipes_.emplace_back([this, client] { pipe(client); });
    }
  }
  void pipe(int client) {
    const int server = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(upstream_));
    std::size_t passed = 0;
    if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      char buf[4096];
      while (!stop_ && passed < cut_) {
        pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
        if (::poll(p, 2, 20) <= 0) continue;
        if (p[0].revents) {
          const auto n = ::read(client, buf, sizeof buf);
          if (n <= 0 || ::write(server, buf, static_cast<std::size_t>(n)) != n) break;
        }
        if (p[1].revents) {
          const auto n = ::read(server, buf, std::min(sizeof buf, cut_ - passed));
          if (n <= 0 || ::write(client, buf, static_cast<std::size_t>(n)) != n) break;
          passed += static_cast<std::size_t>(n);
        }
      }
    }
    ::close(server);
    ::close(client);
  }
  int upstream_;
  std::size_t cut_;
  backoff::testing::loopback_listener listener_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> connections_{0};
  std::thread accepter_;
  std::vector<std::thread> pipes_;  // accepter's thread only, joined after it
};

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

namespace cli_test {
// The fleet of the Retry-After tests: `get -q --share` of `url` into out0 …
// out5, the first alone until it has told Redis (`key` exists), then five
// more at once; every process exits 0 with the whole body.
void Cli::get_first_then_five(const std::string& share, const std::string& key, const std::string& url,
                              const std::string& body, backoff::testing::redis_server& redis) {
  // A generous --share-timeout: six processes starting at once on a loaded
  // (or sanitized) machine can take past the default 20 ms to read the release
  // time, and then go at once, as they are meant to when Redis is slow (CI saw it).
  auto get = [&](int i) {
    return cli({"get", "-q", "--share", share, "--share-timeout", "5s", "--initial", "10ms", "-o", "out" + std::to_string(i), url});
  };
  std::vector<cli_result> results(6);
  std::thread first([&] { results[0] = get(0); });
  ASSERT_TRUE(eventually([&] { return redis.command("EXISTS " + key) == "1"; }));
  std::vector<std::thread> rest;
  for (int i = 1; i < 6; ++i) rest.emplace_back([&, i] { results[static_cast<std::size_t>(i)] = get(i); });
  first.join();
  for (auto& t : rest) t.join();
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(results[static_cast<std::size_t>(i)].status, 0) << i << ": " << results[static_cast<std::size_t>(i)].err;
    EXPECT_EQ(slurp(dir / ("out" + std::to_string(i))), body) << i;
  }
}
}  // namespace cli_test

// One process gets "429, Retry-After: 3"; five more start once it has told the
// fleet. No request from any of them reaches the server before the release time.
TEST_F(Cli, ShareMakesEveryProcessObeyOneRetryAfter) {
  backoff::testing::redis_server redis;
  backoff::testing::fault_server server;
  const std::string body = std::string(10'000, 'r');
  server.add_file("/f", body);
  server.script("/f", {fault::status(429, "3")});
  const std::string share = redis.url("/ra");
  const std::string key = "'{ra:127.0.0.1:" + std::to_string(server.port()) + "}:release'";
  ASSERT_NO_FATAL_FAILURE(get_first_then_five(share, key, server.url("/f"), body, redis));
  const auto log = server.requests("/f");
  ASSERT_EQ(log.size(), 7u);  // the 429, then one request per process
  // Redis keeps milliseconds: allow the one lost in rounding.
  for (std::size_t i = 1; i < log.size(); ++i)
    EXPECT_GE(log[i].at - log[0].at, 3s - 2ms) << "request " << i << " came "
                                                << std::chrono::duration_cast<std::chrono::milliseconds>(log[i].at - log[0].at).count()
                                                << " ms after the 429";
}

// When the shared release time passes, the fleet does not all go at once: one
// process probes; a probe that meets a new Retry-After closes the host again
// with no wave; only a probe's success lets the others go (issue 20, part 5).
TEST_F(Cli, ShareReleasesTheFleetByOneProbe) {
  backoff::testing::redis_server redis;
  backoff::testing::fault_server server;
  const std::string body = std::string(10'000, 'p');
  server.add_file("/f", body);
  server.script("/f", {fault::status(429, "2"), fault::status(429, "1"), fault::slow(400ms)});
  const std::string share = redis.url("/probe");
  const std::string key = "'{probe:127.0.0.1:" + std::to_string(server.port()) + "}:release'";
  ASSERT_NO_FATAL_FAILURE(get_first_then_five(share, key, server.url("/f"), body, redis));
  const auto log = server.requests("/f");
  ASSERT_EQ(log.size(), 8u);  // the 429, two probes, then one request per process but the prober's
  auto since = [&](std::size_t i, std::size_t j) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(log[i].at - log[j].at);
  };
  EXPECT_GE(since(1, 0), 2s - 2ms);  // the first probe, alone, at the release time
  EXPECT_GE(since(2, 1), 1s - 2ms);  // its 429 closed the fleet for 1 s: the second probe, alone
  for (std::size_t i = 3; i < log.size(); ++i)  // the others only after the probe's (slow) success
    EXPECT_GE(since(i, 2), 400ms) << "request " << i << " came " << since(i, 2).count() << " ms after the probe";
}

// The cron-job case: 4 workers, each running 40 one-shot downloads one after
// another, against a server that fails every other request. Each process
// starts with a full local budget, so only a fleet budget can hold retries to
// its share of the fleet's requests.
TEST_F(Cli, ShareHoldsFreshProcessesToOneRetryBudget) {
  backoff::testing::redis_server redis;
  backoff::testing::fault_server server;
  server.add_file("/f", "data");
  // 4 × 20 processes per fleet: under the sanitizers each process takes about
  // half a second to start, and 4 × 40 came close to the test's time limit.
  constexpr int per_worker = 20;
  constexpr double downloads = 4.0 * per_worker;
  auto amplification = [&](const std::string& path, const std::vector<std::string>& share) {
    server.add_file(path, "data");
    std::vector<fault> script;
    for (int i = 0; i < 2000; ++i) script.push_back(i % 2 == 0 ? fault::status(503) : fault::ok());
    server.script(path, script);
    std::vector<std::thread> workers;
    for (int w = 0; w < 4; ++w)
      workers.emplace_back([&, w] {
        for (int k = 0; k < per_worker; ++k) {
          std::vector<std::string> args{"get", "-q", "--initial", "1ms", "--max-delay", "5ms", "--max-attempts", "5",
                                        "-o", "o" + std::to_string(w) + "-" + std::to_string(k), server.url(path)};
          args.insert(args.end(), share.begin(), share.end());
          (void)cli(args);
        }
      });
    for (auto& t : workers) t.join();
    return static_cast<double>(server.hits(path)) / downloads;
  };
  const double local = amplification("/local", {});
  const auto start = std::chrono::steady_clock::now();
  const double fleet = amplification("/fleet", {"--share", redis.url("/budget")});
  // The budget allows 10 % of the requests plus one retry a second: on a slow
  // machine (the sanitizer build takes over a minute here) the second term
  // grows with the time the downloads take, so the bound does too.
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LE(fleet, 1.25 + seconds / downloads) << "without --share: " << local << "; took " << seconds << " s";
  EXPECT_GT(local, fleet + 0.2) << "with --share: " << fleet;
  std::printf("amplification: %.3f without --share, %.3f with\n", local, fleet);
  RecordProperty("amplification_local", std::to_string(local));
  RecordProperty("amplification_shared", std::to_string(fleet));
}

// Four processes, one quota of 8 a second (announced in IETF RateLimit): each
// takes its share (2 a window), so the fleet never runs into the wall.
TEST_F(Cli, ShareSplitsTheAnnouncedQuotaBetweenTheProcesses) {
  backoff::testing::redis_server redis;
  backoff::testing::fault_server server;
  for (int i = 0; i < 24; ++i) {
    server.add_file("/q/" + std::to_string(i), "item " + std::to_string(i));
    // Each process's first two requests wait at the server until all four
    // processes have joined: one that started first cannot spend the window
    // before it knows it has company.
    if (i % 6 < 2) server.script("/q/" + std::to_string(i), {fault::hold()});
  }
  server.set_quota(8, 1s, "ietf");
  std::vector<cli_result> results(4);
  std::vector<std::thread> fleet;
  for (int w = 0; w < 4; ++w)
    fleet.emplace_back([&, w] {
      std::vector<std::string> args{"get", "-q", "-P", "2", "--share", redis.url("/quota"), "--initial", "5ms",
                                    "-O", "w" + std::to_string(w)};
      for (int i = 6 * w; i < 6 * w + 6; ++i) args.push_back(server.url("/q/" + std::to_string(i)));
      results[static_cast<std::size_t>(w)] = cli(args);
    });
  const std::string members = "{quota:127.0.0.1:" + std::to_string(server.port()) + "}:quota";
  EXPECT_TRUE(eventually([&] { return redis.command("ZCARD " + members) == "4"; }));
  EXPECT_TRUE(server.wait_held(8, 8));
  server.release(8);
  for (auto& t : fleet) t.join();
  for (int w = 0; w < 4; ++w) {
    EXPECT_EQ(results[static_cast<std::size_t>(w)].status, 0) << w << ": " << results[static_cast<std::size_t>(w)].err;
    for (int i = 6 * w; i < 6 * w + 6; ++i)
      EXPECT_EQ(slurp(dir / ("w" + std::to_string(w)) / std::to_string(i)), "item " + std::to_string(i));
  }
  // The first eight requests are the whole first window; after that, shares
  // of 2 a window each: none refused.
  EXPECT_EQ(server.quota_refusals(), 0u);
  // Every process left the quota as it ended.
  EXPECT_EQ(redis.command("ZCARD " + members), "0");
}

// A process that starts while the fleet has spent the window waits for its
// reset instead of sending blind into it.
TEST_F(Cli, ShareTellsAFreshProcessThatTheWindowIsSpent) {
  backoff::testing::redis_server redis;
  backoff::testing::fault_server server;
  for (int i = 0; i < 5; ++i) server.add_file("/s/" + std::to_string(i), "s" + std::to_string(i));
  // Begin just after a 3 s window begins, so that it is not over before the second process starts.
  const auto wall = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  std::this_thread::sleep_for(3000ms - wall % 3000ms + 20ms);
  server.set_quota(4, 3s, "x-ratelimit");
  std::vector<std::string> first{"get", "-q", "-P", "4", "--share", redis.url("/spent"), "-O", "a"};
  for (int i = 0; i < 4; ++i) first.push_back(server.url("/s/" + std::to_string(i)));
  const auto a = cli(first);
  ASSERT_EQ(a.status, 0) << a.err;
  const std::string window = "{spent:127.0.0.1:" + std::to_string(server.port()) + "}:window";
  ASSERT_TRUE(eventually([&] { return redis.command("HGET " + window + " remaining") == "0"; }));
  const auto b = cli({"get", "-q", "--share", redis.url("/spent"), "-o", "b", server.url("/s/4")});
  EXPECT_EQ(b.status, 0) << b.err;
  EXPECT_EQ(slurp(dir / "b"), "s4");
  EXPECT_EQ(server.quota_refusals(), 0u);  // it waited for the next window
}

// What the fleet keeps of a window is read only when it is whole: a hash
// with its reset but not what remains (or the other way round) — written by
// another version, or cut short by a failover — is ignored, and the process
// goes as if it knew nothing, instead of reading a field that is not there.
TEST_F(Cli, ShareIgnoresAWindowWithAFieldMissing) {
  backoff::testing::redis_server redis;
  backoff::testing::fault_server server;
  server.add_file("/h", "whole");
  const std::string window = "{half:127.0.0.1:" + std::to_string(server.port()) + "}:window";
  const auto in_a_minute = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch() + std::chrono::minutes(1))
                               .count();
  for (const std::string& fields : {"reset " + std::to_string(in_a_minute), std::string("remaining 0")}) {
    redis.command("DEL " + window);
    redis.command("HSET " + window + " " + fields + " limit 4 window 60000");
    const auto r = cli({"get", "-q", "--share", redis.url("/half"), "-o", "h", server.url("/h")});
    EXPECT_EQ(r.status, 0) << fields << ": " << r.err;
    EXPECT_EQ(slurp(dir / "h"), "whole") << fields;
    fs::remove(dir / "h");
  }
  EXPECT_EQ(server.hits("/h"), 2u);
}

TEST_F(Cli, ShareWithRedisUnreachableWarnsOnceAndWorksAlone) {
  int closed_port = 0;
  {
    backoff::testing::redis_server gone;
    closed_port = gone.port();
  }
  backoff::testing::fault_server server;
  server.add_file("/f", "alone");
  server.script("/f", {fault::status(503, "0")});
  const auto r = cli({"get", "--share", "redis://127.0.0.1:" + std::to_string(closed_port), "--initial", "1ms", "-o", "f",
                      server.url("/f")});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(dir / "f"), "alone");
  EXPECT_EQ(count(r.err, "warning"), 1) << r.err;
  EXPECT_NE(r.err.find("unreachable"), std::string::npos) << r.err;
}

// A hung Redis (stopped: connections are accepted, nothing answers) must not
// hold the process: it warns, downloads alone and exits. Before, it never
// exited (the subscriber waited for SUBSCRIBE's reply with no bound, and the
// destructor joined it); the CLI watchdog would stop it after a minute.
TEST_F(Cli, ShareWithRedisHungWarnsAndExits) {
  backoff::testing::redis_server redis;
  redis.pause();
  backoff::testing::fault_server server;
  server.add_file("/f", "alone");
  server.script("/f", {fault::status(503, "0")});
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = cli({"get", "--share", redis.url("/hung"), "--initial", "1ms", "-o", "f", server.url("/f")});
  const auto took = std::chrono::steady_clock::now() - t0;
  redis.resume();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(dir / "f"), "alone");
  EXPECT_NE(r.err.find("unreachable"), std::string::npos) << r.err;
  // Not a speed check: a bound far above any healthy run, far below the watchdog.
  EXPECT_LT(took, 20s);
  // --share-timeout is the wait: a hung Redis holds the process at least that long, then it goes alone.
  redis.pause();
  const auto t1 = std::chrono::steady_clock::now();
  const auto patient = cli({"get", "-q", "--share", redis.url("/hung"), "--share-timeout", "1500ms", "--initial", "1ms",
                            "-o", "g", server.url("/f")});
  const auto waited = std::chrono::steady_clock::now() - t1;
  redis.resume();
  EXPECT_EQ(patient.status, 0) << patient.err;
  EXPECT_EQ(slurp(dir / "g"), "alone");
  EXPECT_GE(waited, 1500ms);
  EXPECT_LT(waited, 20s);
}

// Redis behind a proxy that cuts every connection in the middle of a reply
// (after 4 bytes: no reply ever arrives whole; after 120: the hand-shake and
// the first reads pass, later replies are cut): the process never hangs,
// warns once, finishes its download, and never goes before the release time
// it read before the cuts began.
TEST_F(Cli, ShareThroughAProxyThatCutsRepliesNeitherHangsNorGoesEarly) {
  backoff::testing::redis_server redis;
  backoff::testing::fault_server server;
  server.add_file("/f", "cut");
  for (const std::size_t cut : {std::size_t{4}, std::size_t{120}}) {
    cutting_proxy proxy(redis.port(), cut);
    const std::string prefix = "cut" + std::to_string(cut);
    const auto unix_ms = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    };
    const auto set_at = std::chrono::steady_clock::now();
    redis.command("SET {" + prefix + ":127.0.0.1:" + std::to_string(server.port()) + "}:release " +
                  std::to_string(unix_ms() + 1500) + " PX 60000");
    const auto before = server.requests("/f").size();
    const auto r = cli({"get", "--share", "redis://127.0.0.1:" + std::to_string(proxy.port()) + "/" + prefix, "-o",
                        "f" + prefix, server.url("/f")});
    const auto took = std::chrono::steady_clock::now() - set_at;
    EXPECT_EQ(r.status, 0) << cut << ": " << r.err;
    EXPECT_EQ(slurp(dir / ("f" + prefix)), "cut") << cut;
    EXPECT_LE(count(r.err, "warning"), 1) << cut << ": " << r.err;
    EXPECT_GE(proxy.connections(), 1u) << cut;
    EXPECT_LT(took, 20s) << cut;  // not a speed check: far above a healthy run, far below the watchdog
    const auto log = server.requests("/f");
    ASSERT_EQ(log.size(), before + 1) << cut;
    if (cut == 120) {  // the release time was read whole: obeyed
      EXPECT_GE(log.back().at - set_at, 1500ms - 20ms) << cut;
    }
  }
}

// Redis with requirepass: the password from the URL, the environment or a
// file lets the release time through; a wrong one is one warning, then local gates.
TEST_F(Cli, ShareAuthenticatesWithThePasswordFromTheUrlTheEnvironmentOrAFile) {
  backoff::testing::redis_server redis("s3cret");
  backoff::testing::fault_server server;
  server.add_file("/f", "shared");
  const std::string host = "127.0.0.1:" + std::to_string(redis.port());
  std::ofstream(dir / "pw") << "s3cret\n";
  struct way {
    std::string prefix, url, env, file;
  };
  for (const way& w : {way{"url", "redis://:s3cret@" + host + "/url", "", ""},
                       way{"env", "redis://" + host + "/env", "s3cret", ""},
                       way{"file", "redis://" + host + "/file", "", "pw"}}) {
    server.script("/f", {fault::status(429, "1")});
    if (!w.env.empty()) ::setenv("BACKOFF_REDIS_PASSWORD", w.env.c_str(), 1);
    std::vector<std::string> args{"get", "--share", w.url, "--initial", "1ms", "-o", "f", server.url("/f")};
    if (!w.file.empty()) args.insert(args.end(), {"--share-password-file", w.file});
    const auto r = cli(args);
    ::unsetenv("BACKOFF_REDIS_PASSWORD");
    EXPECT_EQ(r.status, 0) << w.prefix << ": " << r.err;
    EXPECT_EQ(r.err.find("warning"), std::string::npos) << w.prefix << ": " << r.err;
    EXPECT_EQ(r.err.find("s3cret"), std::string::npos) << w.prefix << ": " << r.err;
    const std::string key = "'{" + w.prefix + ":127.0.0.1:" + std::to_string(server.port()) + "}:release'";
    EXPECT_EQ(redis.command("EXISTS " + key), "1") << w.prefix;
  }
}

TEST_F(Cli, ShareWithAWrongPasswordWarnsOnceNamingItAndWorksAlone) {
  backoff::testing::redis_server redis("s3cret");
  backoff::testing::fault_server server;
  server.add_file("/f", "alone");
  server.script("/f", {fault::status(503, "0")});
  const std::string url = "redis://:wrong@127.0.0.1:" + std::to_string(redis.port()) + "/x";
  const auto r = cli({"get", "--share", url, "--initial", "1ms", "-o", "f", server.url("/f")});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(dir / "f"), "alone");
  EXPECT_EQ(count(r.err, "warning"), 1) << r.err;
  EXPECT_NE(r.err.find("the password was refused"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("wrong@"), std::string::npos) << r.err;
  // -q: not even that one warning.
  server.script("/f", {fault::status(503, "0")});
  const auto quiet = cli({"get", "-q", "--share", url, "--initial", "1ms", "-o", "g", server.url("/f")});
  EXPECT_EQ(quiet.status, 0) << quiet.err;
  EXPECT_EQ(slurp(dir / "g"), "alone");
  EXPECT_EQ(quiet.err.find("warning"), std::string::npos) << quiet.err;
  const auto bad = cli({"get", "--share", url, "--share-password-file", "missing", "-o", "f", server.url("/f")});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--share-password-file: cannot read 'missing'"), std::string::npos) << bad.err;
}

// rediss://: the release time goes through a TLS Redis whose certificate a
// private CA signed (--share-cacert); without that CA, one warning that says
// the certificate is not trusted, then local gates.
TEST_F(Cli, ShareOverTlsVerifiesTheCertificate) {
  backoff::testing::make_test_certificates(dir.string());
  backoff::testing::redis_server redis("", false, dir.string());
  ASSERT_EQ(redis.url("/tls").rfind("rediss://", 0), 0u);
  backoff::testing::fault_server server;
  server.add_file("/f", "over tls");
  server.script("/f", {fault::status(429, "1")});
  // --share-timeout: a TLS handshake on a loaded machine may take more than the default 20 ms.
  const auto r = cli({"get", "--share", redis.url("/tls"), "--share-cacert", (dir / "ca.pem").string(), "--initial",
                      "1ms", "--share-timeout", "5s", "-o", "f", server.url("/f")});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(dir / "f"), "over tls");
  const std::string key = "'{tls:127.0.0.1:" + std::to_string(server.port()) + "}:release'";
  EXPECT_EQ(redis.command("EXISTS " + key), "1");

  server.script("/f", {fault::status(503, "0")});
  const auto untrusted = cli({"get", "--share", redis.url("/tls"), "--initial", "1ms", "-o", "g", server.url("/f")});
  EXPECT_EQ(untrusted.status, 0) << untrusted.err;
  EXPECT_EQ(count(untrusted.err, "warning"), 1) << untrusted.err;
  EXPECT_NE(untrusted.err.find("certificate is not trusted"), std::string::npos) << untrusted.err;
  // Plain TCP to a TLS port: a reply that is not Redis's, one warning, local gates.
  std::string plain = redis.url("/x");
  plain.replace(0, 6, "redis");
  const auto mixed = cli({"get", "--share", plain, "--initial", "1ms", "-o", "h", server.url("/f")});
  EXPECT_EQ(mixed.status, 0) << mixed.err;
  EXPECT_EQ(count(mixed.err, "warning"), 1) << mixed.err;
  const auto flag = cli({"get", "--share", plain, "--share-cacert", (dir / "ca.pem").string(), "-o", "i", server.url("/f")});
  EXPECT_EQ(flag.status, 2);
  EXPECT_NE(flag.err.find("--share-cacert: the URL is not rediss://"), std::string::npos) << flag.err;
}

TEST_F(Cli, ShareFlagsAreCheckedByName) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"get", "--share", "http://h:1", "http://h/x"}, "--share: redis URL 'http://h:1'"},
      {{"get", "--share", "redis://h:99999", "http://h/x"}, "the port must be 1..65535"},
      {{"get", "--share", "redis://h", "--per-transfer-retry-after", "http://h/a", "http://h/b"}, "--share: a fleet shares Retry-After"},
      {{"run", "--share", "redis://h", "--", "true"}, "--share: needs --share-key NAME"},
      {{"run", "--share-key", "api", "--", "true"}, "--share-key: needs --share"},
      {{"run", "--share", "redis://h", "--share-key", "a{b}", "--", "true"}, "--share-key: 'a{b}' may not hold braces"},
      {{"get", "--share", "redis://127.0.0.1:1", "--share-timeout", "0", "http://h/x"}, "--share-timeout: '0' is outside 1ms..1m"},
      {{"get", "--share", "redis://127.0.0.1:1", "--share-timeout", "2m", "http://h/x"}, "--share-timeout: '2m' is outside"},
      {{"run", "--share", "redis://127.0.0.1:1", "--share-key", "k", "--share-timeout", "soon", "--", "true"},
       "--share-timeout"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = cli(args);
    EXPECT_EQ(r.status, 2) << message << ": " << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
}

// run --share: a command whose failures trip the breaker in one process is
// refused in the next, which never runs it.
TEST_F(Cli, RunShareOpensTheBreakerForTheFleet) {
  backoff::testing::redis_server redis;
  const std::string share = redis.url("/run");
  // Polly's defaults need 100 calls to trip; the shared breaker for run uses
  // them too, so trip it through the library's own key with redis-cli.
  const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch() + 60s).count();
  redis.command("SET '{run:deploy}:open' " + std::to_string(until));
  const auto r = cli({"run", "--share", share, "--share-key", "deploy", "--", "sh", "-c", "touch ran"});
  EXPECT_EQ(r.status, 75) << r.err;
  EXPECT_FALSE(fs::exists(dir / "ran"));
  EXPECT_NE(r.err.find("not running the command: circuit_open for 'deploy'"), std::string::npos) << r.err;
  const auto other = cli({"run", "--share", share, "--share-key", "build", "--", "sh", "-c", "touch ran"});
  EXPECT_EQ(other.status, 0) << other.err;  // another key is not affected
  EXPECT_TRUE(fs::exists(dir / "ran"));
}
