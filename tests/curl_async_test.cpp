// SPDX-License-Identifier: BSL-1.0
// backoff::curl::async_client: many downloads at once on one io_context thread,
// against the fault server and the raw scripted server on loopback.
#include "backoff/curl/async_client.hpp"
#include "backoff/metrics.hpp"

#include <gtest/gtest.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include "content.hpp"
#include "internal.hpp"  // src/curl: the download job a hedged transfer runs
#include "fault_server.hpp"
#include "attempt_numbers.hpp"
#include "raw_server.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using backoff::stop_reason;
using backoff::testing::fault;

namespace {

std::string content(std::size_t n, unsigned seed) { return backoff::testing::pseudo_random_bytes(n, seed); }

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class AsyncClient : public ::testing::Test {
 protected:
  fs::path dir;
  asio::io_context ctx;
  void SetUp() override {
    dir = fs::temp_directory_path() / ("backoff-async-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

 public:
  static backoff::curl::client_options opts(std::uint32_t attempts = 6) {
    return {.policy = {.schedule = backoff::exponential{.initial = 10ms, .multiplier = 2.0, .max_delay = 100ms},
                       .jitter = backoff::jitter::full(),
                       .stop = backoff::stop::after_attempts(attempts)},
            .connect_timeout = 5s};
  }
};

}  // namespace

TEST_F(AsyncClient, TwentyDownloadsThroughFaultsOnOneThread) {
  backoff::testing::fault_server server;
  std::vector<std::string> files;
  for (unsigned i = 0; i < 20; ++i) {
    files.push_back(content(200'000 + i * 1000, i + 1));
    const std::string path = "/f" + std::to_string(i);
    server.add_file(path, files.back());
    switch (i % 4) {
      case 0: server.script(path, {fault::status(503, "0")}); break;
      case 1: server.script(path, {fault::cut(50'000), fault::cut(20'000)}); break;
      case 2: server.script(path, {fault::reset(), fault::status(429, "0")}); break;
      default: break;
    }
  }
  backoff::curl::async_client http(ctx.get_executor(), opts());
  std::vector<std::optional<backoff::curl::download_result>> got(files.size());
  const auto caller = std::this_thread::get_id();
  std::thread::id ran_on;
  for (std::size_t i = 0; i < files.size(); ++i)
    http.async_download(server.url("/f" + std::to_string(i)), dir / ("f" + std::to_string(i)),
                        [&, i](backoff::curl::download_result r) {
                          got[i] = std::move(r);
                          ran_on = std::this_thread::get_id();
                        });
  EXPECT_EQ(http.active(), files.size());
  ctx.run();
  EXPECT_EQ(ran_on, caller);
  EXPECT_EQ(http.active(), 0u);
  for (std::size_t i = 0; i < files.size(); ++i) {
    ASSERT_TRUE(got[i]) << i;
    EXPECT_TRUE(got[i]->ok()) << i << ": " << got[i]->error;
    EXPECT_EQ(read_file(dir / ("f" + std::to_string(i))), files[i]) << i;
  }
  EXPECT_GE(got[1]->resumes, 1u);  // the cut ones continued with Range
  EXPECT_EQ(got[0]->attempts.size(), 2u);
  EXPECT_EQ(got[0]->attempts[0].status, 503);
}

// max_host_connections caps what one host sees at once: six downloads, each
// held by the server until released, and never a third request while two are held.
TEST_F(AsyncClient, MaxHostConnectionsCapsTheRequestsToOneHost) {
  backoff::testing::fault_server server;
  for (int i = 0; i < 6; ++i) {
    server.add_file("/h" + std::to_string(i), "held " + std::to_string(i));
    server.script("/h" + std::to_string(i), {fault::hold()});
  }
  backoff::curl::async_client http(ctx.get_executor(), opts(), 2);
  int done = 0;
  for (int i = 0; i < 6; ++i)
    http.async_download(server.url("/h" + std::to_string(i)), dir / ("h" + std::to_string(i)),
                        [&](backoff::curl::download_result r) {
                          EXPECT_TRUE(r.ok()) << r.error;
                          ++done;
                        });
  std::thread loop([&] { ctx.run(); });
  EXPECT_TRUE(server.wait_held(2, 2));
  EXPECT_FALSE(server.wait_held(3, 3, 1s));  // the third waits for a connection
  server.release(6);
  loop.join();
  EXPECT_EQ(done, 6);
  EXPECT_EQ(server.max_in_flight(), 2u);
}

TEST_F(AsyncClient, ARefusingHostFailsOnlyItsOwnTransfers) {
  backoff::testing::fault_server server;
  const std::string data = content(10'000, 9);
  server.add_file("/ok", data);
  int closed_port = 0;
  {
    backoff::testing::raw_server gone;  // a port that was open and is now closed
    closed_port = gone.port();
  }
  backoff::curl::async_client http(ctx.get_executor(), opts(3));
  std::optional<backoff::curl::download_result> good, bad;
  http.async_download(server.url("/ok"), dir / "ok", [&](backoff::curl::download_result r) { good = std::move(r); });
  http.async_download("http://127.0.0.1:" + std::to_string(closed_port) + "/x", dir / "x",
                      [&](backoff::curl::download_result r) { bad = std::move(r); });
  ctx.run();
  ASSERT_TRUE(good && bad);
  EXPECT_TRUE(good->ok()) << good->error;
  EXPECT_EQ(read_file(dir / "ok"), data);
  EXPECT_EQ(bad->reason, stop_reason::exhausted);
  EXPECT_EQ(bad->attempts.size(), 3u);
  EXPECT_EQ(bad->attempts[0].failure, backoff::http::transport::connect_failed);
  EXPECT_FALSE(fs::exists(dir / "x"));
}

TEST_F(AsyncClient, ACancellationSlotEndsATransferInFlight) {
  backoff::testing::raw_server raw;
  raw.script({{"HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 100000\r\n\r\n" + std::string(1000, 'a'), 60s}});
  auto o = opts();
  o.stall_timeout = 0ms;
  backoff::curl::async_client http(ctx.get_executor(), o);
  asio::cancellation_signal cancel;
  std::optional<backoff::curl::download_result> got;
  http.async_download(raw.url("/f"), dir / "f.bin",
                      asio::bind_cancellation_slot(cancel.slot(), [&](backoff::curl::download_result r) { got = std::move(r); }));
  asio::steady_timer poll(ctx);
  std::function<void()> watch = [&] {
    if (fs::exists(dir / ".f.bin.backoff-part") && fs::file_size(dir / ".f.bin.backoff-part") == 1000) {
      cancel.emit(asio::cancellation_type::terminal);
      return;
    }
    poll.expires_after(5ms);
    poll.async_wait([&](std::error_code) { watch(); });
  };
  watch();
  const auto started = std::chrono::steady_clock::now();
  ctx.run();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->reason, stop_reason::cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 30s);  // not the minute of silence
  EXPECT_EQ(got->partial, dir / ".f.bin.backoff-part");          // kept for resuming
  EXPECT_FALSE(fs::exists(dir / "f.bin"));
}

TEST_F(AsyncClient, ACancelDuringAWaitEndsItAtOnce) {
  backoff::testing::fault_server server;
  server.add_file("/f", content(1000, 3));
  server.script("/f", {fault::status(503)});
  auto o = opts();
  o.policy.schedule = backoff::constant{.delay = 40s};  // the wait the cancel must cut short
  o.policy.jitter = backoff::jitter::none();
  asio::cancellation_signal cancel;
  // After the first attempt the client decides, then starts its wait: a cancel
  // posted from the hook arrives during that wait, not during a transfer.
  o.on_attempt = [&](const backoff::curl::attempt_log&) {
    asio::post(ctx, [&] { cancel.emit(asio::cancellation_type::terminal); });
  };
  backoff::curl::async_client http(ctx.get_executor(), o);
  std::optional<backoff::curl::download_result> got;
  http.async_download(server.url("/f"), dir / "f.bin",
                      asio::bind_cancellation_slot(cancel.slot(), [&](backoff::curl::download_result r) { got = std::move(r); }));
  const auto started = std::chrono::steady_clock::now();
  ctx.run();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->reason, stop_reason::cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 20s);  // not the 40 s wait
  EXPECT_EQ(got->attempts.size(), 1u);
  EXPECT_EQ(server.hits("/f"), 1u);
  EXPECT_FALSE(fs::exists(dir / "f.bin"));
}

TEST_F(AsyncClient, DestroyingTheClientCancelsWhatIsRunning) {
  backoff::testing::raw_server raw;
  raw.script({{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab", 60s}});
  std::optional<backoff::curl::download_result> got;
  backoff::metrics m;
  {
    auto o = opts();
    o.observer = &m;
    backoff::curl::async_client http(ctx.get_executor(), o);
    http.async_download(raw.url("/f"), dir / "f.bin", [&](backoff::curl::download_result r) { got = std::move(r); });
    ctx.run_for(200ms);
  }
  ctx.restart();
  ctx.run();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->reason, stop_reason::cancelled);
  // The attempt in flight has no outcome: the observer hears it cancelled.
  EXPECT_EQ(m.started(), 1u);
  EXPECT_EQ(m.cancelled(), 1u);
  EXPECT_EQ(m.operations(stop_reason::cancelled), 1u);
}

// Destroyed while a download waits between attempts (nothing in flight):
// the handler still runs, cancelled, with the attempt that failed logged and
// nothing more sent.
TEST_F(AsyncClient, DestroyingTheClientDuringAWaitCancelsIt) {
  backoff::testing::fault_server server;
  server.add_file("/w", content(1000, 7));
  server.script("/w", {fault::status(503)});
  std::optional<backoff::curl::download_result> got;
  backoff::metrics m;
  {
    auto o = opts();
    o.policy.schedule = backoff::constant{.delay = 60s};
    o.policy.jitter = backoff::jitter::none();
    o.observer = &m;
    backoff::curl::async_client http(ctx.get_executor(), o);
    http.async_download(server.url("/w"), dir / "w", [&](backoff::curl::download_result r) { got = std::move(r); });
    while (m.retries() == 0 && !got) ctx.run_one_for(5s);  // until the wait begins
  }
  ctx.restart();
  ctx.run();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->reason, stop_reason::cancelled);
  ASSERT_EQ(got->attempts.size(), 1u);
  EXPECT_EQ(got->attempts[0].status, 503);
  EXPECT_EQ(server.hits("/w"), 1u);
  EXPECT_FALSE(fs::exists(dir / "w"));
  EXPECT_EQ(m.operations(stop_reason::cancelled), 1u);
}

TEST_F(AsyncClient, RequestsFollowTheRulesOfPerform) {
  backoff::testing::fault_server server;
  server.script("/api", {fault::status(503, "0"), fault::status(429, "0")});
  server.script("/orders", {fault::status(503)});
  backoff::curl::async_client http(ctx.get_executor(), opts());
  std::optional<backoff::curl::response> get, post, keyed;
  http.async_perform({.url = server.url("/api")}, [&](backoff::curl::response r) { get = std::move(r); });
  // A POST that got an answer is not re-sent without a key...
  http.async_perform({.method = "POST", .url = server.url("/orders"), .body = "{}"},
                     [&](backoff::curl::response r) { post = std::move(r); });
  ctx.run();
  ASSERT_TRUE(get && post);
  EXPECT_TRUE(get->ok()) << get->describe();
  EXPECT_EQ(get->attempts.size(), 3u);
  EXPECT_EQ(get->body, "ok\n");
  EXPECT_EQ(post->reason, stop_reason::not_idempotent);
  EXPECT_EQ(server.hits("/orders"), 1u);
  // ...and is with one, which stays the same on every attempt.
  server.script("/keyed", {fault::status(503)});
  http.async_perform({.method = "POST", .url = server.url("/keyed"), .body = "{}", .add_idempotency_key = true},
                     [&](backoff::curl::response r) { keyed = std::move(r); });
  ctx.restart();
  ctx.run();
  ASSERT_TRUE(keyed);
  EXPECT_TRUE(keyed->ok()) << keyed->describe();
  const auto reqs = server.requests("/keyed");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].headers.at("idempotency-key"), reqs[1].headers.at("idempotency-key"));
}

TEST_F(AsyncClient, ABadRequestFailsWithAMessage) {
  backoff::curl::async_client http(ctx.get_executor(), opts());
  std::optional<backoff::curl::response> got;
  http.async_perform({.url = ""}, [&](backoff::curl::response r) { got = std::move(r); });
  ctx.run();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->reason, stop_reason::permanent);
  EXPECT_NE(got->describe().find("url must not be empty"), std::string::npos) << got->describe();
}

TEST_F(AsyncClient, AStallShorterThanASecondEndsTheAttempt) {
  // 1000 bytes, then silence with the connection open: each attempt must end
  // after stall_timeout (250 ms, finer than curl's whole-second low-speed
  // limit), and the next one resume from the part file.
  backoff::testing::raw_server raw;
  const std::string data = content(3000, 4);
  raw.script({{"HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 3000\r\n\r\n" + data.substr(0, 1000), 60s},
              {"HTTP/1.1 206 Partial Content\r\nETag: \"v1\"\r\nContent-Range: bytes 1000-2999/3000\r\n"
               "Content-Length: 2000\r\n\r\n" + data.substr(1000)}});
  auto o = opts(3);
  o.stall_timeout = 250ms;
  backoff::curl::async_client http(ctx.get_executor(), o);
  std::optional<backoff::curl::download_result> got;
  http.async_download(raw.url("/f"), dir / "f.bin", [&](backoff::curl::download_result r) { got = std::move(r); });
  ctx.run();
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->ok()) << got->error;
  ASSERT_EQ(got->attempts.size(), 2u);
  EXPECT_EQ(got->attempts[0].error, "no data for 250ms (1000 B kept)");
  EXPECT_EQ(got->attempts[0].failure, backoff::http::transport::timeout);
  EXPECT_EQ(read_file(dir / "f.bin"), data);
  EXPECT_EQ(got->resumes, 1u);
}

