// SPDX-License-Identifier: BSL-1.0
#include "redis_server.hpp"

#include "wait.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <thread>

namespace backoff::testing {

redis_server::redis_server(std::string password, bool cluster, std::string tls_dir)
    : password_(std::move(password)), cluster_(cluster), tls_dir_(std::move(tls_dir)) {
  dir_ = (std::filesystem::temp_directory_path() / ("backoff-redis-" + std::to_string(::getpid()) + "-" +
                                                    std::to_string(reinterpret_cast<std::uintptr_t>(this))))
             .string();
  std::filesystem::create_directories(dir_);
  for (int tries = 0; tries < 5; ++tries) {
    port_ = free_port();
    // A cluster node also listens on its port + 10000 (the cluster bus).
    for (int again = 0; cluster_ && port_ + 10000 > 65535 && again < 200; ++again) port_ = free_port();
    try {
      start();
      return;
    } catch (const std::runtime_error&) {
      if (tries == 4) throw;
    }
  }
}

redis_server::~redis_server() {
  stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string redis_server::url(const std::string& prefix) const {
  return (tls_dir_.empty() ? "redis://127.0.0.1:" : "rediss://127.0.0.1:") + std::to_string(port_) + prefix;
}

void redis_server::start() {
  if (pid_ > 0) return;
  const std::string port = std::to_string(port_);
  std::fflush(nullptr);  // or the child would print what this process had buffered
  pid_ = ::fork();
  if (pid_ == 0) {
    if (::chdir(dir_.c_str()) != 0) ::_exit(97);
    if (const int null = ::open("/dev/null", O_WRONLY); null >= 0) ::dup2(null, 1);
    const std::string cert = tls_dir_ + "/server.pem", key = tls_dir_ + "/server.key", ca = tls_dir_ + "/ca.pem";
    std::vector<const char*> argv{"redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                  "--daemonize", "no", "--dir", dir_.c_str()};
    if (tls_dir_.empty()) {
      argv.insert(argv.end(), {"--port", port.c_str()});
    } else {
      argv.insert(argv.end(), {"--port", "0", "--tls-port", port.c_str(), "--tls-cert-file", cert.c_str(),
                               "--tls-key-file", key.c_str(), "--tls-ca-cert-file", ca.c_str(), "--tls-auth-clients",
                               "no"});
    }
    if (!password_.empty()) argv.insert(argv.end(), {"--requirepass", password_.c_str()});
    if (cluster_)
      argv.insert(argv.end(), {"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                               "--cluster-node-timeout", "2000"});
    argv.push_back(nullptr);
    ::execvp("redis-server", const_cast<char* const*>(argv.data()));
    ::_exit(98);
  }
  for (int i = 0; i < 1000; ++i) {
    if (port_open(port_)) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop();
  throw std::runtime_error("redis_server: redis-server did not start on port " + port);
}

void redis_server::pause() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
}

void redis_server::resume() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

void redis_server::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);  // as a crash or a lost host would: no goodbye to clients
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string redis_server::command(const std::string& args) const {
  const std::string auth = password_.empty() ? std::string() : " --no-auth-warning -a '" + password_ + "'";
  const std::string tls = tls_dir_.empty() ? std::string() : " --tls --cacert '" + tls_dir_ + "/ca.pem'";
  const std::string cmd = "redis-cli -h 127.0.0.1 -p " + std::to_string(port_) + auth + tls + " " + args + " 2>&1";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    std::array<char, 4096> buf{};
    while (std::fgets(buf.data(), buf.size(), p)) out += buf.data();
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

namespace {

std::string shell(const std::string& cmd) {
  std::string out;
  if (FILE* p = ::popen((cmd + " 2>&1").c_str(), "r")) {
    std::array<char, 4096> buf{};
    while (std::fgets(buf.data(), buf.size(), p)) out += buf.data();
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

}  // namespace

void make_test_certificates(const std::string& dir) {
  const auto sh = [&](const std::string& command) {
    const std::string full = "cd '" + dir + "' && (" + command + ") > openssl.log 2>&1";
    if (std::system(full.c_str()) != 0)
      throw std::runtime_error("make_test_certificates: failed: " + command + " (see " + dir + "/openssl.log)");
  };
  sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=backoff test CA' "
     "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
  sh("printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > server.ext");
  sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=server'");
  sh("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 "
     "-extfile server.ext");
}

redis_cluster::redis_cluster(int masters, int replicas) {
  std::string hosts;
  for (int i = 0; i < masters * (1 + replicas); ++i) {
    nodes_.push_back(std::make_unique<redis_server>(std::string(), true));
    hosts += " 127.0.0.1:" + std::to_string(nodes_.back()->port());
  }
  const std::string out = shell("redis-cli --cluster create" + hosts + " --cluster-replicas " +
                                std::to_string(replicas) + " --cluster-yes");
  for (int i = 0; i < 500; ++i) {
    bool ok = true;
    for (const auto& n : nodes_)
      ok = ok && n->command("CLUSTER INFO").find("cluster_state:ok") != std::string::npos;
    if (ok) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("redis_cluster: the cluster did not become ready: " + out);
}

namespace {
int first_running(const std::vector<std::unique_ptr<redis_server>>& nodes) {
  for (const auto& n : nodes)
    if (n->running()) return n->port();
  return nodes.front()->port();
}
}  // namespace

std::string redis_cluster::command(const std::string& args) const {
  return shell("redis-cli -c -h 127.0.0.1 -p " + std::to_string(first_running(nodes_)) + " " + args);
}

int redis_cluster::owner(const std::string& key) const {
  const std::string port = std::to_string(first_running(nodes_));
  const std::string slot = shell("redis-cli -h 127.0.0.1 -p " + port + " CLUSTER KEYSLOT '" + key + "'");
  const std::string slots = shell("redis-cli -h 127.0.0.1 -p " + port + " CLUSTER SLOTS");
  // Lines: start, end, ip, port, id, (replicas …), then the next range.
  std::vector<std::string> lines;
  std::size_t at = 0;
  while (at <= slots.size()) {
    const auto nl = slots.find('\n', at);
    lines.push_back(slots.substr(at, nl == std::string::npos ? std::string::npos : nl - at));
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  const long s = std::stol(slot);
  for (std::size_t i = 0; i + 3 < lines.size(); ++i) {
    char* end = nullptr;
    const long a = std::strtol(lines[i].c_str(), &end, 10);
    if (end == lines[i].c_str() || *end) continue;
    const long b = std::strtol(lines[i + 1].c_str(), &end, 10);
    if (end == lines[i + 1].c_str() || *end) continue;
    if (lines[i + 2] != "127.0.0.1") continue;
    if (s >= a && s <= b) return std::stoi(lines[i + 3]);
  }
  return 0;
}

}  // namespace backoff::testing
