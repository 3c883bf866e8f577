// SPDX-License-Identifier: BSL-1.0
// testing/fault_server.hpp — an HTTP server on 127.0.0.1 that fails on purpose,
// for backoff's tests and `backoff demo`. Built on cpp-httplib.
//
//   backoff::testing::fault_server server;                 // ephemeral port, own thread
//   server.add_file("/data.bin", bytes);                    // served with ETag and Range
//   server.script("/data.bin", {fault::status(503, "2"), fault::cut(1000), fault::ok()});
//   fetch(server.url("/data.bin"));
//   server.hits("/data.bin");                               // 3
//
// Each request to a path consumes the next fault of its script; once the script
// is used up, requests are served normally. Faults:
//   status(code, retry_after)  answer `code`, with a Retry-After header when given
//   slow(d)                    wait d before answering normally (trips client timeouts)
//   reset()                    send the headers, then reset the connection (TCP RST)
//   cut(k)                     send k bytes of the body, then close the connection
//   wrong_length()             announce 64 bytes more than the body holds, then close
//   hold()                     wait until the test calls release(), then answer normally
//   ok()                       answer normally
// in_flight() counts requests being handled (held ones included) and
// max_in_flight() the most there ever were at once: how a test sees concurrency.
// Files honour Range (one range) and If-Range (ETag or Last-Modified): a
// mismatched If-Range gets the whole file with 200, a range past the end 416.
// Any method on a path without a file answers 200 "ok" (after its script).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Server;
}

namespace backoff::testing {

struct fault {
  enum class kind { ok, status, slow, reset, cut, wrong_length, hold };
  kind type = kind::ok;
  int code = 200;
  std::string retry_after;  // empty: no header
  std::chrono::milliseconds delay{0};
  std::size_t bytes = 0;

  static fault ok() { return {}; }
  static fault status(int code, std::string retry_after = {}) {
    return {kind::status, code, std::move(retry_after), {}, 0};
  }
  static fault slow(std::chrono::milliseconds d) { return {kind::slow, 200, {}, d, 0}; }
  static fault reset() { return {kind::reset, 200, {}, {}, 0}; }
  static fault cut(std::size_t after_bytes) { return {kind::cut, 200, {}, {}, after_bytes}; }
  static fault wrong_length() { return {kind::wrong_length, 200, {}, {}, 0}; }
  static fault hold() { return {kind::hold, 200, {}, {}, 0}; }
};

// Parses a fault from text, as the CLI and scripts write it:
// "ok", "503", "503:retry-after=2", "slow:500ms", "reset", "cut:1000", "wrong-length".
// Throws std::invalid_argument naming the bad text.
fault parse_fault(const std::string& text);

struct recorded_request {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  int remote_port = 0;  // tells connections apart: equal ports mean a reused connection
  std::chrono::steady_clock::time_point at{};  // when the server began to handle it
};

class fault_server {
 public:
  fault_server();
  ~fault_server();
  fault_server(const fault_server&) = delete;
  fault_server& operator=(const fault_server&) = delete;

  int port() const noexcept { return port_; }
  std::string url(const std::string& path) const;

  // Serves `content` at `path` with an ETag derived from it and a fixed Last-Modified.
  void add_file(const std::string& path, std::string content);
  void script(const std::string& path, std::vector<fault> faults);

  std::size_t hits(const std::string& path) const;
  std::vector<recorded_request> requests(const std::string& path) const;

  std::size_t in_flight() const;
  std::size_t max_in_flight() const;
  // Waits (up to `limit`) until `ever` requests have been held and `now` of
  // them still are; false on timeout.
  bool wait_held(std::size_t ever, std::size_t now, std::chrono::milliseconds limit = std::chrono::seconds(30)) const;
  // Lets `n` held requests (present or future) go on.
  void release(std::size_t n);

  // A quota over every path: `limit` requests per fixed window of `window`
  // (windows begin on multiples of `window` on the wall clock), announced
  // on every answer in `dialect`:
  //   "ietf"         RateLimit: "default";r=R;t=T and RateLimit-Policy: "default";q=L;w=W
  //   "ratelimit"    RateLimit-Limit / -Remaining / -Reset (seconds)
  //   "x-ratelimit"  X-RateLimit-Limit / -Remaining / -Reset (epoch seconds, as GitHub)
  //   "openai"       x-ratelimit-limit-requests / -remaining-requests / -reset-requests ("850ms")
  //   "none"         no header
  // Resets are rounded up to whole seconds (but the Go duration's). Past the
  // limit: 429 with Retry-After (the window's end, in whole seconds rounded up).
  void set_quota(std::size_t limit, std::chrono::milliseconds window, std::string dialect);
  std::size_t quota_refusals() const;

  void stop();

 private:
  struct file {
    std::string content;
    std::string etag;
  };
  void handle(const void* req, void* res);

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex mutex_;
  std::map<std::string, file> files_;
  std::map<std::string, std::vector<fault>> scripts_;
  std::map<std::string, std::size_t> cursor_;
  std::map<std::string, std::vector<recorded_request>> requests_;
  mutable std::condition_variable changed_;
  std::size_t in_flight_ = 0, max_in_flight_ = 0, held_ = 0, held_ever_ = 0, permits_ = 0;
  bool stopping_ = false;
  struct quota_state {
    std::size_t limit = 0;
    std::chrono::milliseconds window{0};
    std::string dialect;
    std::chrono::system_clock::time_point start{};  // windows are on the wall clock
    long long number = -1;  // the current window's
    std::size_t used = 0, refused = 0;
  };
  std::unique_ptr<quota_state> quota_;
};

}  // namespace backoff::testing