namespace {
// Retries: "ask again in 30 ms", and when asked again, "go in 60 ms" (a plain
// wait). First attempts go at once.
struct recheck_then_wait final : backoff::gate {
  int retries_asked = 0, rechecks = 0;
  backoff::gate_decision acquire(const backoff::gate_request& r) noexcept override {
    if (!r.retry) return {};
    if (!r.recheck) {
      ++retries_asked;
      return backoff::gate_decision::ask_again(r.now + 30ms);
    }
    ++rechecks;
    return {true, stop_reason::success, r.now + 60ms, false};
  }
  void record(const backoff::gate_outcome&) noexcept override {}
};
}  // namespace

// A download's retry whose gate says "ask again", and then, asked again, "wait
// 60 ms": the download waits, then retries and completes (it once waited for
// a recheck that would never come).
TEST_F(AsyncClient, ARecheckAnsweredWithAPlainWaitStillRetries) {
  backoff::testing::fault_server server;
  server.add_file("/f", "after the wait");
  for (const unsigned connections : {1u, 4u}) {  // one transfer, and the segmented download's loop
    server.script("/f", {fault::status(503)});
    recheck_then_wait g;
    auto o = opts();
    o.gate = &g;
    o.segments.connections = connections;
    backoff::curl::async_client http(ctx.get_executor(), o);
    std::optional<backoff::curl::download_result> out;
    const auto target = dir / ("f" + std::to_string(connections));
    http.async_download(server.url("/f"), target, [&](backoff::curl::download_result r) { out = std::move(r); });
    ctx.restart();
    ctx.run_for(10s);
    ASSERT_TRUE(out) << connections << ": the download never finished";
    EXPECT_EQ(out->reason, stop_reason::success) << out->error;
    EXPECT_EQ(read_file(target), "after the wait");
    EXPECT_EQ(g.retries_asked, 1);
    EXPECT_EQ(g.rechecks, 1);
  }
  EXPECT_EQ(server.hits("/f"), 4u);
}

