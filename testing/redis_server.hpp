// SPDX-License-Identifier: BSL-1.0
// testing/redis_server.hpp — a real redis-server (Debian's) on 127.0.0.1 and
// an ephemeral port, for backoff::redis's tests: started by the constructor,
// stopped by the destructor, and stoppable and restartable in between (on the
// same port) to test a fleet that loses Redis.
//
//   backoff::testing::redis_server redis;
//   backoff::redis::fleet fleet({.url = redis.url("/test")});
//   redis.stop();  ...  redis.start();
//   redis.command("GET {test:k}:release");      // redis-cli's answer, trimmed
#pragma once

#include <sys/types.h>

#include <string>

namespace backoff::testing {

class redis_server {
 public:
  // With a password, redis-server runs with --requirepass and command() authenticates.
  explicit redis_server(std::string password = {});  // throws std::runtime_error when redis-server cannot start
  ~redis_server();
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  int port() const noexcept { return port_; }
  std::string url(const std::string& prefix = "") const;
  void start();
  void stop();
  bool running() const noexcept { return pid_ > 0; }
  // SIGSTOP / SIGCONT: the kernel still accepts connections, nothing answers (a hung Redis).
  void pause();
  void resume();
  // Runs redis-cli with `args` against this server; its output without the final newline.
  std::string command(const std::string& args) const;

 private:
  int port_ = 0;
  pid_t pid_ = -1;
  std::string dir_;
  std::string password_;
};

}  // namespace backoff::testing
