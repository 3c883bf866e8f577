// SPDX-License-Identifier: BSL-1.0
// Integration tests: real libcurl against the fault server on 127.0.0.1.
// Waits between attempts use the manual clock (instant); transfers are real.
#include "backoff/curl/client.hpp"

#include <curl/curl.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "backoff/budget.hpp"
#include "backoff/clock.hpp"
#include "backoff/metrics.hpp"
#include "backoff/host_backoff.hpp"
#include "backoff/stop.hpp"
#include "content.hpp"
#include "fault_server.hpp"
#include <stop_token>
#include <thread>

#include "raw_server.hpp"
#include "sha256.hpp"
#include "wait.hpp"

using namespace std::chrono_literals;
using backoff::stop_reason;
using backoff::testing::fault;
namespace fs = std::filesystem;

namespace {

using backoff::testing::sha256_hex;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string pattern(std::size_t n, unsigned seed = 1) { return backoff::testing::pseudo_random_bytes(n, seed); }

// A TCP socket bound to 127.0.0.1 on a port the kernel chose (in `a`), or -1.
int bound_loopback_socket(sockaddr_in& a) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (s >= 0) ::close(s);
    return -1;
  }
  return s;
}

class CurlClient : public ::testing::Test {
 protected:
  backoff::testing::fault_server server;
  backoff::manual_clock clock;
  fs::path dir;

  void SetUp() override {
    dir = fs::temp_directory_path() / ("backoff-test-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  backoff::curl::client_options opts(std::uint32_t attempts = 6) {
    return {.policy = {.schedule = backoff::exponential{.initial = 100ms, .multiplier = 2.0, .max_delay = 1s},
                       .jitter = backoff::jitter::full(),
                       .stop = backoff::stop::after_attempts(attempts)},
            .attempt_timeout = 2s,
            .connect_timeout = 2s,
            .clock = &clock};
  }

  // A download that only a stop request can end: `raw` sends 1000 bytes of a
  // 100000-byte body, then nothing for a minute, and neither a stall timeout
  // nor a download timeout is set.
  backoff::curl::client_options stoppable(backoff::testing::raw_server& raw, const std::stop_source& stop) {
    const std::string head = "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 100000\r\n\r\n";
    raw.script({{head + std::string(1000, 'a'), 60s}});
    auto o = opts();
    o.stop_token = stop.get_token();
    o.stall_timeout = 0ms;
    o.download_timeout = 0ms;
    return o;
  }
  // Waits (up to 30 s) until the part file of `name` holds `bytes`.
  void wait_for_part(const std::string& name, std::uintmax_t bytes) const {
    std::error_code ec;
    for (int i = 0; i < 6000 && fs::file_size(dir / ("." + name + ".backoff-part"), ec) != bytes; ++i)
      std::this_thread::sleep_for(5ms);
  }

  std::size_t files_in_dir() const {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
  }
};

}  // namespace

TEST_F(CurlClient, EachFaultKindRecovers) {
  const std::string body = pattern(200'000);
  const struct {
    const char* name;
    fault f;
    backoff::http::transport failure;
    long status;
  } cases[] = {
      {"503", fault::status(503), backoff::http::transport::none, 503},
      {"502", fault::status(502), backoff::http::transport::none, 502},
      {"429", fault::status(429, "0"), backoff::http::transport::none, 429},
      {"408", fault::status(408), backoff::http::transport::none, 408},
      {"reset", fault::reset(), backoff::http::transport::connection_reset, 0},
      {"cut", fault::cut(5000), backoff::http::transport::connection_dropped, 200},
      {"wrong-length", fault::wrong_length(), backoff::http::transport::connection_dropped, 200},
  };
  for (const auto& c : cases) {
    const std::string path = std::string("/recover-") + c.name;
    server.add_file(path, body);
    server.script(path, {c.f, c.f});
    backoff::curl::client http(opts());
    const auto r = http.perform({.url = server.url(path)});
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.describe();
    EXPECT_EQ(r.status, 200) << c.name;
    EXPECT_EQ(r.body, body) << c.name;
    ASSERT_EQ(r.attempts.size(), 3u) << c.name;
    EXPECT_EQ(r.attempts[0].failure, c.failure) << c.name;
    EXPECT_EQ(r.attempts[0].status, c.status) << c.name;
    EXPECT_EQ(server.hits(path), 3u) << c.name;
  }
}

TEST_F(CurlClient, SlowResponseTimesOutAndIsRetried) {
  server.script("/slow", {fault::slow(1500ms)});
  auto o = opts();
  o.attempt_timeout = 300ms;
  backoff::curl::client http(o);
  const auto r = http.perform({.url = server.url("/slow")});
  ASSERT_TRUE(r.ok()) << r.describe();
  ASSERT_EQ(r.attempts.size(), 2u);
  EXPECT_EQ(r.attempts[0].failure, backoff::http::transport::timeout);
  EXPECT_EQ(r.attempts[0].curl_code, CURLE_OPERATION_TIMEDOUT);
}

TEST_F(CurlClient, NotFoundIsPermanentAndNotRetried) {
  server.script("/missing", {fault::status(404)});
  backoff::curl::client http(opts());
  const auto r = http.perform({.url = server.url("/missing")});
  EXPECT_EQ(r.reason, stop_reason::permanent);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(server.hits("/missing"), 1u);
  EXPECT_EQ(r.describe(), "gave up after 1 attempt (permanent): HTTP 404");
}

TEST_F(CurlClient, GivesUpAfterTheAttemptLimitWithTheLastStatus) {
  server.script("/down", std::vector<fault>(10, fault::status(503)));
  backoff::curl::client http(opts(4));
  const auto r = http.perform({.url = server.url("/down")});
  EXPECT_EQ(r.reason, stop_reason::exhausted);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(server.hits("/down"), 4u);
}

TEST_F(CurlClient, RetryAfterIsHonoured) {
  server.script("/ra", {fault::status(503, "7")});
  backoff::curl::client http(opts());
  const auto r = http.perform({.url = server.url("/ra")});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.attempts.size(), 2u);
  EXPECT_EQ(r.attempts[0].hint, 7s);
  EXPECT_EQ(r.attempts[0].delay, 7s);  // far above the 100 ms the schedule wanted
  EXPECT_EQ(clock.total_slept(), 7s);
}