// A segmented download tells its observer each request's start and end: a
// first reply cut after 1000 bytes (the file has split by then), a 503 on the
// range that resumes it, then the rest: every request the server saw was
// started and ended once, and the download ends as one successful operation.
TEST_F(AsyncClient, ASegmentedDownloadTellsTheObserverEveryRequest) {
  backoff::testing::fault_server server;
  std::string content(4u << 20, '\0');
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>('a' + (i * 7919) % 26);
  server.add_file("/big", content);
  server.script("/big", {fault::cut(1000), fault::status(503)});
  backoff::metrics m;
  auto o = opts();
  o.observer = &m;
  o.segments.connections = 4;
  o.segments.min_split = 256u << 10;
  backoff::curl::async_client http(ctx.get_executor(), o);
  std::optional<backoff::curl::download_result> out;
  const auto target = dir / "big";
  http.async_download(server.url("/big"), target, [&](backoff::curl::download_result r) { out = std::move(r); });
  ctx.restart();
  ctx.run_for(20s);
  ASSERT_TRUE(out) << "the download never finished";
  EXPECT_EQ(out->reason, stop_reason::success) << out->error;
  EXPECT_EQ(read_file(target), content);
  const std::uint64_t ended = m.attempts(backoff::attempt_outcome::success) +
                              m.attempts(backoff::attempt_outcome::retryable) +
                              m.attempts(backoff::attempt_outcome::permanent);
  EXPECT_EQ(m.started(), server.hits("/big"));
  EXPECT_EQ(ended, server.hits("/big"));
  EXPECT_GE(m.attempts(backoff::attempt_outcome::retryable), 2u);
  EXPECT_EQ(m.operations(stop_reason::success), 1u);
}

