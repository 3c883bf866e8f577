// SPDX-License-Identifier: BSL-1.0
// tests/cli_support.hpp — runs the real `backoff` binary (build/bin/backoff) the
// way a user would, for the CLI test files.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "fault_server.hpp"

#ifndef BACKOFF_CLI
#error "BACKOFF_CLI must name the backoff binary"
#endif


namespace backoff::testing {
class redis_server;
}  // namespace backoff::testing

namespace cli_test {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

struct cli_result {
  int status = -1;
  std::string out, err;
  std::chrono::milliseconds took{0};
};

// Stops `pid` and everything it started (children before they can start more).
inline void kill_tree(pid_t pid) {
  ::kill(pid, SIGSTOP);
  std::vector<pid_t> kids;
  std::error_code ec;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "children");
    for (pid_t k; in >> k;) kids.push_back(k);
  }
  for (pid_t k : kids) kill_tree(k);
  ::kill(pid, SIGKILL);
}

// A command still running after this long is stuck (no test needs more than a
// few seconds): it is killed, so that a regression fails the test instead of
// hanging it (and `make mutate` with it).
inline constexpr auto cli_watchdog = std::chrono::seconds(60);

// In a child after fork: runs backoff with `args` in `cwd` (exits 99 when it
// cannot go there, 98 when backoff does not start).
[[noreturn]] inline void exec_backoff(const std::vector<std::string>& args, const fs::path& cwd) {
  if (::chdir(cwd.c_str()) != 0) ::_exit(99);
  std::vector<char*> argv{const_cast<char*>(BACKOFF_CLI)};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(BACKOFF_CLI, argv.data());
  ::_exit(98);
}

// Runs backoff with `args` in `cwd`, feeding `input` on stdin. `during` runs in
// this process while the child runs (to send it signals).
inline cli_result run_cli(const std::vector<std::string>& args, const fs::path& cwd, const std::string& input = "",
                   const std::function<void(pid_t)>& during = {},
                   std::chrono::milliseconds watchdog = cli_watchdog) {
  int in[2], out[2], err[2];
  EXPECT_EQ(::pipe(in), 0);
  EXPECT_EQ(::pipe(out), 0);
  EXPECT_EQ(::pipe(err), 0);
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) ::close(fd);
    exec_backoff(args, cwd);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  std::thread feeder([fd = in[1], input] {
    std::size_t done = 0;
    while (done < input.size()) {
      const ssize_t w = ::write(fd, input.data() + done, input.size() - done);
      if (w <= 0) break;
      done += static_cast<std::size_t>(w);
    }
    ::close(fd);
  });
  std::thread actor;
  if (during) actor = std::thread([&] { during(pid); });
  cli_result r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open = 2;
  char buf[4096];
  bool stuck = false;
  while (open > 0) {
    if (!stuck && std::chrono::steady_clock::now() - start > watchdog) {
      stuck = true;
      kill_tree(pid);  // the pipes close with the last process that holds them
      r.err += "[cli_test: killed after " + std::to_string(watchdog.count()) + " ms]\n";
    }
    if (::poll(fds, 2, 100) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  feeder.join();
  if (actor.joinable()) actor.join();
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  return r;
}

// Whether process `pid` has a child now (/proc/PID/task/*/children).
inline bool has_children(pid_t pid) {
  std::error_code ec;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "children");
    std::string text;
    if (std::getline(in, text) && text.find_first_not_of(' ') != std::string::npos) return true;
  }
  return false;
}

// Waits (at most 20 s) until `file` exists in `dir` and `pid` has no child:
// the command wrote it and exited, so backoff is between attempts.
inline void wait_for_the_wait(pid_t pid, const fs::path& file) {
  for (int i = 0; i < 4000; ++i) {
    if (fs::exists(file) && !has_children(pid)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// 'text' for sh, whatever it holds.
inline std::string quote(const std::string& text) {
  std::string q = "'";
  for (char c : text) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `command` with sh; its standard output.
inline std::string run_cli_shell(const std::string& command) {
  std::string out;
  if (FILE* p = ::popen(command.c_str(), "r")) {
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    ::pclose(p);
  }
  return out;
}

// The value of header `name` (lower case) in a raw request head, or "" when absent.
inline std::string header_in(const std::string& head, const std::string& name) {
  std::istringstream in(head);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (key == name) return line.substr(line.find_first_not_of(' ', colon + 1));
  }
  return "";
}

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline int count_lines(const std::string& s, const std::string& needle) {
  int n = 0;
  for (std::size_t pos = s.find(needle); pos != std::string::npos; pos = s.find(needle, pos + 1)) ++n;
  return n;
}

class Cli : public ::testing::Test {
 protected:
  fs::path dir;
  void SetUp() override {
    dir = fs::temp_directory_path() / ("backoff-cli-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  cli_result cli(const std::vector<std::string>& args, const std::string& input = "",
                 const std::function<void(pid_t)>& during = {}) {
    return run_cli(args, dir, input, during);
  }
  // A shell command that counts its runs in `file` and succeeds on run `succeed_on` (0: never).
  static std::string counting(int succeed_on, int exit_code = 1) {
    return "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ " + std::to_string(succeed_on) +
           " -ne 0 ] && [ $n -ge " + std::to_string(succeed_on) + " ] && exit 0; exit " + std::to_string(exit_code);
  }
  int runs() { return std::stoi(slurp(dir / "count")); }
  // cli_share_test.cpp: six `get --share` processes, the first alone until it told Redis.
  void get_first_then_five(const std::string& share, const std::string& key, const std::string& url,
                           const std::string& body, backoff::testing::redis_server& redis);
};

}  // namespace cli_test
