// SPDX-License-Identifier: BSL-1.0
// backoff run: retry a command until it succeeds.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <regex>
#include <optional>
#include <atomic>
#include <string_view>
#include <thread>

#include "cli.hpp"
#include "metrics.hpp"
#include "report.hpp"
#include "run_loop.hpp"
#ifdef BACKOFF_HAVE_REDIS
#include "share.hpp"
#endif

namespace backoff::cli {

namespace {

// Hands the terminal to process group `pgrp`. A process in the background
// that calls tcsetpgrp gets SIGTTOU, so it is ignored for the call and then
// put back as it was: the parent keeps its own disposition, and a command
// gets the one backoff was started with, on every attempt. (Async-signal-safe:
// the child calls it between fork and exec.)
void give_terminal(pid_t pgrp) noexcept {
  struct sigaction ignore{}, was{};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ::sigaction(SIGTTOU, &ignore, &was);
  ::tcsetpgrp(0, pgrp);
  ::sigaction(SIGTTOU, &was, nullptr);
}

// Copies the command's stdout and stderr through as they come and matches
// each line (up to 64 KiB of it) against --retry-if-output and
// --success-if-output.
class output_watch {
 public:
  output_watch(const run_plan& plan, outcome& out) : ro_(plan), out_(out) {
    if (::pipe2(out_pipe_, O_CLOEXEC) != 0 || ::pipe2(err_pipe_, O_CLOEXEC) != 0)
      throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  ~output_watch() {
    for (int fd : {out_pipe_[0], out_pipe_[1], err_pipe_[0], err_pipe_[1]})
      if (fd >= 0) ::close(fd);
  }
  // In the child, after fork: async-signal-safe calls only.
  void adopt() const noexcept {
    ::dup2(out_pipe_[1], 1);
    ::dup2(err_pipe_[1], 2);
  }
  // In the parent, after fork: reads until the command closes its ends.
  void start() {
    ::close(out_pipe_[1]);
    ::close(err_pipe_[1]);
    out_pipe_[1] = err_pipe_[1] = -1;
    thread_ = std::thread([this] { pump(); });
  }
  // The command has exited: take what is already written, and stop (a
  // process it left behind may hold the pipe open for ever).
  void finish() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  void pump() {
    std::string partial[2];
    pollfd fds[2] = {{out_pipe_[0], POLLIN, 0}, {err_pipe_[0], POLLIN, 0}};
    char buf[65536];
    int open = 2;
    while (open > 0) {
      const int n = ::poll(fds, 2, done_ ? 0 : 50);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (done_) break;
        continue;
      }
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
        if (got <= 0) {
          fds[i].fd = -1;
          --open;
          continue;
        }
        // (When our own output is gone, reading goes on for the matches.)
        write_all(i == 0 ? 1 : 2, buf, static_cast<std::size_t>(got));
        scan(partial[i], std::string_view(buf, static_cast<std::size_t>(got)));
      }
    }
    for (auto& p : partial)
      if (!p.empty()) match(p);
  }
  void scan(std::string& partial, std::string_view chunk) {
    for (const char c : chunk) {
      if (c == '\n') {
        match(partial);
        partial.clear();
      } else if (partial.size() < 65536) {
        partial += c;
      }
    }
  }
  void match(const std::string& line) {
    if (ro_.retry_re && std::regex_search(line, *ro_.retry_re)) out_.output_asks_retry = true;
    if (ro_.success_re && std::regex_search(line, *ro_.success_re)) out_.output_says_success = true;
  }

