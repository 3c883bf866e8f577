// SPDX-License-Identifier: BSL-1.0
// Hedged requests from the command line (issue 24): 100 small GETs one after
// another (-P 1) from a server that holds one request in 20 for 2 s (each
// file's first request; a second copy is answered at once). `backoff get`
// plain, with --hedge-after auto and with a fixed --hedge-after 50ms: wall
// time as a ratio of the plain run's in this same run, extra requests, every
// file checked; and a POST under --hedge-after 1ms against a slow answer is
// sent once. Goal: auto's wall <= 0.25 x plain, <= 12 % extra requests,
// every file exact, the POST sent once. (`make bench-hedge`)
//
//   backoff_hedge_bench BACKOFF_BINARY [files=100] [every=20] [hold_ms=2000]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "fault_server.hpp"

namespace fs = std::filesystem;
using backoff::testing::fault;
using clk = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s BACKOFF_BINARY [files] [every] [hold_ms]\n", argv[0]);
    return 2;
  }
  const std::string backoff = fs::absolute(argv[1]).string();
  const std::size_t files = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 100;
  const std::size_t every = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 20;
  const std::chrono::milliseconds hold{argc > 4 ? std::atol(argv[4]) : 2000};
  if (files == 0 || every == 0) return 2;

  backoff::testing::fault_server server;
  const fs::path root = fs::temp_directory_path() / ("backoff-hedge-" + std::to_string(::getpid()));
  fs::create_directories(root);
  auto body = [](std::size_t i) { return "{\"item\": " + std::to_string(i) + "}\n"; };

  struct mode {
    const char* name;
    std::string flags;
  };
  const std::vector<mode> modes{{"plain", ""}, {"auto", " --hedge-after auto"}, {"50ms", " --hedge-after 50ms"}};
  std::printf("%zu GETs one after another (-P 1); the server holds 1 in %zu for %lld ms\n", files, every,
              static_cast<long long>(hold.count()));
  std::printf("goal (auto): wall <= 0.25 x plain, <= 12 %% extra requests, every file exact\n");
  std::printf("%-8s %8s %8s %9s %8s %s\n", "mode", "wall s", "x plain", "requests", "extra", "files");
  double plain_wall = 0;
  bool met = true;
  for (const auto& m : modes) {
    // Each mode its own paths: a path's script is used up by its first request.
    const std::string prefix = std::string("/") + m.name + "/item";
    const fs::path out = root / m.name;
    fs::create_directories(out);
    {
      std::ofstream list(root / (std::string(m.name) + ".list"));
      for (std::size_t i = 0; i < files; ++i) {
        const std::string path = prefix + std::to_string(i);
        server.add_file(path, body(i));
        if (i % every == every / 3) server.script(path, {fault::slow(hold)});
        list << server.url(path) << "\n";
      }
    }
    const auto t0 = clk::now();
    const int status = bench::run("exec " + backoff + " get -q -P 1" + m.flags + " -i " +
                                      (root / (std::string(m.name) + ".list")).string() + " -O .",
                                  out);
    const double wall = std::chrono::duration<double>(clk::now() - t0).count();
    std::size_t requests = 0, exact = 0;
    for (std::size_t i = 0; i < files; ++i) {
      requests += server.hits(prefix + std::to_string(i));
      exact += bench::slurp(out / ("item" + std::to_string(i))) == body(i);
    }
    if (plain_wall == 0) plain_wall = wall;
    const double extra = static_cast<double>(requests) / static_cast<double>(files) - 1;
    std::printf("%-8s %8.2f %8.2f %9zu %7.1f%% %zu/%zu%s\n", m.name, wall, wall / plain_wall, requests, 100 * extra,
                exact, files, status == 0 ? "" : " (exit status not 0)");
    if (exact != files || status != 0) met = false;
    if (std::string(m.name) == "auto" && (wall > 0.25 * plain_wall || extra > 0.12)) met = false;
  }

  // A POST without an Idempotency-Key is never hedged, however short the delay.
  server.script("/post", {fault::slow(std::chrono::milliseconds(300))});
  const int post = bench::run("exec " + backoff + " get -q --hedge-after 1ms -X POST -d x -o post.json " +
                                  server.url("/post"),
                              root);
  std::printf("POST under --hedge-after 1ms, answered after 300 ms: sent %zu time(s)%s\n", server.hits("/post"),
              post == 0 ? "" : " (exit status not 0)");
  if (server.hits("/post") != 1 || post != 0) met = false;
  std::printf("goal %s\n", met ? "met" : "NOT met");
  fs::remove_all(root);
  return met ? 0 : 1;
}
