// SPDX-License-Identifier: BSL-1.0
// `backoff get -P 8` of 120 small files from a server that allows 40 requests
// per fixed window of 2 s and announces it, in each header dialect: wall time
// against the quota's minimum (4 s: the work ends in the third window), 429s
// met, every file checked; paced (the default) and with --ignore-quota.
// Goal (issue 22): every file saved, at most 3 answers 429, wall ≤ 1.25 × the
// minimum + 1 s; the same with --share across 4 processes (30 files each,
// one quota for the fleet, through a redis-server started here). (`make bench-quota`)
//
//   backoff_quota_bench BACKOFF_BINARY [files=120] [limit=40] [window_ms=2000]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "fault_server.hpp"
#include "redis_server.hpp"

namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;

using bench::run;
using bench::slurp;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s BACKOFF_BINARY [files] [limit] [window_ms]\n", argv[0]);
    return 2;
  }
  const std::string backoff = fs::absolute(argv[1]).string();
  const std::size_t files = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 120;
  const std::size_t limit = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 40;
  const std::chrono::milliseconds window{argc > 4 ? std::atol(argv[4]) : 2000};
  const std::size_t windows = (files + limit - 1) / limit;
  const double minimum = std::chrono::duration<double>(window * static_cast<long>(windows - 1)).count();

  backoff::testing::fault_server server;
  const fs::path root = fs::temp_directory_path() / ("backoff-quota-" + std::to_string(::getpid()));
  fs::create_directories(root);
  {
    std::ofstream list(root / "list");
    for (std::size_t i = 0; i < files; ++i) {
      const std::string path = "/api/item" + std::to_string(i);
      server.add_file(path, "{\"item\": " + std::to_string(i) + "}\n");
      list << server.url(path) << "\n";
    }
  }

  bool met = true;
  std::printf("%zu requests, -P 8, quota %zu per %lld ms (minimum %.2f s); goal: <= 3 x 429, wall <= %.2f s\n", files,
              limit, static_cast<long long>(window.count()), minimum, 1.25 * minimum + 1);
  std::printf("%-12s %-8s %8s %6s %6s %s\n", "dialect", "mode", "wall s", "x min", "429s", "files");
  // 4 processes of 30 files each, sharing the quota through Redis.
  backoff::testing::redis_server redis;
  for (std::size_t w = 0; w < 4; ++w) {
    std::ofstream part(root / ("list" + std::to_string(w)));
    for (std::size_t i = w; i < files; i += 4) part << server.url("/api/item" + std::to_string(i)) << "\n";
  }
  for (const std::string dialect : {"ietf", "ratelimit", "x-ratelimit", "openai"}) {
    for (const int mode : {0, 1, 2}) {  // paced, blind, shared by 4 processes
      const bool paced = mode != 1;
      const char* name = mode == 0 ? "paced" : mode == 1 ? "blind" : "share x4";
      const fs::path out = root / (dialect + "-" + std::to_string(mode));
      fs::create_directories(out);
      server.set_quota(limit, window, dialect);
      const std::size_t refused_before = server.quota_refusals();  // 0: set_quota starts afresh
      // Start just after a window begins, so that the minimum is whole windows.
      const auto wall_now = std::chrono::system_clock::now().time_since_epoch();
      std::this_thread::sleep_for(window - std::chrono::duration_cast<std::chrono::milliseconds>(wall_now % window) +
                                  std::chrono::milliseconds{5});
      const auto t0 = clk::now();
      std::string command = "exec " + backoff + " get -q -P 8 -i " + (root / "list").string() + " -O ." +
                            (paced ? "" : " --ignore-quota");
      if (mode == 2) {
        // One shell, four processes at once; the worst exit status.
        const std::string share = " --share " + redis.url("/" + dialect);
        command.clear();
        for (int w = 0; w < 4; ++w)
          command += backoff + " get -q -P 8 -i " + (root / ("list" + std::to_string(w))).string() + " -O ." + share +
                     " & p" + std::to_string(w) + "=$!; ";
        command += "s=0; for p in $p0 $p1 $p2 $p3; do wait $p || s=1; done; exit $s";
      }
      const int status = run(command, out);
      const double wall = std::chrono::duration<double>(clk::now() - t0).count();
      std::size_t exact = 0;
      for (std::size_t i = 0; i < files; ++i)
        exact += slurp(out / ("item" + std::to_string(i))) == "{\"item\": " + std::to_string(i) + "}\n";
      const std::size_t refused = server.quota_refusals() - refused_before;
      std::printf("%-12s %-8s %8.2f %6.2f %6zu %zu/%zu%s\n", dialect.c_str(), name, wall,
                  wall / minimum, refused, exact, files, status == 0 ? "" : " (exit status not 0)");
      if (paced && (refused > 3 || wall > 1.25 * minimum + 1 || exact != files || status != 0)) met = false;
    }
  }
  std::printf("goal %s\n", met ? "met" : "NOT met");
  fs::remove_all(root);
  return met ? 0 : 1;
}
