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

namespace {

bool accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

redis_server::redis_server(std::string password) : password_(std::move(password)) {
  dir_ = (std::filesystem::temp_directory_path() / ("backoff-redis-" + std::to_string(::getpid()) + "-" +
                                                    std::to_string(reinterpret_cast<std::uintptr_t>(this))))
             .string();
  std::filesystem::create_directories(dir_);
  for (int tries = 0; tries < 5; ++tries) {
    port_ = free_port();
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
  return "redis://127.0.0.1:" + std::to_string(port_) + prefix;
}

void redis_server::start() {
  if (pid_ > 0) return;
  const std::string port = std::to_string(port_);
  std::fflush(nullptr);  // or the child would print what this process had buffered
  pid_ = ::fork();
  if (pid_ == 0) {
    if (::chdir(dir_.c_str()) != 0) ::_exit(97);
    if (const int null = ::open("/dev/null", O_WRONLY); null >= 0) ::dup2(null, 1);
    if (!password_.empty())
      ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--dir", dir_.c_str(), "--requirepass", password_.c_str(),
               static_cast<char*>(nullptr));
    ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", dir_.c_str(), static_cast<char*>(nullptr));
    ::_exit(98);
  }
  for (int i = 0; i < 1000; ++i) {
    if (accepts(port_)) return;
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
  const std::string cmd = "redis-cli -h 127.0.0.1 -p " + std::to_string(port_) + auth + " " + args + " 2>&1";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    std::array<char, 4096> buf{};
    while (std::fgets(buf.data(), buf.size(), p)) out += buf.data();
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

}  // namespace backoff::testing
