// SPDX-License-Identifier: BSL-1.0
// Integration tests against a real nginx on 127.0.0.1, started by the fixture
// with the configuration in tests/nginx/nginx.conf.in.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include <fcntl.h>

#include "backoff/curl/client.hpp"
#include "backoff/stop.hpp"
#ifdef BACKOFF_TEST_ASYNC
#include <asio/io_context.hpp>

#include "backoff/curl/async_client.hpp"
#endif
#include "https_nginx.hpp"
#include "wait.hpp"

#ifndef BACKOFF_NGINX_CONF
#error "BACKOFF_NGINX_CONF must name tests/nginx/nginx.conf.in"
#endif

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using backoff::testing::free_port;
using backoff::testing::port_open;

std::string nginx_binary() {
  for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx"})
    if (fs::exists(p)) return p;
  return {};
}

std::string file_content(std::size_t n) {
  std::string s(n, '\0');
  std::uint64_t x = 88172645463325252ULL;
  for (auto& c : s) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  return s;
}

class Nginx : public ::testing::Test {
 protected:
  static inline fs::path root;
  static inline int port = 0;
  static inline pid_t pid = -1;
  static inline std::string big;

  static void SetUpTestSuite() {
    const std::string bin = nginx_binary();
    ASSERT_FALSE(bin.empty()) << "nginx is not installed (make installs nginx-light)";
    root = fs::temp_directory_path() / ("backoff-nginx-" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "www" / "files");
    fs::create_directories(root / "tmp");
    big = file_content(24u << 20);
    std::ofstream(root / "www" / "files" / "big.bin", std::ios::binary) << big;
    std::ofstream(root / "www" / "ok.txt") << "ok\n";
    port = free_port();
    std::ifstream in(BACKOFF_NGINX_CONF);
    std::stringstream conf;
    conf << in.rdbuf();
    std::string text = std::regex_replace(conf.str(), std::regex("@PORT@"), std::to_string(port));
    text = std::regex_replace(text, std::regex("@ROOT@"), root.string());
    std::ofstream(root / "nginx.conf") << text;
    pid = ::fork();
    if (pid == 0) {
      const std::string conf_path = (root / "nginx.conf").string(), prefix = root.string() + "/";
      ::execl(bin.c_str(), "nginx", "-p", prefix.c_str(), "-c", conf_path.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 500 && !port_open(port); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(port_open(port)) << "nginx did not start; see " << (root / "error.log");
  }

  static void TearDownTestSuite() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
    fs::remove_all(root);
  }

  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port) + path; }
};

}  // namespace

TEST_F(Nginx, DownloadResumesWithRangeAndIfRange) {
  // 24 MiB at 8 MiB/s at most with a 1 s download timeout: every attempt is cut
  // short, and each next one continues with Range + If-Range (nginx's ETag).
  // A slower machine only makes more attempts: those that add bytes do not
  // count against the limit (client.hpp), so no speed is assumed.
  backoff::curl::client http({.policy = {.schedule = backoff::constant{.delay = 10ms},
                                         .jitter = backoff::jitter::none(),
                                         .stop = backoff::stop::after_attempts(30)},
                              .download_timeout = 1s});
  const fs::path target = root / "out.bin";
  const auto r = http.download(url("/files/big.bin"), target);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_GE(r.resumes, 1u);
  EXPECT_EQ(r.restarts, 0u);
  EXPECT_GE(r.attempts.size(), 2u);
  EXPECT_EQ(r.attempts.front().failure, backoff::http::transport::timeout);
  std::ifstream in(target, std::ios::binary);
  const std::string got{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_TRUE(got == big) << "downloaded " << got.size() << " bytes, expected " << big.size();
}

TEST_F(Nginx, LimitReqAnswers429And503UnderLoad) {
  // Plain libcurl, no retries: a burst of 30 requests against one request a
  // minute. Only the first gets through, however slowly the burst is sent.
  for (const auto& [path, code] : {std::pair{"/burst-429", 429L}, std::pair{"/burst-503", 503L}}) {
    CURL* easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, url(path).c_str());
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, +[](char*, std::size_t s, std::size_t n, void*) { return s * n; });
    std::vector<long> statuses;
    for (int i = 0; i < 30; ++i) {
      ASSERT_EQ(curl_easy_perform(easy), CURLE_OK);
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      statuses.push_back(status);
    }
    curl_easy_cleanup(easy);
    std::vector<long> expected(30, code);
    expected[0] = 200;
    EXPECT_EQ(statuses, expected) << path;
  }
}