TEST_F(CurlClient, RetryAfterDateFormsAndGarbage) {
  // A past date means "now": the schedule's delay (at most 100 ms) applies.
  server.script("/past", {fault::status(503, "Fri, 31 Dec 1999 23:59:59 GMT")});
  // Garbage is ignored: the schedule's delay applies.
  server.script("/garbage", {fault::status(503, "tomorrow-ish")});
  for (const char* path : {"/past", "/garbage"}) {
    backoff::manual_clock c;
    auto o = opts();
    o.clock = &c;
    backoff::curl::client http(o);
    const auto r = http.perform({.url = server.url(path)});
    ASSERT_TRUE(r.ok()) << path;
    EXPECT_LE(c.total_slept(), 100ms) << path;
  }
  EXPECT_FALSE(backoff::curl::client(opts()).perform({.url = server.url("/garbage")}).attempts[0].hint.has_value());
}

TEST_F(CurlClient, RetryAfterIsClampedToTheMaximumHint) {
  server.script("/long", {fault::status(429, "86400")});
  auto o = opts();
  o.hints.max_hint = 5s;
  backoff::curl::client http(o);
  const auto r = http.perform({.url = server.url("/long")});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.attempts[0].hint, 5s);
  EXPECT_EQ(clock.total_slept(), 5s);
}

TEST_F(CurlClient, RetryAfterPastTheDeadlineGivesUpAtOnce) {
  server.script("/later", {fault::status(503, "120")});
  auto o = opts();
  o.deadline = clock.now() + 30s;
  backoff::curl::client http(o);
  const auto r = http.perform({.url = server.url("/later")});
  EXPECT_EQ(r.reason, stop_reason::deadline);
  EXPECT_EQ(server.hits("/later"), 1u);
  EXPECT_EQ(clock.total_slept(), 0s);
}

TEST_F(CurlClient, PostThatReachedTheServerIsNotSentTwice) {
  server.script("/orders", {fault::status(503), fault::ok()});
  backoff::curl::client http(opts());
  const auto r = http.perform({.method = "POST", .url = server.url("/orders"), .body = "{\"qty\": 1}"});
  EXPECT_EQ(r.reason, stop_reason::not_idempotent);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(server.hits("/orders"), 1u);

  server.script("/orders-reset", {fault::reset(), fault::ok()});
  const auto reset = http.perform({.method = "POST", .url = server.url("/orders-reset"), .body = "x"});
  EXPECT_EQ(reset.reason, stop_reason::not_idempotent);
  EXPECT_EQ(server.hits("/orders-reset"), 1u);
  const auto patch = http.perform({.method = "PATCH", .url = server.url("/orders-reset"), .body = "x"});
  EXPECT_TRUE(patch.ok());  // the script is used up: the first PATCH succeeds
}