  const run_plan& ro_;
  outcome& out_;
  int out_pipe_[2] = {-1, -1}, err_pipe_[2] = {-1, -1};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Forks and runs the command; waits for it, enforcing `limit` (0 = none).
outcome run_once(const run_options& ro, const run_plan& plan, const std::string& input, std::uint32_t attempt,
                 std::uint32_t max_attempts, duration limit, duration kill_after, signal_watch& signals) {
  const bool give_stdin = attempt == 1;
  outcome out;
  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  int in_pipe[2] = {-1, -1};
  if (ro.stdin_replay && ::pipe2(in_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  std::optional<output_watch> watch;
  if (plan.retry_re || plan.success_re) watch.emplace(plan, out);

  // The command runs in a process group of its own, so that a timeout or a
  // forwarded signal reaches everything it started, not just the shell.
  const bool terminal = ::isatty(0) && give_stdin && !ro.stdin_replay;
  // Everything the child needs is built here: after fork, a process with
  // threads may only call async-signal-safe functions (no allocation).
  std::vector<char*> argv;
  for (const auto& a : ro.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // The command sees which attempt it is: BACKOFF_ATTEMPT (1-based) and
  // BACKOFF_MAX_ATTEMPTS (0: no limit).
  std::vector<std::string> own{"BACKOFF_ATTEMPT=" + std::to_string(attempt),
                               "BACKOFF_MAX_ATTEMPTS=" + std::to_string(max_attempts)};
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "BACKOFF_ATTEMPT=", 16) != 0 && std::strncmp(*e, "BACKOFF_MAX_ATTEMPTS=", 21) != 0) envp.push_back(*e);
  for (auto& e : own) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    // The terminal too, as shells do in both parent and child: whichever runs
    // first, the command never starts in the background and stops on SIGTTIN
    // (or reads /proc and finds itself there) before the parent's tcsetpgrp.
    if (terminal) give_terminal(::getpid());
    sigset_t none;
    sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);  // backoff ignores it; the command gets the usual behaviour
    if (watch) watch->adopt();
    if (ro.stdin_replay) {
      ::dup2(in_pipe[0], 0);
    } else if (!give_stdin) {
      const int devnull = ::open("/dev/null", O_RDONLY);
      if (devnull >= 0) ::dup2(devnull, 0);
    }
    ::execvpe(argv[0], argv.data(), envp.data());
    const int err = errno;
    [[maybe_unused]] auto n = ::write(exec_pipe[1], &err, sizeof err);
    ::_exit(err == ENOENT ? exit_code::not_found : exit_code::cannot_execute);
  }
  ::setpgid(pid, pid);  // also here: whichever of parent and child runs first
  // An interactive command gets the terminal: Ctrl-C then reaches it directly.
  if (terminal) give_terminal(pid);
  signals.set_child(pid);
  ::close(exec_pipe[1]);
  if (watch) watch->start();
  std::thread feeder;
  if (ro.stdin_replay) {
    ::close(in_pipe[0]);
    // A thread feeds the child so that a child that never reads cannot block us.
    feeder = std::thread([fd = in_pipe[1], &input] {
      std::size_t done = 0;
      while (done < input.size()) {
        const ssize_t w = ::write(fd, input.data() + done, input.size() - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += static_cast<std::size_t>(w);
      }
      ::close(fd);
    });
  }

  const auto start = std::chrono::steady_clock::now();
  bool term_sent = false;
  auto term_at = start;
  int wstatus = 0;
  // The child's exit is seen at once through a pidfd (Linux 5.3); where there
  // is none, waitpid is polled every 5 ms.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  for (;;) {
    // Seen exited but not yet reaped: no signal is passed on to it from here
    // (set_child(0)), and only then is it reaped, so that nobody who sees it
    // gone can signal backoff while it still counts as running.
    siginfo_t info{};
    const int r = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if (r == 0 && info.si_pid == pid) {
      signals.set_child(0);
      while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    if (r < 0 && errno != EINTR) break;
    const auto now = std::chrono::steady_clock::now();
    if (!term_sent && limit.count() > 0 && now - start >= limit) {
      ::kill(-pid, SIGTERM);
      term_sent = true;
      term_at = now;
      out.timed_out = true;
    } else if (term_sent && now - term_at >= kill_after) {
      ::kill(-pid, SIGKILL);
    }
    // Sleep until the child exits or the next deadline, whichever is first.
    auto wake = now + std::chrono::hours(1);
    if (!term_sent && limit.count() > 0) wake = start + limit;
    if (term_sent) wake = term_at + kill_after;
    if (pidfd < 0) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(wake - now, std::chrono::milliseconds(5)));
      continue;
    }
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(wake - now).count();
    pollfd p{pidfd, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::clamp<long long>(ms, 0, 3'600'000)));
  }
  if (pidfd >= 0) ::close(pidfd);
  signals.set_child(0);
  if (terminal) give_terminal(::getpgrp());
  // Whatever the command left running in its group goes with it.
  if (out.timed_out) ::kill(-pid, SIGKILL);
  if (feeder.joinable()) feeder.join();
  if (watch) watch->finish();

  int err = 0;
  if (::read(exec_pipe[0], &err, sizeof err) == static_cast<ssize_t>(sizeof err)) {
    out.exec_failed = true;
    out.error = "cannot run '" + ro.command[0] + "': " + std::strerror(err);
    out.status = err == ENOENT ? exit_code::not_found : exit_code::cannot_execute;
  }
  ::close(exec_pipe[0]);
  if (out.exec_failed) return out;
  if (WIFEXITED(wstatus)) {
    out.exit_code = WEXITSTATUS(wstatus);
    out.status = out.exit_code;
  } else if (WIFSIGNALED(wstatus)) {
    out.signal = WTERMSIG(wstatus);
    out.status = 128 + out.signal;
  }
  if (out.timed_out) out.status = exit_code::timeout;
  return out;
}

}  // namespace