TEST_F(Nginx, BackoffClientGetsThroughTheRateLimit) {
  // Four requests in a row through the backoff client, against one request a
  // second: each succeeds, and the 429s' Retry-After: 1 sets the waits. Only a
  // pause of a whole second between every two requests could avoid a 429.
  backoff::curl::client http({.policy = {.schedule = backoff::exponential{.initial = 50ms, .max_delay = 2s},
                                         .jitter = backoff::jitter::full(),
                                         .stop = backoff::stop::after_attempts(10)},
                              .attempt_timeout = 5s});
  int retried = 0;
  for (int i = 0; i < 4; ++i) {
    const auto r = http.perform({.url = url("/limited-429")});
    ASSERT_TRUE(r.ok()) << r.describe();
    if (r.attempts.size() > 1) {
      ++retried;
      EXPECT_EQ(r.attempts[0].status, 429);
      EXPECT_EQ(r.attempts[0].hint, 1s);
      EXPECT_GE(r.attempts[0].delay, 1s);
    }
  }
  EXPECT_GE(retried, 1);
}

TEST(NginxTls, ClientOptionsTlsTrustsAPrivateCaAndACertificateErrorIsPermanent) {
  backoff::testing::https_nginx tls(fs::temp_directory_path() / ("backoff-tls-lib-" + std::to_string(::getpid())));
  const std::string content = file_content(100000);
  tls.add_file("t.bin", content);
  const backoff::policy policy{.schedule = backoff::constant{.delay = 1ms}, .stop = backoff::stop::after_attempts(3)};
  const fs::path dir = fs::temp_directory_path() / ("backoff-tls-out-" + std::to_string(::getpid()));
  fs::create_directories(dir);

  backoff::curl::client untrusted({.policy = policy});
  const auto refused = untrusted.download(tls.url("/t.bin"), dir / "a");
  EXPECT_EQ(refused.reason, backoff::stop_reason::permanent);
  ASSERT_EQ(refused.attempts.size(), 1u);
  EXPECT_EQ(refused.attempts[0].failure, backoff::http::transport::tls);
  EXPECT_FALSE(fs::exists(dir / "a"));

  backoff::curl::client trusted({.policy = policy, .tls = {.ca_file = tls.ca()}});
  const auto r = trusted.download(tls.url("/t.bin"), dir / "b");
  ASSERT_TRUE(r.ok()) << r.error;
  std::ifstream in(dir / "b", std::ios::binary);
  EXPECT_TRUE(std::string(std::istreambuf_iterator<char>(in), {}) == content);
  const auto api = trusted.perform({.url = tls.url("/t.bin")});
  EXPECT_TRUE(api.ok()) << api.describe();

  // Mutual TLS: the client certificate and key from client_options.
  backoff::curl::client mutual(
      {.policy = policy, .tls = {.ca_file = tls.ca(), .cert_file = tls.client_cert(), .key_file = tls.client_key()}});
  const auto m = mutual.perform({.url = tls.mtls_url("/t.bin")});
  EXPECT_TRUE(m.ok()) << m.describe();
  EXPECT_EQ(m.body.size(), content.size());
  const auto no_cert = trusted.perform({.url = tls.mtls_url("/t.bin")});
  EXPECT_EQ(no_cert.status, 400) << "nginx answers 400 to a client without a certificate";

  backoff::curl::client insecure({.policy = policy, .tls = {.insecure = true}});
  EXPECT_TRUE(insecure.perform({.url = tls.url("/t.bin")}).ok());
  fs::remove_all(dir);
}

#ifdef BACKOFF_TEST_ASYNC
// --- segmented downloads ------------------------------------------------------------

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

