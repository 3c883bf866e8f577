// SPDX-License-Identifier: BSL-1.0
// `backoff get -P 16 -i list -O dir` against `xargs -P 16 -n 1 curl --retry 5 -sS -O`
// on the same list: N files of SIZE bytes from a fault server on loopback that
// fails 30 % of first requests (503 with Retry-After: 1, 429, resets, cuts
// mid-body). Interleaved rounds, wall time of each, every file checked against
// its source, and the threads of the backoff process. (`make bench-many`)
//
// backoff runs twice: as is (a host's Retry-After holds back all its
// transfers) and with --per-transfer-retry-after (as curl does).
//
//   backoff_many_bench BACKOFF_BINARY [files=500] [size=1048576] [rounds=2]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "content.hpp"
#include "bench_support.hpp"
#include "fault_server.hpp"

namespace fs = std::filesystem;
using backoff::testing::fault;

namespace {

std::string content(std::size_t n, unsigned seed) { return backoff::testing::pseudo_random_bytes(n, seed); }

using bench::slurp;

// Runs `sh -c command` in `cwd`; returns wall seconds. While it runs, samples
// the thread count of the process named `watch` (0 = do not watch).
double run(const std::string& command, const fs::path& cwd, int* max_threads) {
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::chdir(cwd.c_str()) != 0) ::_exit(99);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(98);
  }
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (max_threads) {
      // The shell execs backoff: the pid is backoff's.
      std::ifstream st("/proc/" + std::to_string(pid) + "/status");
      for (std::string line; std::getline(st, line);)
        if (line.rfind("Threads:", 0) == 0) *max_threads = std::max(*max_threads, std::atoi(line.c_str() + 8));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s BACKOFF_BINARY [files] [size] [rounds]\n", argv[0]);
    return 2;
  }
  const std::string backoff = fs::absolute(argv[1]).string();
  const std::size_t files = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 500;
  const std::size_t size = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 1 << 20;
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 2;

  backoff::testing::fault_server server;
  std::vector<std::string> data;
  const fs::path root = fs::temp_directory_path() / ("backoff-many-" + std::to_string(::getpid()));
  fs::create_directories(root);
  std::ofstream list(root / "list");
  for (std::size_t i = 0; i < files; ++i) {
    data.push_back(content(size, static_cast<unsigned>(i + 1)));
    const std::string path = "/f/file" + std::to_string(i) + ".bin";
    server.add_file(path, data.back());
    list << server.url(path) << "\n";
  }
  list.close();

  double total_backoff = 0, total_curl = 0, total_own = 0;
  int threads = 0;
  std::size_t backoff_bad = 0, curl_bad = 0;
  for (int r = 0; r < rounds; ++r) {
    // 30 % of first requests fail, a quarter each way; the same faults for both tools.
    auto script = [&] {
      for (std::size_t i = 0; i < files; ++i) {
        const std::string path = "/f/file" + std::to_string(i) + ".bin";
        std::vector<fault> f;
        if (i % 10 < 3) {
          switch (i % 4) {
            case 0: f = {fault::status(503, "1")}; break;
            case 1: f = {fault::status(429)}; break;
            case 2: f = {fault::reset()}; break;
            default: f = {fault::cut(size / 3)}; break;
          }
        }
        server.script(path, f);
      }
    };
    const fs::path b = root / ("backoff" + std::to_string(r)), c = root / ("curl" + std::to_string(r));
    const fs::path own = root / ("own" + std::to_string(r));
    fs::create_directories(b);
    fs::create_directories(c);
    fs::create_directories(own);
    const std::string backoff_cmd = "exec " + backoff + " get -q -P 16 -i " + (root / "list").string() + " -O .";
    const std::string curl_cmd = "xargs -P 16 -n 1 curl --retry 5 -sS -O < " + (root / "list").string();
    double tb = 0, tc = 0, to = 0;
    for (int k = 0; k < 3; ++k) {  // rotate which goes first
      script();
      switch ((k + r) % 3) {
        case 0: tb = run(backoff_cmd, b, &threads); break;
        case 1: tc = run(curl_cmd, c, nullptr); break;
        default: to = run(backoff_cmd + " --per-transfer-retry-after", own, &threads); break;
      }
    }
    total_backoff += tb;
    total_curl += tc;
    total_own += to;
    for (std::size_t i = 0; i < files; ++i) {
      const std::string name = "file" + std::to_string(i) + ".bin";
      if (slurp(b / name) != data[i]) ++backoff_bad;
      if (slurp(own / name) != data[i]) ++backoff_bad;
      if (slurp(c / name) != data[i]) ++curl_bad;
    }
    std::printf("round %d: backoff %.2f s (per-transfer Retry-After %.2f s), curl %.2f s\n", r + 1, tb, to, tc);
  }
  std::printf("%zu files of %zu bytes, %d rounds: backoff/curl wall time %.3f (backoff %.2f s, curl %.2f s)\n", files,
              size, rounds, total_backoff / total_curl, total_backoff, total_curl);
  std::printf("with --per-transfer-retry-after: backoff/curl wall time %.3f (%.2f s)\n", total_own / total_curl, total_own);
  std::printf("files not byte-exact: backoff %zu (of %zu), curl %zu (of %zu); most threads in the backoff process: %d\n",
              backoff_bad, 2 * files * static_cast<std::size_t>(rounds), curl_bad, files * static_cast<std::size_t>(rounds),
              threads);
  fs::remove_all(root);
  return backoff_bad == 0 ? 0 : 1;
}
