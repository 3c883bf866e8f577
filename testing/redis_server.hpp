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

#include <memory>
#include <string>
#include <vector>

namespace backoff::testing {

class redis_server {
 public:
  // With a password, redis-server runs with --requirepass and command() authenticates.
  // cluster: --cluster-enabled (a node of a redis_cluster). tls_dir: serve
  // TLS only (rediss://), with tls_dir/server.pem and server.key, made by
  // make_test_certificates (client certificates not asked for).
  explicit redis_server(std::string password = {}, bool cluster = false,
                        std::string tls_dir = {});  // throws std::runtime_error when redis-server cannot start
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
  bool cluster_ = false;
  std::string tls_dir_;
};

// Writes ca.pem, server.pem and server.key (for 127.0.0.1 and localhost,
// signed by that CA) into `dir` with openssl; throws std::runtime_error on failure.
void make_test_certificates(const std::string& dir);

// A Redis Cluster of `masters` masters, each with `replicas` replicas, on
// 127.0.0.1, created with redis-cli --cluster create; ready (cluster_state:ok
// on every node) when the constructor returns. command() and owner() ask the
// first node still running.
class redis_cluster {
 public:
  explicit redis_cluster(int masters = 3, int replicas = 0);
  std::string url(const std::string& prefix = "") const { return nodes_.front()->url(prefix); }
  redis_server& node(std::size_t i) { return *nodes_.at(i); }
  std::size_t size() const noexcept { return nodes_.size(); }
  // redis-cli -c (following redirections) against the first node.
  std::string command(const std::string& args) const;
  // The port of the node that serves `key`'s slot.
  int owner(const std::string& key) const;

 private:
  std::vector<std::unique_ptr<redis_server>> nodes_;
};

}  // namespace backoff::testing