backoff::curl::download_result segmented_get(const std::string& u, const fs::path& target, unsigned connections) {
  asio::io_context ctx;
  backoff::curl::async_client http(
      ctx.get_executor(),
      {.policy = {.schedule = backoff::constant{.delay = 10ms},
                  .jitter = backoff::jitter::none(),
                  .stop = backoff::stop::after_attempts(40)},
       .segments = {.connections = connections, .min_split = 1u << 20}});
  backoff::curl::download_result out;
  http.async_download(u, target, [&](backoff::curl::download_result r) { out = std::move(r); });
  ctx.run();
  return out;
}

}  // namespace

TEST_F(Nginx, SegmentedDownloadIsByteExactOverSeveralConnections) {
  // 24 MiB at 8 MiB/s per connection: a second connection doubles the rate,
  // so the download grows past one; each segment is a 206 of exactly its range.
  const fs::path target = root / "seg.bin";
  const auto r = segmented_get(url("/files/big.bin"), target, 4);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(read_all(target) == big);
  EXPECT_GE(r.connections, 2u);
  std::size_t ranged = 0;
  for (const auto& a : r.attempts) {
    if (a.range.empty()) continue;
    ++ranged;
    EXPECT_EQ(a.status, 206) << a.range;
  }
  EXPECT_GE(ranged, 1u);
  EXPECT_FALSE(fs::exists(root / ".seg.bin.backoff-part.meta"));
  fs::remove(target);
}

TEST_F(Nginx, SegmentedDownloadBacksOffFromLimitConn) {
  // nginx answers 503 past two connections: the download halves its
  // connections and still ends byte-exact.
  const fs::path target = root / "two.bin";
  const auto r = segmented_get(url("/two/big.bin"), target, 8);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(read_all(target) == big);
  bool refused = false;
  for (const auto& a : r.attempts) refused |= a.status == 503;
  EXPECT_TRUE(refused) << "no connection met limit_conn";
  fs::remove(target);
}

#ifdef BACKOFF_CLI
TEST_F(Nginx, KilledSegmentedDownloadResumesOnlyTheGaps) {
  // kill -9 once the metadata lists complete extents; the next run fetches
  // the rest only and ends byte-exact.
  const fs::path work = root / "kill";
  fs::create_directories(work);
  const std::string u = url("/slow/big.bin");
  const pid_t child = ::fork();
  if (child == 0) {
    if (::chdir(work.c_str()) != 0) ::_exit(126);
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 2);
    ::execl(BACKOFF_CLI, "backoff", "get", "-q", "--connections", "4", "-o", "out.bin", u.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const fs::path meta = work / ".out.bin.backoff-part.meta";
  std::uint64_t listed = 0;
  for (int i = 0; i < 1000 && listed < (4u << 20); ++i) {
    std::this_thread::sleep_for(10ms);
    const std::string text = read_all(meta);
    const auto at = text.find("\nextents ");
    if (at == std::string::npos) continue;
    listed = 0;
    std::istringstream items(text.substr(at + 9, text.find('\n', at + 1) - at - 9));
    std::string item;
    while (std::getline(items, item, ',')) {
      const auto dash = item.find('-');
      if (dash != std::string::npos) listed += std::stoull(item.substr(dash + 1)) - std::stoull(item.substr(0, dash));
    }
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_GE(listed, 4u << 20) << "the metadata never listed 4 MiB";
  ASSERT_FALSE(fs::exists(work / "out.bin"));

  const std::string cmd = "cd '" + work.string() + "' && '" BACKOFF_CLI "' get -q --connections 4 --report r.json -o out.bin '" +
                          u + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_TRUE(read_all(work / "out.bin") == big);
  const std::string report = read_all(work / "r.json");
  std::uint64_t fetched = 0;
  // Each attempt is {"attempt":N,"bytes":B,…} (keys sorted); the total follows "attempts":[…].
  for (std::size_t at = 0; (at = report.find(",\"bytes\":", at)) != std::string::npos; at += 9)
    if (at > 0 && std::isdigit(static_cast<unsigned char>(report[at - 1]))) fetched += std::stoull(report.substr(at + 9));
  EXPECT_LE(fetched, big.size() - listed + big.size() / 100) << "fetched again what the metadata listed";
  fs::remove_all(work);
}
#endif
#endif
