// SPDX-License-Identifier: BSL-1.0
// The JSON attempt report written by --report (nlohmann-json).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

#include "cli.hpp"

namespace backoff::cli {

inline double seconds(duration d) { return std::chrono::duration<double>(d).count(); }

// A report file reserved before any work is done, so that an unwritable path
// fails at once (exit 2) instead of after a download: a temporary file with a
// unique name is created (O_EXCL, never following a link) in the report's
// directory, written at the end and renamed over `path`.
class report_file {
 public:
  explicit report_file(std::string path) : path_(std::move(path)) {
    namespace fs = std::filesystem;
    const auto fail = [&](const std::string& why) { return usage_error("--report: cannot write '" + path_ + "': " + why); };
    struct stat st{};
    if (::stat(path_.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) throw fail("it is a directory");
    const fs::path p(path_);
    if (!p.has_filename()) throw fail("not a file name");
    const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
    temp_ = (dir / ("." + p.filename().string() + ".XXXXXX")).string();
    fd_ = ::mkostemp(temp_.data(), O_CLOEXEC);
    if (fd_ < 0) throw fail(std::strerror(errno));
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::fchmod(fd_, 0666 & ~mask);
  }
  ~report_file() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(temp_.c_str());
    }
  }
  report_file(const report_file&) = delete;
  report_file& operator=(const report_file&) = delete;

  // Writes `doc` and renames it into place. Throws usage_error naming the path.
  void write(const nlohmann::json& doc) {
    const std::string text = doc.dump(2) + "\n";
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t w = ::write(fd_, text.data() + done, text.size() - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) throw usage_error("--report: cannot write '" + path_ + "': " + std::strerror(errno));
      done += static_cast<std::size_t>(w);
    }
    if (::close(fd_) != 0) {
      fd_ = -1;
      ::unlink(temp_.c_str());
      throw usage_error("--report: cannot write '" + path_ + "': " + std::strerror(errno));
    }
    fd_ = -1;
    if (::rename(temp_.c_str(), path_.c_str()) != 0) {
      const int e = errno;
      ::unlink(temp_.c_str());
      throw usage_error("--report: cannot write '" + path_ + "': " + std::strerror(e));
    }
  }

 private:
  std::string path_, temp_;
  int fd_ = -1;
};

// What a run learns for --report and --metrics: its report document, written
// to the report file when there is one (`file`), and kept for the metrics.
class run_record {
 public:
  std::optional<report_file> file;
  nlohmann::json doc;  // null until written

  void write(nlohmann::json d) {
    if (file) file->write(d);
    doc = std::move(d);
  }
  // So that code written for std::optional<report_file> reads the same:
  // `if (report) report->write(…)` — a document is always kept.
  explicit operator bool() const noexcept { return true; }
  run_record* operator->() noexcept { return this; }
};

}  // namespace backoff::cli
