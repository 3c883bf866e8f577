// SPDX-License-Identifier: BSL-1.0
// The run-time half of switch.hpp, linked into every program of the schemata
// build. BACKOFF_MUTANT=ID turns mutant ID on. With BACKOFF_MUTANT_TRACE=FILE,
// each process appends "ID<TAB>EXECUTABLE<TAB>TEST" the first time it reaches
// mutant ID, which is how the runner learns which tests reach which mutant.
#include <atomic>
#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <sys/resource.h>
#include <unistd.h>

namespace {

constexpr unsigned most = 1U << 16;
std::atomic<unsigned char> reached[most];

unsigned chosen() noexcept {
  static const unsigned id = [] {
    const char* s = std::getenv("BACKOFF_MUTANT");
    return s ? static_cast<unsigned>(std::strtoul(s, nullptr, 10)) : 0U;
  }();
  return id;
}

void record(const char* trace, unsigned id) noexcept {
  try {
    const char* test = std::getenv("BACKOFF_MUTANT_TEST");
    const std::string line = std::to_string(id) + "\t" + (test ? test : "?\t?") + "\n";
    const int fd = ::open(trace, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    // A test may have limited the file size (RLIMIT_FSIZE) below the trace's:
    // lift the soft limit for this write, or the kernel kills the process
    // with SIGXFSZ and the test fails for the trace's sake.
    rlimit was{};
    const bool limited = ::getrlimit(RLIMIT_FSIZE, &was) == 0 && was.rlim_cur != was.rlim_max;
    const rlimit up{was.rlim_max, was.rlim_max};
    const bool lifted = limited && ::setrlimit(RLIMIT_FSIZE, &up) == 0;
    // One write with O_APPEND: lines from concurrent processes do not interleave.
    if (::write(fd, line.data(), line.size()) < 0) {
    }
    if (lifted) ::setrlimit(RLIMIT_FSIZE, &was);
    ::close(fd);
  } catch (...) {
  }
}

}  // namespace

bool backoff_mutant_name_test() noexcept {
  if (!std::getenv("BACKOFF_MUTANT_TRACE") || std::getenv("BACKOFF_MUTANT_TEST")) return true;
  try {
    std::string all;
    const int fd = ::open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return true;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) all.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    const std::string exe = all.substr(0, all.find('\0'));
    const std::string flag = "--gtest_filter=";
    for (std::size_t at = 0; at < all.size(); at = all.find('\0', at) + 1) {
      if (all.compare(at, flag.size(), flag) == 0) {
        const std::string name = all.substr(at + flag.size(), all.find('\0', at) - at - flag.size());
        const std::string base = exe.substr(exe.rfind('/') + 1);
        ::setenv("BACKOFF_MUTANT_TEST", (base + "\t" + name).c_str(), 1);
        break;
      }
      if (all.find('\0', at) == std::string::npos) break;
    }
  } catch (...) {
  }
  return true;
}

bool backoff_mutant_active(unsigned id) noexcept {
  static const char* const trace = std::getenv("BACKOFF_MUTANT_TRACE");
  if (trace && id < most && !reached[id].exchange(1, std::memory_order_relaxed)) record(trace, id);
  return id == chosen();
}