TEST_F(CurlClient, PostWithIdempotencyKeyIsRetriedWithTheSameKey) {
  server.script("/pay", {fault::status(503), fault::reset(), fault::ok()});
  backoff::curl::client http(opts());
  const auto r = http.perform(
      {.method = "POST", .url = server.url("/pay"), .body = "{\"amount\": 5}", .add_idempotency_key = true});
  ASSERT_TRUE(r.ok()) << r.describe();
  const auto reqs = server.requests("/pay");
  ASSERT_EQ(reqs.size(), 3u);
  const std::string key = reqs[0].headers.at("idempotency-key");
  EXPECT_EQ(key.size(), 36u);
  for (const auto& q : reqs) {
    EXPECT_EQ(q.headers.at("idempotency-key"), key);
    EXPECT_EQ(q.body, "{\"amount\": 5}");
  }
}

TEST_F(CurlClient, PostMarkedIdempotentIsRetried) {
  server.script("/put-like", {fault::status(500)});
  backoff::curl::client http(opts());
  const auto r = http.perform({.method = "POST", .url = server.url("/put-like"), .body = "x", .idempotent = true});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(server.hits("/put-like"), 2u);
}

TEST_F(CurlClient, PostToARefusedPortIsRetriedBecauseItNeverLeft) {
  // A port with nothing listening.
  const std::string url = "http://127.0.0.1:" + std::to_string(backoff::testing::free_port()) + "/x";
  backoff::curl::client http(opts(3));
  const auto r = http.perform({.method = "POST", .url = url, .body = "x"});
  EXPECT_EQ(r.reason, stop_reason::exhausted);
  ASSERT_EQ(r.attempts.size(), 3u);
  EXPECT_EQ(r.attempts[0].failure, backoff::http::transport::connect_failed);
}

TEST_F(CurlClient, AttemptsReuseTheKeptAliveConnection) {
  server.script("/reuse", {fault::status(503), fault::status(503)});
  backoff::curl::client http(opts());
  ASSERT_TRUE(http.perform({.url = server.url("/reuse")}).ok());
  const auto reqs = server.requests("/reuse");
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].remote_port, reqs[1].remote_port);
  EXPECT_EQ(reqs[1].remote_port, reqs[2].remote_port);
}

TEST_F(CurlClient, CallerConfiguredHandleIsRetried) {
  server.script("/legacy", {fault::status(503, "1"), fault::status(502)});
  CURL* easy = curl_easy_init();
  std::string body;
  curl_easy_setopt(easy, CURLOPT_URL, server.url("/legacy").c_str());
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, +[](char* d, std::size_t s, std::size_t n, void* u) {
    static_cast<std::string*>(u)->append(d, s * n);
    return s * n;
  });
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
  int resets = 0;
  const auto r = backoff::curl::perform_with_retry(easy, opts(), {.method = "GET"}, [&](CURL*) {
    body.clear();
    ++resets;
  });
  curl_easy_cleanup(easy);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(body, "ok\n");
  EXPECT_EQ(resets, 2);
  EXPECT_EQ(r.attempts[0].hint, 1s);
  EXPECT_GE(clock.total_slept(), 1s);
}

// An exception from before_retry is the caller's own error: it ends the
// call at once and is not retried (nothing more is sent).
TEST_F(CurlClient, AnExceptionFromBeforeRetryEndsTheCallUnretried) {
  server.script("/throws", {fault::status(503), fault::status(503), fault::status(503)});
  CURL* easy = curl_easy_init();
  curl_easy_setopt(easy, CURLOPT_URL, server.url("/throws").c_str());
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, +[](char*, std::size_t s, std::size_t n, void*) { return s * n; });
  int calls = 0;
  EXPECT_THROW(backoff::curl::perform_with_retry(easy, opts(), {.method = "GET"},
                                                 [&](CURL*) {
                                                   ++calls;
                                                   throw std::runtime_error("cannot rewind the upload");
                                                 }),
               std::runtime_error);
  curl_easy_cleanup(easy);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(server.hits("/throws"), 1u);
}

// A stop requested just before an attempt (here by before_retry) ends the
// call as cancelled, and that attempt is never sent.
TEST_F(CurlClient, AStopRequestedBeforeAnAttemptSendsNothingMore) {
  server.script("/stop", {fault::status(503), fault::status(503)});
  CURL* easy = curl_easy_init();
  curl_easy_setopt(easy, CURLOPT_URL, server.url("/stop").c_str());
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, +[](char*, std::size_t s, std::size_t n, void*) { return s * n; });
  std::stop_source stop;
  auto o = opts();
  o.stop_token = stop.get_token();
  const auto r = backoff::curl::perform_with_retry(easy, o, {.method = "GET"}, [&](CURL*) { stop.request_stop(); });
  curl_easy_cleanup(easy);
  EXPECT_EQ(r.reason, stop_reason::cancelled);
  EXPECT_EQ(server.hits("/stop"), 1u);
  // The second attempt is logged as stopped before it ran: no status (not the
  // first attempt's 503, still on the handle), and curl's "aborted" code.
  ASSERT_EQ(r.attempts.size(), 2u);
  EXPECT_EQ(r.attempts[1].status, 0);
  EXPECT_EQ(r.attempts[1].curl_code, CURLE_ABORTED_BY_CALLBACK);
  EXPECT_EQ(r.status, 0);
}

