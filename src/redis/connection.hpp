// SPDX-License-Identifier: BSL-1.0
// One connection to one Redis node (private to backoff::redis): TCP or TLS,
// AUTH, and nothing that waits past its deadline. Below the fleet's gates:
// it knows commands and replies, not what the gates keep in Redis.
//
//   std::string why;
//   auto c = connection::open({.host = "cache", .port = 6380, .tls = true}, 20ms, why);
//   if (!c) warn(why);                                    // refused, timed out, untrusted, wrong password
//   auto r = c->command({"GET", "{p:k}:release"});        // nullptr: the connection is lost (c->error())
//
// Why not hiredis's own transport: Debian 12's libhiredis (0.14.1) has no TLS,
// and its blocking calls wait on the socket with SO_RCVTIMEO, which a TLS
// handshake does not honour. The bytes go through non-blocking sockets and
// OpenSSL here, every wait is a poll() bounded by the deadline, and hiredis
// only formats commands and parses replies (redisFormatCommandArgv, redisReader),
// so the fleet keeps its redisReply values.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace backoff::redis::detail {

struct reply_deleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply = std::unique_ptr<redisReply, reply_deleter>;

struct target {
  std::string host;
  int port = 6379;
  bool tls = false;        // rediss://: verified against the system's CAs (or ca_file), name checked, SNI sent
  std::string ca_file{};   // PEM bundle to trust instead of the system's
  std::string user{};      // AUTH USER PASSWORD; empty: AUTH PASSWORD
  std::string password{};  // empty: no AUTH
};

class connection {
 public:
  // Connects, shakes hands (TLS), authenticates: all within `timeout`, which
  // also bounds each later command. nullptr with `why` set on any failure.
  static std::unique_ptr<connection> open(const target& t, std::chrono::milliseconds timeout, std::string& why);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // Sends one command and reads its reply, within the timeout. A Redis error
  // is a reply (type REDIS_REPLY_ERROR); nullptr means the connection is
  // lost or timed out (error() says which) and must not be used again.
  reply command(const std::vector<std::string>& args);

  // Subscriber side: a reply already received and parsed (no I/O), or null.
  reply buffered();
  // Whether bytes wait to be parsed without reading the socket (TLS keeps some).
  bool pending() const;
  // Reads what the socket has (after poll() said so). False when the connection is lost.
  bool read_available();

  int fd() const noexcept { return fd_; }
  const std::string& error() const noexcept { return error_; }

 private:
  connection() = default;
  bool send_all(const char* data, std::size_t n, std::chrono::steady_clock::time_point deadline);
  // Reads once, waiting at most until `deadline`: false on loss or timeout.
  bool read_once(std::chrono::steady_clock::time_point deadline);
  bool wait(short events, std::chrono::steady_clock::time_point deadline);
  bool handshake(const target& t, std::chrono::steady_clock::time_point deadline);
  bool fail(std::string why);

  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  redisReader* reader_ = nullptr;
  std::chrono::milliseconds timeout_{20};
  std::string error_;
};

}  // namespace backoff::redis::detail
