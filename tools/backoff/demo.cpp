// SPDX-License-Identifier: BSL-1.0
// backoff demo: the README's first command. Starts the fault server on
// 127.0.0.1, downloads several files through scripted faults at once, checks
// every SHA-256 and prints what happened.
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "backoff/curl/client.hpp"
#include "cli.hpp"
#include "fault_server.hpp"
#include "sha256.hpp"
#include "progress.hpp"

namespace backoff::cli {

namespace {

namespace fs = std::filesystem;
using testing::fault;

struct demo_file {
  std::string name;
  std::size_t size;
  std::vector<std::string> faults;  // fault_server's text form
};

// The embedded default job: five files, each meeting different trouble.
const std::vector<demo_file> kFiles = {
    {"catalog.json", 64u << 10, {"503:retry-after=1"}},
    {"dataset.bin", 24u << 20, {"cut:2000000", "cut:9000000", "429:retry-after=1"}},
    {"logs.tar", 6u << 20, {"reset", "502"}},
    {"images.zip", 12u << 20, {"slow:2500ms"}},
    {"export.csv", 2u << 20, {"wrong-length", "500", "cut:100"}},
};

std::string make_content(std::size_t n, std::uint64_t seed) {
  std::string s(n, '\0');
  fast_rng rng{seed};
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  return s;
}

std::string sha256_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  const std::string data{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  return testing::sha256_hex(data);
}

std::string fault_name(const curl::attempt_log& a) {
  switch (a.failure) {
    case http::transport::none: return std::to_string(a.status);
    case http::transport::connection_dropped: return "cut";
    case http::transport::connection_reset: return "reset";
    default: return std::string(http::to_string(a.failure));
  }
}

struct demo_options {
  std::string dir;
  bool keep = false, quiet = false;
};

}  // namespace

subcommand demo_command(CLI::App& app) {
  auto dopt = std::make_shared<demo_options>();
  auto* cmd = app.add_subcommand("demo", "Download files through a local server that fails on purpose");
  cmd->footer("Exit status: 0 on success; 2 for a bad flag or value; 1 when something else failed.");
  cmd->add_option("--dir", dopt->dir, "Where to put the downloads (default: a temporary directory, removed after)");
  cmd->add_flag("--keep", dopt->keep, "Keep the downloaded files");
  cmd->add_flag("-q,--quiet", dopt->quiet, "Print only the summary");
  return {cmd, [dopt]() -> int {
    fs::path dir;
    bool remove_dir = false;
    if (dopt->dir.empty()) {
      std::string tmpl = (fs::temp_directory_path() / "backoff-demo-XXXXXX").string();
      if (!::mkdtemp(tmpl.data())) throw usage_error("--dir: cannot create a temporary directory");
      dir = tmpl;
      remove_dir = !dopt->keep;
    } else {
      dir = dopt->dir;
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ec) throw usage_error("--dir: cannot create '" + dir.string() + "': " + ec.message());
    }

    testing::fault_server server;
    std::vector<std::string> digests;
    for (std::size_t i = 0; i < kFiles.size(); ++i) {
      const auto content = make_content(kFiles[i].size, i + 1);
      digests.push_back(testing::sha256_hex(content));
      server.add_file("/" + kFiles[i].name, content);
      std::vector<fault> script;
      for (const auto& f : kFiles[i].faults) script.push_back(testing::parse_fault(f));
      server.script("/" + kFiles[i].name, script);
    }
    if (!dopt->quiet)
      std::cerr << "backoff demo: fault server on 127.0.0.1:" << server.port() << ", downloading " << kFiles.size()
                << " files into " << dir.string() << "\n";

    struct row {
      curl::download_result result;
      bool checksum_ok = false;
      duration waited{0};
      duration elapsed{0};
    };
    std::vector<row> rows(kFiles.size());
    std::atomic<std::uint64_t> total_bytes{0};
    std::vector<std::atomic<std::uint64_t>> file_bytes(kFiles.size());
    const bool tty = !dopt->quiet && ::isatty(2);
    const auto started = std::chrono::steady_clock::now();

    std::vector<std::thread> workers;
    for (std::size_t i = 0; i < kFiles.size(); ++i) {
      workers.emplace_back([&, i] {
        const auto& f = kFiles[i];
        progress_bar events(f.name, !dopt->quiet);
        curl::client http({.policy = {.schedule = exponential{.initial = std::chrono::milliseconds(250),
                                                               .multiplier = 2.0,
                                                               .max_delay = std::chrono::seconds(4)},
                                      .jitter = jitter::full(),
                                      .stop = stop::after_attempts(8)},
                           .attempt_timeout = std::chrono::seconds(1),
                           .connect_timeout = std::chrono::seconds(1),
                           .on_attempt =
                               [&](const curl::attempt_log& a) {
                                 if (a.error.empty() || a.delay.count() == 0 || dopt->quiet) return;
                                 std::string line = f.name + ": attempt " + std::to_string(a.number) + " met " +
                                                    fault_name(a) + ", retrying in " + format_duration(a.delay);
                                 if (a.hint) line += " (Retry-After " + format_duration(*a.hint) + ")";
                                 if (!tty) return events.event(line);
                                 // Above the status line, which the ticker redraws.
                                 std::lock_guard lock(progress_bar::mutex());
                                 std::fprintf(stderr, "\r\033[K%s\n", line.c_str());
                               },
                           .on_progress = [&](const curl::progress& p) { file_bytes[i].store(p.bytes); }});
        const auto t0 = std::chrono::steady_clock::now();
        rows[i].result = http.download(server.url("/" + f.name), dir / f.name);
        rows[i].elapsed = std::chrono::steady_clock::now() - t0;
        for (const auto& a : rows[i].result.attempts) rows[i].waited += a.delay;
        rows[i].checksum_ok = rows[i].result.ok() && sha256_file(dir / f.name) == digests[i];
        total_bytes += rows[i].result.bytes;
      });
    }
    // On a terminal, one line that sums up all downloads while they run.
    std::atomic<bool> done{false};
    std::thread ticker([&] {
      if (!tty) return;
      std::uint64_t all = 0;
      for (const auto& f : kFiles) all += f.size;
      while (!done.load()) {
        std::uint64_t have = 0;
        for (auto& b : file_bytes) have += b.load();
        char line[160];
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        std::snprintf(line, sizeof line, "\rdownloading %zu files: %s of %s, %.1fs\033[K", kFiles.size(),
                      human_bytes(static_cast<double>(have)).c_str(), human_bytes(static_cast<double>(all)).c_str(), secs);
        {
          std::lock_guard lock(progress_bar::mutex());
          std::fputs(line, stderr);
          std::fflush(stderr);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      std::fputs("\r\033[K", stderr);
    });
    for (auto& w : workers) w.join();
    done = true;
    ticker.join();

    bool all_ok = true;
    std::fflush(stderr);
    std::printf("%-14s %10s %9s  %-24s %8s %8s  %s\n", "file", "size", "attempts", "faults met", "waited", "took",
                "sha256");
    for (std::size_t i = 0; i < kFiles.size(); ++i) {
      const auto& r = rows[i];
      std::string faults;
      for (const auto& a : r.result.attempts) {
        if (a.error.empty()) continue;
        if (!faults.empty()) faults += ", ";
        faults += fault_name(a);
      }
      if (faults.empty()) faults = "-";
      std::printf("%-14s %10s %9zu  %-24s %8s %8s  %s\n", kFiles[i].name.c_str(),
                  human_bytes(static_cast<double>(kFiles[i].size)).c_str(), r.result.attempts.size(), faults.c_str(),
                  format_duration(r.waited).c_str(), format_duration(r.elapsed).c_str(),
                  r.checksum_ok ? "ok" : ("FAILED: " + (r.result.error.empty() ? "checksum mismatch" : r.result.error)).c_str());
      all_ok = all_ok && r.checksum_ok;
    }
    const auto total = std::chrono::steady_clock::now() - started;
    std::printf("\n%s: %zu files, %s in %s; every fault was retried with backoff and resumed where possible.\n",
                all_ok ? "all downloads verified" : "SOME DOWNLOADS FAILED", kFiles.size(),
                human_bytes(static_cast<double>(total_bytes.load())).c_str(), format_duration(total).c_str());
    if (remove_dir) fs::remove_all(dir);
    else std::printf("files kept in %s\n", dir.string().c_str());
    return all_ok ? exit_code::ok : exit_code::failed;
  }};
}

}  // namespace backoff::cli