// A body larger than the socket buffers: curl must wait until the socket can
// be written again (CURL_POLL_OUT), and the client must tell it when. 48 MiB
// arrive whole, on one attempt.
TEST_F(AsyncClient, ABodyLargerThanTheSocketBuffersIsSentWhole) {
  backoff::testing::fault_server server;
  std::string body(48u << 20, 'x');
  for (std::size_t i = 0; i < body.size(); i += 4096) body[i] = static_cast<char>('a' + (i / 4096) % 26);
  auto o = opts(1);
  o.stall_timeout = 5s;
  backoff::curl::async_client http(ctx.get_executor(), o);
  std::optional<backoff::curl::response> out;
  http.async_perform({.method = "PUT",
                      .url = server.url("/upload"),
                      .headers = {{"Content-Type", "application/octet-stream"}},
                      .body = body},
                     [&](backoff::curl::response r) { out = std::move(r); });
  ctx.restart();
  ctx.run_for(30s);
  ASSERT_TRUE(out) << "the upload never finished";
  EXPECT_EQ(out->reason, stop_reason::success) << out->describe() << " " << (out->attempts.empty() ? "" : out->attempts[0].error);
  const auto seen = server.requests("/upload");
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body.size(), body.size());
  EXPECT_TRUE(seen[0].body == body);
}

// --- hedged requests (client_options::hedge) --------------------------------------------------

namespace {
backoff::curl::client_options hedged(std::uint32_t copies, std::chrono::milliseconds delay, std::uint32_t attempts = 6) {
  auto o = AsyncClient::opts(attempts);
  o.hedge = {.max_attempts = copies, .delay = delay};
  return o;
}
}  // namespace

