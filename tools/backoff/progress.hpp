// SPDX-License-Identifier: BSL-1.0
// Progress display for downloads: a bar on a terminal, one line per event otherwise.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>

namespace backoff::cli {

inline std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

class progress_bar {
 public:
  // A bar when standard error is a terminal (`tty` says whether to draw one).
  progress_bar(std::string label, bool enabled) : progress_bar(std::move(label), enabled, ::isatty(2) == 1) {}
  progress_bar(std::string label, bool enabled, bool tty)
      : label_(std::move(label)), tty_(enabled && tty), enabled_(enabled) {}

  bool is_tty() const noexcept { return tty_; }

  // Called often; redraws at most 10 times a second.
  // `connections` > 1: a segmented download, shown as "8 conns" instead of the attempt.
  void update(std::uint32_t attempt, std::uint64_t bytes, std::optional<std::uint64_t> total, std::uint32_t connections = 1,
              std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
    if (!tty_) return;
    if (attempt != attempt_) {
      attempt_ = attempt;
      attempt_start_ = now;
      attempt_bytes0_ = bytes;
    }
    if (now - drawn_ < std::chrono::milliseconds(100) && !(total && bytes == *total)) return;
    drawn_ = now;
    const double secs = std::chrono::duration<double>(now - attempt_start_).count();
    const double rate = secs > 0 ? static_cast<double>(bytes - std::min(bytes, attempt_bytes0_)) / secs : 0;
    std::string bar;
    char line[256];
    char what[32];
    if (connections > 1) std::snprintf(what, sizeof what, "%u conns", connections);
    else std::snprintf(what, sizeof what, "attempt %u", attempt);
    if (total && *total > 0) {
      const double f = std::min(1.0, static_cast<double>(bytes) / static_cast<double>(*total));
      const int filled = static_cast<int>(f * 24);
      bar = "[" + std::string(static_cast<std::size_t>(filled), '=') + std::string(static_cast<std::size_t>(24 - filled), ' ') + "]";
      const double eta = rate > 0 ? static_cast<double>(*total - std::min(*total, bytes)) / rate : 0;
      std::snprintf(line, sizeof line, "\r%s %s %3.0f%% %s/%s %s/s ETA %.0fs %s\033[K", label_.c_str(),
                    bar.c_str(), f * 100, human_bytes(static_cast<double>(bytes)).c_str(),
                    human_bytes(static_cast<double>(*total)).c_str(), human_bytes(rate).c_str(), eta, what);
    } else {
      std::snprintf(line, sizeof line, "\r%s %s %s/s %s\033[K", label_.c_str(),
                    human_bytes(static_cast<double>(bytes)).c_str(), human_bytes(rate).c_str(), what);
    }
    std::lock_guard lock(mutex());
    std::fputs(line, stderr);
    std::fflush(stderr);
    dirty_ = true;
  }

  // The whole set of a multi-URL get: files done, bytes, rate and, when every
  // size is known, the time left. Redraws at most 10 times a second.
  void update_set(std::size_t done, std::size_t files, std::uint64_t bytes, std::optional<std::uint64_t> total) {
    if (!tty_) return;
    const auto now = std::chrono::steady_clock::now();
    if (attempt_start_ == std::chrono::steady_clock::time_point{}) attempt_start_ = now;
    if (now - drawn_ < std::chrono::milliseconds(100) && done != files) return;
    drawn_ = now;
    const double secs = std::chrono::duration<double>(now - attempt_start_).count();
    const double rate = secs > 0 ? static_cast<double>(bytes) / secs : 0;
    char line[256];
    if (total && *total >= bytes && rate > 0)
      std::snprintf(line, sizeof line, "\r%zu/%zu files, %s of %s, %s/s, ETA %.0fs\033[K", done, files,
                    human_bytes(static_cast<double>(bytes)).c_str(), human_bytes(static_cast<double>(*total)).c_str(),
                    human_bytes(rate).c_str(), static_cast<double>(*total - bytes) / rate);
    else
      std::snprintf(line, sizeof line, "\r%zu/%zu files, %s, %s/s\033[K", done, files,
                    human_bytes(static_cast<double>(bytes)).c_str(), human_bytes(rate).c_str());
    std::lock_guard lock(mutex());
    std::fputs(line, stderr);
    std::fflush(stderr);
    dirty_ = true;
  }

  // One event line ("attempt 2 failed: ..."), printed above the bar.
  void event(const std::string& text) {
    if (!enabled_) return;
    std::lock_guard lock(mutex());
    if (dirty_) std::fputs("\r\033[K", stderr);
    std::fprintf(stderr, "%s\n", text.c_str());
    dirty_ = false;
  }

  void finish() {
    if (tty_ && dirty_) {
      std::lock_guard lock(mutex());
      std::fputs("\n", stderr);
      dirty_ = false;
    }
  }

  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }

 private:
  std::string label_;
  bool tty_, enabled_;
  bool dirty_ = false;
  std::uint32_t attempt_ = 0;
  std::uint64_t attempt_bytes0_ = 0;
  std::chrono::steady_clock::time_point attempt_start_{}, drawn_{};
};

}  // namespace backoff::cli
