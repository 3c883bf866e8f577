// SPDX-License-Identifier: BSL-1.0
// Shared pieces of the `backoff` command: flag parsing into a backoff::policy,
// durations with units, exit codes and the JSON report.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

#include "backoff/backoff.hpp"

namespace backoff::cli {

// Exit codes of the `backoff` command itself (run also passes its child's through).
namespace exit_code {
inline constexpr int ok = 0;
inline constexpr int failed = 1;          // a check failed (demo)
inline constexpr int usage = 2;           // bad flag or value
inline constexpr int gave_up = 3;         // get: retries did not help
inline constexpr int permanent = 4;       // get: a permanent HTTP error (e.g. 404)
inline constexpr int local_error = 5;     // get: the output file could not be written
inline constexpr int checksum = 6;        // get: the download did not match --checksum
inline constexpr int refused = 75;        // run --share: the fleet's breaker is open (EX_TEMPFAIL)
inline constexpr int timeout = 124;       // run: the last attempt was killed by --attempt-timeout or --max-time
inline constexpr int cannot_execute = 126;
inline constexpr int not_found = 127;     // run: the command does not exist
}  // namespace exit_code

// A bad flag or value: main() prints "backoff: <message>" and exits 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "250ms", "1.5s", "2m", "1h", "100us", "0" → nanoseconds. Throws usage_error
// naming `flag` when the text is not a non-negative number with a unit.
duration parse_duration(const std::string& text, const std::string& flag);
std::string format_duration(duration d);  // "1.5s", "250ms", "2m3s" — for messages
// " 3 retries left." after attempt `done` of `max_attempts` (empty without a limit).
std::string retries_left(std::uint32_t max_attempts, std::uint32_t done);

// "0,1,75-78" → the set of codes, each within [lowest, highest]. Throws
// usage_error naming `flag` and `what` ("exit code", "HTTP error status").
std::set<int> parse_codes(const std::string& text, const std::string& flag, int lowest = 0, int highest = 255,
                          const std::string& what = "exit code");
// "1000", "500K", "2G", "1GiB" → bytes (K = 1024). Throws usage_error naming `flag`.
std::uint64_t parse_size(const std::string& text, const std::string& flag);

// Writes all of [data, data + n) to `fd`, through EINTR and through EAGAIN:
// a parent may leave standard output non-blocking, and a full pipe is then
// waited for, as a blocking one would be. False (errno set) when it fails.
bool write_all(int fd, const char* data, std::size_t n);

// The policy flags every subcommand takes.
struct policy_flags {
  std::string preset;
  std::string initial, multiplier, max_delay, jitter, max_time, delays;
  std::optional<std::uint32_t> max_attempts;
  std::optional<std::uint64_t> seed;

  void add_to(CLI::App& app);
  // Builds the policy; throws usage_error naming the flag at fault.
  backoff::policy build() const;
  // The overall time limit, if --max-time was given.
  std::optional<duration> time_limit() const;
};

// Installs handlers that turn SIGINT/SIGTERM/SIGHUP/SIGQUIT into a stop request. The signal
// number is kept for the exit status; `forward` (if set) gets the signal too.
// --share and the flags that go with it (get and run). `url` empty: no fleet.
struct share_options {
  std::string url, password_file, cacert;
  std::string timeout = "20ms";  // Redis connect and every command (redis::fleet_options::timeout)
  // Adds --share-password-file, --share-cacert and --share-timeout (the
  // caller adds --share itself, with its own help).
  void add_to(CLI::App& cmd);
};

class signal_watch {
 public:
  signal_watch();
  ~signal_watch();
  std::stop_token token() const { return source_.get_token(); }
  int signal() const noexcept;
  // Child process (group) to forward those signals to (0: none).
  void set_child(int pid) noexcept;
  // Whether a signal was passed on to a command while it ran (then its exit
  // status is its answer to the signal).
  bool forwarded() const noexcept;

 private:
  std::stop_source source_;
};

// A subcommand: its CLI11 parser, and what runs once parsing succeeded.
struct subcommand {
  CLI::App* app;
  std::function<int()> run;
};

subcommand run_command(CLI::App& app);
subcommand get_command(CLI::App& app);
subcommand schedule_command(CLI::App& app);
subcommand demo_command(CLI::App& app);
subcommand simulate_command(CLI::App& app);

}  // namespace backoff::cli