// The first request is held; the hedge, sent 100 ms later, is answered and
// owns the file. The held copy is cancelled and, when the server lets it go,
// writes nothing: the file is exactly the content, one attempt logged, copy 2.
// (The server holds whichever request arrives first: the 100 ms keep the
// hedge from overtaking the first copy on a loaded machine, as 1 ms once did.)
TEST_F(AsyncClient, AHedgedDownloadTakesTheFirstBodyAndTheLoserWritesNothing) {
  backoff::testing::fault_server server;
  const std::string body = content(200'000, 24);
  server.add_file("/f", body);
  server.script("/f", {fault::hold(), fault::ok()});
  backoff::metrics m;
  auto o = hedged(2, 100ms);
  o.observer = &m;
  backoff::curl::async_client http(ctx.get_executor(), o);
  std::optional<backoff::curl::download_result> out;
  const auto target = dir / "f";
  http.async_download(server.url("/f"), target, [&](backoff::curl::download_result r) { out = std::move(r); });
  ctx.run_for(20s);
  ASSERT_TRUE(out) << "the download never finished";
  EXPECT_EQ(out->reason, stop_reason::success) << out->error;
  ASSERT_EQ(out->attempts.size(), 1u);
  EXPECT_EQ(out->attempts[0].copy, 2u);
  EXPECT_EQ(server.hits("/f"), 2u);
  EXPECT_EQ(m.hedges(), 1u);
  EXPECT_EQ(m.cancelled(), 1u);
  // Let the held copy answer now: its connection is gone, and nothing moves.
  server.release(1);
  ASSERT_TRUE(server.wait_held(1, 0));
  ctx.restart();
  ctx.run_for(50ms);
  EXPECT_EQ(read_file(target), body);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1) << "a part file was left";
}

// The observer hears each copy by its attempt number: when the hedge (attempt
// 2) wins, the first copy, still held, is the one cancelled, and the attempt
// that ended is 2.
TEST_F(AsyncClient, WhenTheHedgeWinsTheObserverHearsTheFirstCopyCancelled) {
  backoff::testing::attempt_numbers seen;
  backoff::testing::fault_server server;
  server.add_file("/f", content(30'000, 7));
  server.script("/f", {fault::hold(), fault::ok()});
  auto o = hedged(2, 100ms);
  o.observer = &seen;
  backoff::curl::async_client http(ctx.get_executor(), o);
  std::optional<backoff::curl::download_result> out;
  http.async_download(server.url("/f"), dir / "f", [&](backoff::curl::download_result r) { out = std::move(r); });
  ctx.run_for(20s);
  server.release(1);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->reason, stop_reason::success) << out->error;
  EXPECT_EQ(seen.started, (std::vector<std::uint32_t>{1, 2}));
  EXPECT_EQ(seen.cancelled, (std::vector<std::uint32_t>{1}));
  EXPECT_EQ(seen.ended, (std::vector<std::uint32_t>{2}));
}

// Safe requests are hedged with the same Idempotency-Key; a POST without one
// is sent once however long it takes, and a PATCH too. (The server holds
// whichever request arrives first: the hedge waits 100 ms so that it cannot
// overtake the first copy, as it did under ASan with 1 ms.)
TEST_F(AsyncClient, OnlyRequestsSafeToSendTwiceAreHedged) {
  backoff::testing::fault_server server;
  backoff::metrics m;
  auto o = hedged(2, 100ms);
  o.observer = &m;
  backoff::curl::async_client http(ctx.get_executor(), o);
  auto perform = [&](backoff::curl::request rq) {
    std::optional<backoff::curl::response> out;
    http.async_perform(std::move(rq), [&](backoff::curl::response r) { out = std::move(r); });
    ctx.restart();
    ctx.run_for(20s);
    return out;
  };
  for (const std::string method : {"POST", "PATCH"}) {
    const std::string path = "/once-" + method;
    server.script(path, {fault::slow(300ms)});
    const auto r = perform({.method = method, .url = server.url(path), .body = "x"});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << method;
    EXPECT_EQ(server.hits(path), 1u) << method << " was sent twice";
  }
  EXPECT_EQ(m.hedges(), 0u);
  // With an Idempotency-Key the POST may go twice, both copies with the same key.
  server.script("/keyed", {fault::hold()});
  const auto keyed = perform({.method = "POST", .url = server.url("/keyed"), .body = "x", .add_idempotency_key = true});
  ASSERT_TRUE(keyed);
  EXPECT_EQ(keyed->status, 200);
  ASSERT_EQ(server.hits("/keyed"), 2u);
  const auto seen = server.requests("/keyed");
  EXPECT_FALSE(seen[0].headers.at("idempotency-key").empty());
  EXPECT_EQ(seen[0].headers.at("idempotency-key"), seen[1].headers.at("idempotency-key"));
  ASSERT_EQ(keyed->attempts.size(), 1u);
  EXPECT_EQ(keyed->attempts[0].copy, 2u);
  server.script("/get", {fault::hold()});
  const auto get = perform({.method = "GET", .url = server.url("/get")});
  ASSERT_TRUE(get);
  EXPECT_EQ(server.hits("/get"), 2u);
  EXPECT_EQ(m.hedges(), 2u);
  server.release(2);
}

// A hedge is an attempt: the stop rule and the gate are asked first. With one
// attempt allowed, or a breaker that refuses, the slow first copy stays alone.
TEST_F(AsyncClient, AHedgeAsksTheStopRuleAndTheGateFirst) {
  backoff::testing::fault_server server;
  server.add_file("/f", "slow but fine");
  server.script("/f", {fault::slow(300ms)});
  auto one = hedged(2, 1ms, 1);
  backoff::curl::async_client http(ctx.get_executor(), one);
  std::optional<backoff::curl::download_result> out;
  http.async_download(server.url("/f"), dir / "f", [&](backoff::curl::download_result r) { out = std::move(r); });
  ctx.run_for(20s);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->reason, stop_reason::success) << out->error;
  EXPECT_EQ(server.hits("/f"), 1u);

  struct refuse_retries final : backoff::gate {
    int asked = 0;
    backoff::gate_decision acquire(const backoff::gate_request&) noexcept override {
      ++asked;
      return backoff::gate_decision::deny(stop_reason::budget_exhausted);
    }
    void record(const backoff::gate_outcome&) noexcept override {}
  } shut;
  auto gated = hedged(2, 1ms);
  gated.gate = &shut;
  server.add_file("/g", "slow but fine");
  server.script("/g", {fault::slow(300ms)});
  backoff::curl::async_client http2(ctx.get_executor(), gated);
  out.reset();
  http2.async_download(server.url("/g"), dir / "g", [&](backoff::curl::download_result r) { out = std::move(r); });
  ctx.restart();
  ctx.run_for(20s);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->reason, stop_reason::success) << out->error;
  EXPECT_EQ(server.hits("/g"), 1u);
  EXPECT_GE(shut.asked, 1);  // it was asked, and said no
}

