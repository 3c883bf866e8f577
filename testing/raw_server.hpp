// SPDX-License-Identifier: BSL-1.0
// testing/raw_server.hpp — a scripted HTTP server on 127.0.0.1 that says
// exactly the bytes a test gives it, for replies no well-behaved server would
// send: wrong lengths, a 206 of another version, statuses with bodies, endless
// bodies, stalls and resets.
//
//   backoff::testing::raw_server s;
//   s.script({raw_reply::http(200, {{"ETag", "\"v1\""}}, body, /*announce*/ 1000),   // cut short
//             raw_reply::http(206, {{"Content-Range", "bytes 500-999/1000"}}, rest)});
//   run(s.url("/f"));
//   s.requests()[1];            // the raw request head of the second request
//
// Each connection carries one request: the server reads the request head,
// (one connection at a time; raw_server(true) answers each on its own thread,
// for clients that open several at once),
// answers with the next reply of the script (the last one repeats), then
// closes the connection — at once, after a stall (or when the client closes
// first), or with a TCP reset.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace backoff::testing {

struct raw_reply {
  std::string bytes;                      // sent as is
  std::chrono::milliseconds stall{0};     // then keep the connection open this long (until the client leaves)
  bool reset = false;                     // close with RST instead of FIN
  bool endless = false;                   // after `bytes`, send filler until the client leaves

  // A response with a status line, the headers, a Content-Length (the body's
  // size, or `announce` when given) unless the headers have one, and the body.
  static raw_reply http(int status, const std::vector<std::pair<std::string, std::string>>& headers,
                        const std::string& body = {}, long long announce = -1);
};

class raw_server {
 public:
  explicit raw_server(bool concurrent = false);
  ~raw_server();
  raw_server(const raw_server&) = delete;
  raw_server& operator=(const raw_server&) = delete;

  int port() const noexcept { return port_; }
  std::string url(const std::string& path) const;
  void script(std::vector<raw_reply> replies);
  std::vector<std::string> requests() const;  // request heads, in order
  // Body bytes sent so far over all connections (to act at a chosen moment).
  std::uint64_t bytes_sent() const noexcept { return sent_.load(); }

 private:
  void serve();
  void answer(int fd);

  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  int port_ = 0;
  std::thread thread_;
  bool concurrent_ = false;
  std::vector<std::thread> workers_;
  mutable std::mutex mutex_;
  std::vector<raw_reply> script_;
  std::size_t next_ = 0;
  std::vector<std::string> requests_;
  std::atomic<std::uint64_t> sent_{0};
};

}  // namespace backoff::testing