// The quota an answer announces reaches the pacer, and the request leaves
// its count of requests in flight.
TEST_F(CurlClient, TheQuotaAnAnswerAnnouncesReachesThePacer) {
  server.set_quota(3, 10s, "ietf");
  backoff::quota_pacer quotas;
  auto o = opts();
  o.quotas = &quotas;
  backoff::curl::client http(o);
  ASSERT_TRUE(http.perform({.url = server.url("/q")}).ok());
  const auto s = quotas.snapshot(backoff::curl::host_key(server.url("/q")), clock.now());
  EXPECT_TRUE(s.paced);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.limit, 3u);
  EXPECT_LE(s.remaining, 2u);
}

// A body is sent by its length, not up to its first NUL byte.
TEST_F(CurlClient, ABodyWithANulByteIsSentWhole) {
  const std::string body("a\0b\0c", 5);
  backoff::curl::client http(opts());
  ASSERT_TRUE(http.perform({.method = "POST", .url = server.url("/nul"), .body = body}).ok());
  ASSERT_TRUE(http.perform({.method = "PUT", .url = server.url("/nul"), .body = body}).ok());
  const auto reqs = server.requests("/nul");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].body, body);
  EXPECT_EQ(reqs[1].body, body);
}

TEST_F(CurlClient, Download64MiBSurvivesFiveCutsByteIdentical) {
  const std::string data = pattern(64u << 20, 7);
  server.add_file("/big.bin", data);
  server.script("/big.bin", {fault::cut(3u << 20), fault::cut(9u << 20), fault::cut(1), fault::cut(17u << 20),
                             fault::cut(20u << 20)});
  auto o = opts(8);
  o.attempt_timeout = 60s;
  backoff::curl::client http(o);
  const auto target = dir / "big.bin";
  const auto r = http.download(server.url("/big.bin"), target);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.attempts.size(), 6u);
  EXPECT_EQ(r.resumes, 5u);
  EXPECT_EQ(r.restarts, 0u);
  EXPECT_EQ(r.bytes, data.size());
  EXPECT_EQ(sha256_hex(read_file(target)), sha256_hex(data));
  const auto reqs = server.requests("/big.bin");
  ASSERT_EQ(reqs.size(), 6u);
  EXPECT_EQ(reqs[0].headers.count("range"), 0u);
  EXPECT_EQ(reqs[1].headers.at("range"), "bytes=" + std::to_string(3u << 20) + "-");
  EXPECT_EQ(reqs[1].headers.at("if-range").front(), '"');  // the ETag
  EXPECT_EQ(files_in_dir(), 1u);  // no temporary file left behind
}