subcommand run_command(CLI::App& app) {
  auto ro = std::make_shared<run_options>();
  auto* cmd = app.add_subcommand("run", "Run a command, retrying it while it fails");
  cmd->footer(
      "Exit status: the last attempt's; 124 when --attempt-timeout or --max-time stopped it; 126 when the command "
      "cannot be executed; 127 when it does not exist; 128+N when it was killed by signal N, or when signal N "
      "stopped backoff (130 for Ctrl-C); 75 when the fleet's breaker (--share) refused it; 1 when retries ran out on "
      "output matching --retry-if-output after exit 0; 2 for a bad flag or "
      "value (nothing was run).\nThe command sees BACKOFF_ATTEMPT (1-based) and BACKOFF_MAX_ATTEMPTS (0: no limit).");
  ro->policy.add_to(*cmd);
  cmd->add_option("--retry-on-exit", ro->retry_on, "Retry only these exit codes, e.g. 1,75-78 (default: any non-zero)");
  cmd->add_option("--no-retry-on-exit", ro->no_retry_on, "Never retry these exit codes");
  cmd->add_option("--attempt-timeout", ro->attempt_timeout, "Stop an attempt after this long (SIGTERM, then SIGKILL)");
  cmd->add_option("--kill-after", ro->kill_after, "Grace period between SIGTERM and SIGKILL (default 5s)");
  cmd->add_flag("--stdin-replay", ro->stdin_replay, "Buffer standard input and give it to every attempt");
  cmd->add_option("--report", ro->report, "Write the attempt history as JSON to FILE");
  ro->metrics.add_to(*cmd);
  cmd->add_flag("-q,--quiet", ro->quiet, "Print nothing about retries");
  cmd->add_option("--retry-if-output", ro->retry_if_output,
                  "Retry when a line of the command's output matches this extended regex, e.g. '429|Too Many Requests', "
                  "even after exit 0 (output is passed through as it comes)");
  cmd->add_option("--success-if-output", ro->success_if_output,
                  "Succeed when a line of the command's output matches this extended regex, whatever the exit status");
#if defined(BACKOFF_HAVE_REDIS) || defined(BACKOFF_SHARE_ELSEWHERE)
  cmd->add_option("--share", ro->share.url,
                  "Share a retry budget and a circuit breaker with every backoff using the same Redis and "
                  "--share-key: redis://HOST:PORT[/PREFIX]");
  cmd->add_option("--share-key", ro->share_key, "What --share is shared for (e.g. the API the command calls)");
  ro->share.add_to(*cmd);
#endif
  cmd->add_option("command", ro->command, "The command and its arguments, after --")->required();
  return {cmd, [ro]() -> int {
    // Parse everything before running anything: a bad flag must not start the command.
    const run_plan plan = plan_run(*ro);
    // A command that exits without reading what --stdin-replay feeds it must
    // not take backoff down with SIGPIPE: the write fails instead, quietly.
    ::signal(SIGPIPE, SIG_IGN);
    run_record report;
    if (!ro->report.empty()) report.file.emplace(ro->report);  // an unwritable path fails before the command runs
    ro->metrics.check("run");
    const auto started = std::chrono::system_clock::now();

    std::string input;
    if (ro->stdin_replay) input.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());

    signal_watch signals;
    const std::uint32_t max_attempts = plan.policy.stop.max_attempts();
    run_context ctx{real_clock::instance(),
                    std::cerr,
                    [&](std::uint32_t n, duration limit) {
                      return run_once(*ro, plan, input, n, max_attempts, limit, plan.kill_after, signals);
                    },
                    signals.token(),
                    [&] { return signals.signal(); },
                    nullptr,
                    [&] { return signals.forwarded(); }};
#ifdef BACKOFF_HAVE_REDIS
    std::unique_ptr<shared_gates> shared;
    if (!ro->share.url.empty()) {
      shared = std::make_unique<shared_gates>(ro->share, ro->share_key, ro->quiet);
      ctx.gate = &shared->gates();
    }
#else
    if (!ro->share.url.empty()) throw usage_error("--share: this backoff was built without Redis (hiredis)");
#endif
    const run_result r = run_loop(plan, ctx);
    if (report)
      report->write({{"command", ro->command},
                     {"reason", std::string(to_string(r.reason))},
                     {"exit_status", r.status},
                     {"attempts", r.attempts}});
    finish_metrics(ro->metrics, report.doc, r.status, started);
    return r.status;
  }};
}

}  // namespace backoff::cli