// Cancelled while two copies are held: both go, the handler says cancelled,
// and no file appears.
TEST_F(AsyncClient, CancellingAHedgedDownloadEndsEveryCopy) {
  backoff::testing::fault_server server;
  server.add_file("/f", content(10'000, 3));
  server.script("/f", {fault::hold(), fault::hold()});
  backoff::metrics m;
  auto o = hedged(2, 1ms);
  o.observer = &m;
  backoff::curl::async_client http(ctx.get_executor(), o);
  asio::cancellation_signal cancel;
  std::optional<backoff::curl::download_result> out;
  http.async_download(server.url("/f"), dir / "f",
                      asio::bind_cancellation_slot(cancel.slot(), [&](backoff::curl::download_result r) { out = std::move(r); }));
  std::thread watcher([&] {
    if (server.wait_held(2, 2)) asio::post(ctx, [&] { cancel.emit(asio::cancellation_type::terminal); });
  });
  ctx.run_for(20s);
  watcher.join();
  server.release(2);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->reason, stop_reason::cancelled);
  EXPECT_FALSE(fs::exists(dir / "f"));
  EXPECT_EQ(m.hedges(), 1u);
  EXPECT_EQ(m.started(), 2u);
  EXPECT_EQ(m.cancelled(), 2u);  // both copies, neither with an outcome
  EXPECT_EQ(m.operations(stop_reason::cancelled), 1u);
}

// The guard inside a hedged download: jobs of one request on one part file
// (as a hedged transfer's copies are). A copy whose claim on the file is
// refused stops at its first body byte having written nothing — both when the
// body would start the file (a 200) and when it would extend it (a 206 that
// resumes); the copy granted writes. (In the client the loser is also dropped
// on the next turn; this is what holds when its bytes come first.)
TEST_F(AsyncClient, ACopyRefusedTheFileWritesNothing) {
  backoff::testing::fault_server server;
  const std::string body = content(100'000, 9);
  server.add_file("/f", body);
  // The refused 200; the winner's first attempt, cut; the refused 206; the winner's resume.
  server.script("/f", {fault::ok(), fault::cut(40'000), fault::ok(), fault::ok()});
  backoff::curl::client_options o = opts();
  backoff::curl::detail::download_file file;
  ASSERT_EQ(file.open(dir / "f", server.url("/f")), "");
  backoff::curl::detail::download_job winner(o, server.url("/f"), file, {});
  bool granted = false;
  winner.claim = [&] { return granted = true; };
  auto attempt = [&](backoff::curl::detail::download_job& job, std::uint32_t n) {
    CURL* easy = curl_easy_init();
    backoff::curl::detail::attempt_result early;
    EXPECT_TRUE(job.prepare(easy, n, early));
    const CURLcode code = curl_easy_perform(easy);
    (void)job.complete(easy, code);
    curl_easy_cleanup(easy);
    return code;
  };
  for (const std::uint64_t before : {std::uint64_t{0}, std::uint64_t{40'000}}) {
    backoff::curl::detail::download_job loser(o, server.url("/f"), file, {});
    loser.claim = [] { return false; };
    EXPECT_EQ(attempt(loser, 1), CURLE_WRITE_ERROR);
    EXPECT_EQ(file.size(), before) << "the refused copy wrote";
    (void)attempt(winner, before == 0 ? 1 : 2);
  }
  const auto seen = server.requests("/f");
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[2].headers.count("range"), 1u);  // the second loser's was a resume
  EXPECT_TRUE(granted);
  const auto r = winner.conclude(stop_reason::success, {}, nullptr);
  EXPECT_EQ(r.reason, stop_reason::success) << r.error;
  EXPECT_EQ(read_file(dir / "f"), body);
}

// A copy that fails (a 503) while another still runs is counted as what it
// was: a failure, not a timeout (a timeout costs more in AWS's budget).
TEST_F(AsyncClient, ACopyThatFailsBesideAnotherIsNotATimeout) {
  struct ends final : backoff::observer {
    std::vector<std::pair<backoff::attempt_outcome, bool>> seen;
    void attempt_ended(const backoff::attempt_ended_event& e) noexcept override { seen.emplace_back(e.outcome, e.timed_out); }
  } o_;
  backoff::testing::fault_server server;
  server.add_file("/f", content(20'000, 6));
  // The first request to arrive is held (until the end), the second gets the
  // 503, the third the file: whichever copy each is, the 503 fails beside a
  // running copy, and only a copy started after it can win.
  server.script("/f", {fault::hold(), fault::status(503)});
  auto o = hedged(3, 1ms);
  o.observer = &o_;
  backoff::curl::async_client http(ctx.get_executor(), o);
  std::optional<backoff::curl::download_result> out;
  http.async_download(server.url("/f"), dir / "f", [&](backoff::curl::download_result r) { out = std::move(r); });
  ctx.run_for(20s);
  server.release(1);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->reason, stop_reason::success) << out->error;
  ASSERT_GE(o_.seen.size(), 2u);
  EXPECT_EQ(o_.seen.front().first, backoff::attempt_outcome::retryable);
  for (const auto& [outcome, timed_out] : o_.seen) EXPECT_FALSE(timed_out);
}

// The first copy wins while the hedge is held: the hedge is cancelled (told
// to the observer), and the attempt that succeeded is copy 1.
TEST_F(AsyncClient, WhenTheFirstCopyWinsTheHedgeIsCancelled) {
  backoff::testing::fault_server server;
  server.add_file("/f", content(50'000, 5));
  // The first answers after 1 s: the hedge, 100 ms after it, starts long
  // before, and does not overtake it to the server (which answers whichever
  // request arrives first slowly).
  server.script("/f", {fault::slow(1s), fault::hold()});
  backoff::metrics m;
  auto o = hedged(2, 100ms);
  o.observer = &m;
  backoff::curl::async_client http(ctx.get_executor(), o);
  std::optional<backoff::curl::download_result> out;
  http.async_download(server.url("/f"), dir / "f", [&](backoff::curl::download_result r) { out = std::move(r); });
  ctx.run_for(20s);
  server.release(1);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->reason, stop_reason::success) << out->error;
  ASSERT_EQ(out->attempts.size(), 1u);
  EXPECT_EQ(out->attempts[0].copy, 1u);
  EXPECT_EQ(server.hits("/f"), 2u);
  EXPECT_EQ(m.hedges(), 1u);
  EXPECT_EQ(m.cancelled(), 1u);
  EXPECT_EQ(read_file(dir / "f"), content(50'000, 5));
}

// hedge.adaptive learns each winning copy's time to a first byte; once it
// holds 20, a held request is hedged at their 95th percentile (at least the
// floor) instead of the cold delay.
TEST_F(AsyncClient, AnAdaptiveHedgeLearnsTheTimesToAFirstByte) {
  backoff::testing::fault_server server;
  server.add_file("/f", content(1000, 7));
  backoff::latency_sketch sketch;
  auto o = hedged(2, 1h);  // cold: never within this test
  o.hedge.adaptive = &sketch;
  o.hedge.floor = 1ms;
  backoff::curl::async_client http(ctx.get_executor(), o);
  for (int i = 0; i < 25; ++i) {
    std::optional<backoff::curl::download_result> out;
    http.async_download(server.url("/f"), dir / ("f" + std::to_string(i)), [&](backoff::curl::download_result r) { out = std::move(r); });
    ctx.restart();
    ctx.run_for(20s);
    ASSERT_TRUE(out && out->ok());
  }
  EXPECT_EQ(sketch.held(), 25u);
  ASSERT_TRUE(o.hedge.hedge_delay() < 1h);
  server.add_file("/held", content(1000, 8));
  server.script("/held", {fault::hold()});
  std::optional<backoff::curl::download_result> out;
  http.async_download(server.url("/held"), dir / "held", [&](backoff::curl::download_result r) { out = std::move(r); });
  ctx.restart();
  ctx.run_for(20s);
  server.release(1);
  ASSERT_TRUE(out);
  EXPECT_TRUE(out->ok()) << out->error;
  EXPECT_EQ(server.hits("/held"), 2u);
}

// A download that cannot start says why at once, and sends nothing: no URL;
// a target whose directory does not exist (a local error, file_error).
TEST_F(AsyncClient, ADownloadThatCannotStartSaysWhyAndSendsNothing) {
  backoff::testing::fault_server server;
  server.add_file("/f", "x");
  backoff::curl::async_client http(ctx.get_executor(), opts());
  std::vector<backoff::curl::download_result> out;
  http.async_download("", dir / "a", [&](backoff::curl::download_result r) { out.push_back(std::move(r)); });
  http.async_download(server.url("/f"), dir / "missing" / "b",
                      [&](backoff::curl::download_result r) { out.push_back(std::move(r)); });
  ctx.run_for(20s);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].reason, stop_reason::permanent);
  EXPECT_EQ(out[0].error, "the URL is empty");
  EXPECT_FALSE(out[0].file_error);
  EXPECT_EQ(out[1].reason, stop_reason::permanent);
  EXPECT_TRUE(out[1].file_error);
  EXPECT_NE(out[1].error.find("missing"), std::string::npos) << out[1].error;
  EXPECT_EQ(out[1].path, dir / "missing" / "b");
  EXPECT_EQ(server.hits("/f"), 0u);
  EXPECT_EQ(http.active(), 0u);
  for (const auto& r : out) {  // nothing was attempted, so nothing resumed or restarted
    EXPECT_EQ(r.bytes, 0u);
    EXPECT_EQ(r.resumes, 0u);
    EXPECT_EQ(r.restarts, 0u);
    EXPECT_TRUE(r.attempts.empty());
  }
}

// A program started with standard input closed may get descriptor 0 for the
// part file: it is closed like any other, not leaked. (In a fresh process,
// where nothing else takes descriptor 0 first.)
TEST(DownloadFile, ItsDescriptorIsClosedEvenWhenItIsZero) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto dir = fs::temp_directory_path() / ("backoff-fd0-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  EXPECT_EXIT(
      {
        ::close(0);
        {
          backoff::curl::detail::download_file f;
          if (!f.open(dir / "f", "http://127.0.0.1:9/f").empty()) std::_Exit(3);
          if (::fcntl(0, F_GETFD) < 0) std::_Exit(4);  // the part file did not take 0
        }
        std::_Exit(::fcntl(0, F_GETFD) < 0 ? 0 : 5);
      },
      ::testing::ExitedWithCode(0), "");
  fs::remove_all(dir);
}

// A write that crosses the file size limit (RLIMIT_FSIZE) is cut short there:
// the rest must go after the part already written, where the limit refuses it
// (EFBIG), never below it over bytes already in place. (In a fresh process,
// which may lower its limit.)
TEST(DownloadFile, AWriteCutShortByTheSizeLimitIsAnErrorNotAWriteElsewhere) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto dir = fs::temp_directory_path() / ("backoff-fsize-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto child = [&] {
    ::signal(SIGXFSZ, SIG_IGN);
    backoff::curl::detail::download_file f;
    if (!f.open(dir / "f", "http://127.0.0.1:9/f").empty()) std::_Exit(3);
    rlimit low{};
    if (::getrlimit(RLIMIT_FSIZE, &low) != 0) std::_Exit(4);
    low.rlim_cur = 4096;  // the soft limit only: a mutation trace may still lift it for its own write
    if (::setrlimit(RLIMIT_FSIZE, &low) != 0) std::_Exit(4);
    const std::string data(100, 'x');
    const int e = f.write_at(4096 - 10, data.data(), data.size());
    std::_Exit(e == EFBIG ? 0 : 10 + (e > 0 ? 1 : 0));
  };
  EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
  fs::remove_all(dir);
}

// Durations in messages ("no data for 1500ms") as a user would write them.
TEST(CurlText, DurationsAreShownInTheLargestWholeUnit) {
  using backoff::curl::detail::human_duration;
  EXPECT_EQ(human_duration(1500ms), "1500ms");
  EXPECT_EQ(human_duration(5s), "5s");
  EXPECT_EQ(human_duration(59s), "59s");
  EXPECT_EQ(human_duration(60s), "1m");
  EXPECT_EQ(human_duration(90s), "90s");
  EXPECT_EQ(human_duration(120s), "2m");
}