// A listener whose queue is full never answers a SYN, so a connection to it
// never opens: only the connect timeout ends the attempt, here at its least,
// 1 ms. The attempt's own timeout (30 s) would end it too, with another message.
TEST_F(CurlClient, TheConnectTimeoutEndsAConnectionThatNeverOpens) {
  sockaddr_in a{};
  const int listener = bound_loopback_socket(a);
  ASSERT_GE(listener, 0);
  ASSERT_EQ(::listen(listener, 0), 0);
  std::vector<int> fillers;  // never accepted: they fill the queue
  for (int i = 0; i < 3; ++i) {
    fillers.push_back(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    (void)::connect(fillers.back(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  auto o = opts(1);
  o.connect_timeout = 1ms;
  o.attempt_timeout = 30s;
  backoff::curl::client http(o);
  const auto r = http.perform({.url = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/"});
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.describe().find("Failed to connect to 127.0.0.1"), std::string::npos) << r.describe();
  for (const int fd : fillers) ::close(fd);
  ::close(listener);
}

// The boundary of what is worth keeping: one byte under a validator is.
TEST_F(CurlClient, AFailedDownloadKeepsEvenOneByteForTheNextCall) {
  server.add_file("/one.bin", pattern(10'000, 6));
  server.script("/one.bin", {fault::cut(1), fault::status(503), fault::status(503), fault::status(503)});
  backoff::curl::client http(opts(3));
  const auto r = http.download(server.url("/one.bin"), dir / "one.bin");
  EXPECT_EQ(r.reason, stop_reason::exhausted);
  EXPECT_EQ(r.partial, dir / ".one.bin.backoff-part");
  ASSERT_TRUE(fs::exists(dir / ".one.bin.backoff-part"));
  EXPECT_EQ(fs::file_size(dir / ".one.bin.backoff-part"), 1u);
}

// A part file is resumed only with its own metadata: without it, or with a
// metadata file of another format, the next download starts over (no Range).
TEST_F(CurlClient, APartFileIsResumedOnlyWithItsOwnMetadata) {
  const std::string data = pattern(20'000, 8);
  server.add_file("/m.bin", data);
  const auto part = dir / ".m.bin.backoff-part";
  const auto meta = dir / ".m.bin.backoff-part.meta";
  for (const std::string how : {"kept", "missing", "another format"}) {
    fs::remove(dir / "m.bin");
    server.script("/m.bin", {fault::cut(5'000), fault::status(503), fault::status(503)});
    backoff::curl::client http(opts(2));
    ASSERT_EQ(http.download(server.url("/m.bin"), dir / "m.bin").reason, stop_reason::exhausted) << how;
    ASSERT_EQ(fs::file_size(part), 5'000u) << how;
    ASSERT_TRUE(fs::exists(meta)) << how;
    if (how == "missing") fs::remove(meta);
    if (how == "another format") {
      std::string text = read_file(meta);
      text.replace(0, text.find('\n'), "backoff-part 99");
      std::ofstream(meta, std::ios::trunc) << text;
    }
    const auto before = server.requests("/m.bin").size();
    const auto r = http.download(server.url("/m.bin"), dir / "m.bin");
    ASSERT_TRUE(r.ok()) << how << ": " << r.error;
    EXPECT_EQ(read_file(dir / "m.bin"), data) << how;
    const auto reqs = server.requests("/m.bin");
    ASSERT_EQ(reqs.size(), before + 1) << how;
    EXPECT_EQ(reqs.back().headers.count("range"), how == "kept" ? 1u : 0u) << how;
    EXPECT_EQ(r.resumes, how == "kept" ? 1u : 0u) << how;
    EXPECT_EQ(r.restarts, 0u) << how;
  }
}

// A first answer without a length (closed by a reset), then a 206 that names
// the whole length and is cut too: the part's metadata learns the length from
// the 206, so that the next run knows it.
TEST_F(CurlClient, AResumeThatLearnsTheLengthWritesItDown) {
  const std::string data = pattern(1000, 9);
  backoff::testing::raw_server raw;
  backoff::testing::raw_reply unsized{"HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n" + data.substr(0, 500)};
  unsized.reset = true;
  raw.script({unsized, backoff::testing::raw_reply::http(206, {{"ETag", "\"v1\""}, {"Content-Range", "bytes 500-999/1000"}},
                                                         data.substr(500, 200), 500),
              backoff::testing::raw_reply::http(503, {})});
  backoff::curl::client http(opts(2));
  const auto r = http.download(raw.url("/f"), dir / "f");
  EXPECT_EQ(r.reason, stop_reason::exhausted);
  EXPECT_EQ(fs::file_size(dir / ".f.backoff-part"), 700u);
  const std::string meta = read_file(dir / ".f.backoff-part.meta");
  EXPECT_NE(meta.find("\nlength 1000\n"), std::string::npos) << meta;
}

// Bytes in a part file that no metadata describes are nobody's: they are
// dropped when the download opens the part, not left there when it fails.
TEST_F(CurlClient, AnUndescribedPartIsDroppedEvenWhenTheDownloadFails) {
  server.add_file("/u.bin", pattern(10'000, 2));
  server.script("/u.bin", {fault::status(503), fault::status(503)});
  std::ofstream(dir / ".u.bin.backoff-part", std::ios::binary) << std::string(5000, 'j');
  backoff::curl::client http(opts(2));
  const auto r = http.download(server.url("/u.bin"), dir / "u.bin");
  EXPECT_EQ(r.reason, stop_reason::exhausted);
  std::error_code ec;
  EXPECT_NE(fs::file_size(dir / ".u.bin.backoff-part", ec), 5000u);
  EXPECT_FALSE(fs::exists(dir / "u.bin"));
}

TEST_F(CurlClient, DownloadThatMakesNoProgressGivesUpAndLeavesNoFile) {
  server.add_file("/doomed.bin", pattern(100'000));
  server.script("/doomed.bin", std::vector<fault>(10, fault::cut(0)));
  backoff::curl::client http(opts(3));
  const auto target = dir / "doomed.bin";
  const auto r = http.download(server.url("/doomed.bin"), target);
  EXPECT_EQ(r.reason, stop_reason::exhausted);
  EXPECT_EQ(r.attempts.size(), 3u);
  EXPECT_FALSE(fs::exists(target));
  EXPECT_EQ(files_in_dir(), 0u);  // nothing worth resuming was kept
  EXPECT_TRUE(r.partial.empty());
  EXPECT_FALSE(r.error.empty());
}

TEST_F(CurlClient, CutsThatMakeProgressDoNotUseUpTheAttempts) {
  const std::string data = pattern(100'000, 4);
  server.add_file("/steady.bin", data);
  // Nine cuts, each after 10,000 more bytes, with three attempts allowed: every
  // attempt advanced the download, so none counts against the limit.
  std::vector<fault> cuts;
  for (int i = 0; i < 9; ++i) cuts.push_back(fault::cut(10'000));
  server.script("/steady.bin", cuts);
  backoff::curl::client http(opts(3));
  const auto r = http.download(server.url("/steady.bin"), dir / "steady.bin");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.attempts.size(), 10u);
  EXPECT_EQ(r.resumes, 9u);
  EXPECT_EQ(read_file(dir / "steady.bin"), data);
  EXPECT_EQ(files_in_dir(), 1u);
}

TEST_F(CurlClient, AFailedDownloadKeepsItsPartForTheNextCallToResume) {
  const std::string data = pattern(100'000, 5);
  server.add_file("/later.bin", data);
  server.script("/later.bin", {fault::cut(30'000), fault::status(503), fault::status(503), fault::status(503)});
  const auto target = dir / "later.bin";
  {
    backoff::curl::client http(opts(3));
    const auto r = http.download(server.url("/later.bin"), target);
    EXPECT_EQ(r.reason, stop_reason::exhausted);
    EXPECT_FALSE(fs::exists(target));
    EXPECT_EQ(r.partial, dir / ".later.bin.backoff-part");
    EXPECT_EQ(fs::file_size(r.partial), 30'000u);
  }
  backoff::curl::client http(opts(3));
  const auto r = http.download(server.url("/later.bin"), target);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.attempts.size(), 1u);
  EXPECT_EQ(r.resumes, 1u);
  EXPECT_EQ(server.requests("/later.bin").back().headers.at("range"), "bytes=30000-");
  EXPECT_EQ(read_file(target), data);
  EXPECT_EQ(files_in_dir(), 1u);  // the part and its metadata are gone
}

TEST_F(CurlClient, AStopRequestEndsATransferInFlight) {
  backoff::testing::raw_server raw;
  std::stop_source stop;
  backoff::curl::client http(stoppable(raw, stop));
  std::thread canceller([&] {
    wait_for_part("f.bin", 1000);  // stop once the client has written the bytes it was sent
    stop.request_stop();
  });
  const auto started = std::chrono::steady_clock::now();
  const auto r = http.download(raw.url("/f"), dir / "f.bin");
  const auto took = std::chrono::steady_clock::now() - started;
  canceller.join();
  EXPECT_EQ(r.reason, stop_reason::cancelled);
  EXPECT_LT(took, 20s);  // not the minute of silence
  EXPECT_EQ(r.attempts.size(), 1u);
  EXPECT_EQ(r.partial, dir / ".f.bin.backoff-part");  // kept for a later resume
  EXPECT_EQ(fs::file_size(r.partial), 1000u);
  EXPECT_FALSE(fs::exists(dir / "f.bin"));
}

TEST_F(CurlClient, AStallEndsAnAttemptOfPerformToo) {
  backoff::testing::raw_server raw;
  raw.script({{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 60s},
              backoff::testing::raw_reply::http(200, {}, "0123456789")});
  auto o = opts();
  o.attempt_timeout = 0ms;
  o.stall_timeout = 200ms;
  backoff::curl::client http(o);
  const auto r = http.perform({.url = raw.url("/p")});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.body, "0123456789");
  ASSERT_EQ(r.attempts.size(), 2u);
  EXPECT_EQ(r.attempts[0].error, "no data for 200ms");
  EXPECT_EQ(r.attempts[0].failure, backoff::http::transport::timeout);
}

TEST_F(CurlClient, DownloadDoesNotReplaceAnExistingFileWhenItFails) {
  server.script("/gone.bin", {fault::status(404)});
  const auto target = dir / "keep.bin";
  std::ofstream(target) << "previous version";
  backoff::curl::client http(opts());
  const auto r = http.download(server.url("/gone.bin"), target);
  EXPECT_EQ(r.reason, stop_reason::permanent);
  EXPECT_EQ(read_file(target), "previous version");
  EXPECT_EQ(files_in_dir(), 1u);
}

// Two downloads to one target at once (two cron runs that overlap): the
// second must not write into the part file the first is filling.
TEST_F(CurlClient, ASecondDownloadToTheSameTargetIsRefusedWhileTheFirstRuns) {
  backoff::testing::raw_server raw;
  std::stop_source stop;
  const auto o = stoppable(raw, stop);
  backoff::curl::download_result first;
  std::thread t([&] { first = backoff::curl::client(o).download(raw.url("/f"), dir / "f.bin"); });
  wait_for_part("f.bin", 1000);
  const fs::path part = dir / ".f.bin.backoff-part";
  auto once = opts(1);
  once.stall_timeout = 200ms;  // should it get as far as a request, it ends soon
  const auto second = backoff::curl::client(once).download(raw.url("/f"), dir / "f.bin");
  stop.request_stop();
  t.join();
  EXPECT_FALSE(second.ok());
  EXPECT_TRUE(second.file_error);
  EXPECT_NE(second.error.find("another download is writing"), std::string::npos) << second.error;
  EXPECT_EQ(second.attempts.size(), 0u);  // refused before any request
  EXPECT_EQ(first.reason, stop_reason::cancelled);
  EXPECT_EQ(fs::file_size(part), 1000u);  // the first one's bytes, untouched
  EXPECT_FALSE(fs::exists(dir / "f.bin"));
}

TEST_F(CurlClient, DownloadStartsOverWhenTheFileChanged) {
  const std::string v1 = pattern(300'000, 1), v2 = pattern(250'000, 2);
  server.add_file("/changing.bin", v1);
  server.script("/changing.bin", {fault::cut(100'000)});
  auto o = opts();
  o.on_attempt = [&](const backoff::curl::attempt_log& a) {
    if (a.number == 1) server.add_file("/changing.bin", v2);  // new ETag: If-Range no longer matches
  };
  backoff::curl::client http(o);
  const auto r = http.download(server.url("/changing.bin"), dir / "changing.bin");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.restarts, 1u);
  EXPECT_EQ(r.resumes, 0u);
  EXPECT_EQ(read_file(dir / "changing.bin"), v2);
}

TEST_F(CurlClient, DownloadHandles416AfterAWrongContentLength) {
  const std::string data = pattern(50'000, 3);
  server.add_file("/short.bin", data);
  // Announces 64 bytes more than it sends: the client asks for the rest and
  // gets 416 "bytes */50000" under the same ETag: it already holds every byte.
  server.script("/short.bin", {fault::wrong_length()});
  backoff::curl::client http(opts());
  const auto r = http.download(server.url("/short.bin"), dir / "short.bin");
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_EQ(r.attempts.size(), 2u);
  EXPECT_EQ(r.attempts[1].status, 416);
  EXPECT_EQ(r.restarts, 0u);
  EXPECT_EQ(read_file(dir / "short.bin"), data);
}

TEST_F(CurlClient, ARetryBudgetSharedByClientsEndsRetrying) {
  auto budget = backoff::retry_budget::aws_standard({.capacity = 10});  // two retries in all
  server.script("/busy", std::vector<fault>(20, fault::status(503)));
  auto o = opts(10);
  o.gate = &budget;
  backoff::curl::client a(o), b(o);
  const auto ra = a.perform({.url = server.url("/busy")});
  EXPECT_EQ(ra.reason, stop_reason::budget_exhausted);
  EXPECT_EQ(ra.attempts.size(), 3u);
  const auto rb = b.perform({.url = server.url("/busy")});  // the other client finds the budget spent
  EXPECT_EQ(rb.reason, stop_reason::budget_exhausted);
  EXPECT_EQ(rb.attempts.size(), 1u);
  EXPECT_EQ(server.hits("/busy"), 4u);
}

TEST_F(CurlClient, RetryAfterHoldsBackEveryRequestToTheHost) {
  backoff::host_backoff hosts;
  server.script("/a", {fault::status(429, "30")});
  auto o = opts();
  o.hosts = &hosts;
  backoff::curl::client first(o), second(o);
  const auto start = clock.now();
  ASSERT_TRUE(first.perform({.url = server.url("/a")}).ok());
  EXPECT_GE(clock.now() - start, 30s);
  // Another request to the same host, after the first recovered: the host had
  // one failure and one success, so no extra wait beyond what is already passed.
  const auto before = clock.now();
  ASSERT_TRUE(second.perform({.url = server.url("/b")}).ok());
  EXPECT_LT(clock.now() - before, 2s);
  // A request made while the host is held by that Retry-After waits for it
  // too: here, one made (on the same virtual clock) right after the 429.
  server.script("/a", {fault::status(429, "30")});
  backoff::time_point answered{}, other_done{};
  auto hooked = opts();
  hooked.hosts = &hosts;
  hooked.on_attempt = [&](const backoff::curl::attempt_log& a) {
    if (a.status != 429) return;
    answered = clock.now();
    EXPECT_TRUE(second.perform({.url = server.url("/b")}).ok());
    other_done = clock.now();
  };
  ASSERT_TRUE(backoff::curl::client(hooked).perform({.url = server.url("/a")}).ok());
  EXPECT_GE(other_done - answered, 30s);
  // And while a host is held, a new request waits before its first attempt.
  // The key is host:port: another port of the same machine is another server.
  EXPECT_EQ(backoff::curl::host_key(server.url("/c")), "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(backoff::curl::host_key("https://Example.com/x"), "example.com:443");
  EXPECT_EQ(backoff::curl::host_key("not a url"), "");
  hosts.hold("127.0.0.1:1", clock.now(), 1h);  // another port: no effect
  hosts.hold(backoff::curl::host_key(server.url("/c")), clock.now(), 45s);
  const auto held = clock.now();
  ASSERT_TRUE(second.perform({.url = server.url("/c")}).ok());
  EXPECT_GE(clock.now() - held, 45s);
  EXPECT_LT(clock.now() - held, 46s);
  EXPECT_EQ(server.hits("/c"), 1u);
}

// RFC 9110 §15.6.4: a 503's Retry-After is for retrying that request. A lone
// one delays its own retry and not the other requests to the host; once the
// host keeps failing it holds them all; hint_scope::host makes every hint
// host-wide, hint_scope::request none.
TEST_F(CurlClient, ALone503sRetryAfterDelaysOnlyItsOwnRetry) {
  auto run = [&](backoff::curl::hint_scope scope, int failing_before) {
    backoff::host_backoff hosts({.schedule = backoff::constant{.delay = backoff::duration{0}}});
    const std::string key = backoff::curl::host_key(server.url("/a"));
    for (int i = 0; i < failing_before; ++i) hosts.on_failure(key, clock.now());
    server.script("/a", {fault::status(503, "30")});
    auto o = opts();
    o.hosts = &hosts;
    o.retry_after_scope = scope;
    backoff::curl::client other(o);
    backoff::duration other_waited{};
    auto hooked = o;
    hooked.on_attempt = [&](const backoff::curl::attempt_log& a) {
      if (a.status != 503) return;
      const auto t = clock.now();
      EXPECT_TRUE(other.perform({.url = server.url("/b")}).ok());
      other_waited = clock.now() - t;
    };
    const auto t0 = clock.now();
    EXPECT_TRUE(backoff::curl::client(hooked).perform({.url = server.url("/a")}).ok());
    EXPECT_GE(clock.now() - t0, 30s);  // its own retry always waits
    return other_waited;
  };
  EXPECT_LT(run(backoff::curl::hint_scope::by_status, 0), 2s);   // a lone 503: the others go on
  EXPECT_GE(run(backoff::curl::hint_scope::by_status, 3), 30s);  // the host keeps failing: all wait
  EXPECT_LT(run(backoff::curl::hint_scope::by_status, 1), 2s);   // below the threshold: not yet
  EXPECT_GE(run(backoff::curl::hint_scope::host, 0), 30s);
  EXPECT_LT(run(backoff::curl::hint_scope::request, 5), 2s);
}

TEST_F(CurlClient, BadRequestsAreRejectedWithAMessage) {
  backoff::curl::client http(opts());
  try {
    http.perform({.url = ""});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "backoff::curl::request: url must not be empty");
  }
  EXPECT_THROW(http.download(server.url("/x"), ""), std::invalid_argument);
  const auto r = http.download(server.url("/x"), dir / "no-such-dir" / "file");
  EXPECT_EQ(r.reason, stop_reason::permanent);
  EXPECT_NE(r.error.find("cannot create"), std::string::npos) << r.error;
}

// An observer on the client hears every request's attempts: its retries are
// http.request.resend_count (OpenTelemetry), here 2 for the first request and
// 0 for the second; a 404 ends permanent.
TEST_F(CurlClient, AnObserverCountsResendsPerRequest) {
  server.script("/r", {fault::status(503), fault::status(503)});
  server.script("/missing", {fault::status(404)});
  backoff::metrics m;
  auto o = opts();
  o.observer = &m;
  backoff::curl::client http(o);
  ASSERT_TRUE(http.perform({.url = server.url("/r")}).ok());
  EXPECT_EQ(m.retries(), 2u);
  ASSERT_TRUE(http.perform({.url = server.url("/r")}).ok());
  EXPECT_EQ(m.retries(), 2u);
  EXPECT_EQ(http.perform({.url = server.url("/missing")}).reason, stop_reason::permanent);
  EXPECT_EQ(m.attempts(backoff::attempt_outcome::retryable), 2u);
  EXPECT_EQ(m.attempts(backoff::attempt_outcome::success), 2u);
  EXPECT_EQ(m.attempts(backoff::attempt_outcome::permanent), 1u);
  EXPECT_EQ(m.operations(stop_reason::success), 2u);
  EXPECT_EQ(m.operations(stop_reason::permanent), 1u);
}
