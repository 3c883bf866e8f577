// SPDX-License-Identifier: BSL-1.0
// backoff — retry commands and downloads with exponential backoff and jitter.
//
// Two executables from this file: `backoff` (BACKOFF_LEAN: run, schedule,
// simulate; no libcurl or OpenSSL to load, so `backoff run -- true` starts in
// about the time a shell loop does) and `backoff-http` (get, demo), which
// `backoff get` and `backoff demo` exec, found beside the executable or in
// ../libexec/backoff/.
//   backoff run [policy] -- CMD ARGS…     retry a command
//   backoff get URL [-o FILE] [policy]    download with retries and resume
//   backoff schedule [policy]             show the waits a policy produces
//   backoff demo                          see it work against a failing local server
//   backoff simulate SCENARIO             contention, failures or overload experiments
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "cli.hpp"

namespace {

std::size_t distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// curl's and wget's flags that backoff does not have, and what to use instead.
struct foreign_flag {
  std::string_view name, from, advice;
};
constexpr foreign_flag foreign_flags[] = {
    {"--retry", "curl", "use --max-attempts N (attempts in all: curl's --retry N is --max-attempts N+1)"},
    {"--retry-delay", "curl", "use --initial DUR (the first wait) or --delays 5s,5s (fixed waits)"},
    {"--retry-max-time", "curl", "use --max-time DUR"},
    {"--retry-all-errors", "curl", "transient errors are retried by default; --retry-on-http-error adds statuses"},
    {"--retry-connrefused", "curl", "refused connections are retried by default"},
    {"-C", "curl", "resuming is automatic: run the same command again"},
    {"--continue-at", "curl", "resuming is automatic: run the same command again"},
    {"-c", "wget", "resuming is automatic: run the same command again"},
    {"--continue", "wget", "resuming is automatic: run the same command again"},
    {"-m", "curl", "use --timeout DUR (each attempt) or --max-time DUR (all attempts)"},
    {"-w", "curl", "use --report FILE (the attempts as JSON)"},
    {"--write-out", "curl", "use --report FILE (the attempts as JSON)"},
    {"-v", "curl", "use --report FILE (the attempts as JSON); retries are reported on stderr"},
    {"--verbose", "curl", "use --report FILE (the attempts as JSON); retries are reported on stderr"},
    {"-I", "curl", "use -X HEAD"},
    {"--head", "curl", "use -X HEAD"},
    {"--remote-name", "curl", "drop it: without -o, get saves under the URL's name"},
    {"--remote-name-all", "curl", "drop it: without -o, get saves under the URL's name"},
    {"-J", "curl", "not supported: name the file with -o FILE"},
    {"--remote-header-name", "curl", "not supported: name the file with -o FILE"},
    {"-x", "curl", "set https_proxy / http_proxy in the environment (libcurl reads them)"},
    {"--proxy", "curl", "set https_proxy / http_proxy in the environment (libcurl reads them)"},
    {"-r", "curl", "not supported: get fetches whole files"},
    {"--range", "curl", "not supported: get fetches whole files"},
    {"--limit-rate", "curl", "not supported: get has no rate limit"},
    {"-Z", "curl", "several URLs always run at once: -P N sets how many"},
    {"--parallel", "curl", "several URLs always run at once: -P N sets how many"},
    {"--parallel-max", "curl", "use -P N"},
    {"-t", "wget", "use --max-attempts N"},
    {"--tries", "wget", "use --max-attempts N"},
    {"--waitretry", "wget", "use --max-delay DUR"},
    {"-T", "wget", "use --timeout DUR"},
    {"--no-check-certificate", "wget", "use --insecure (-k)"},
    {"--ca-certificate", "wget", "use --cacert FILE"},
    {"--ca-directory", "wget", "use --capath DIR"},
    {"--certificate", "wget", "use --cert FILE"},
    {"--private-key", "wget", "use --key FILE"},
    {"-U", "wget", "use -A / --user-agent"},
    {"--http-user", "wget", "use -u USER:PASSWORD"},
    {"--http-password", "wget", "use -u USER:PASSWORD"},
    {"--post-data", "wget", "use -d TEXT"},
    {"--post-file", "wget", "use -d @FILE"},
    {"--method", "wget", "use -X METHOD"},
    {"--output-document", "wget", "use -o FILE"},
    {"--directory-prefix", "wget", "use -O DIR"},
};

// "unknown flag -C (curl's -C: …)" when `name` is a curl or wget flag that
// `backoff get` lacks; empty otherwise.
std::string foreign_flag_advice(std::string_view name) {
  for (const auto& f : foreign_flags)
    if (f.name == name)
      return "unknown flag " + std::string(name) + " (" + std::string(f.from) + "'s " + std::string(name) + ": " +
             std::string(f.advice) + ")";
  return {};
}

// The first flag before "--" that `cmd` does not know, with the nearest one
// it does ("unknown flag --max-atempts (did you mean --max-attempts?)"), or,
// for `get`, with what to use instead of a curl or wget flag it does not have:
// CLI11 would otherwise take it for a positional and complain about another word.
// (Not for `run`: there a short flag may belong to the command, as in `run grep -v`.)
std::string unknown_flag(CLI::App& cmd, int argc, char** argv) {
  const bool curl_like = cmd.get_name() == "get";
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    if (curl_like && arg.size() >= 2 && arg[0] == '-' && arg[1] != '-') {
      // -x, or -xVALUE: known unless it names a foreign flag get lacks.
      // Skipped after an option that takes a value (that word is the value).
      const std::string before = argv[i - 1];
      const CLI::Option* owner = i > 2 ? cmd.get_option_no_throw(before.substr(0, before.find('='))) : nullptr;
      if (owner != nullptr && owner->get_type_size() != 0) continue;
      const std::string name = arg.substr(0, 2);
      if (cmd.get_option_no_throw(name) != nullptr) continue;
      if (std::string advice = foreign_flag_advice(name); !advice.empty()) return advice;
      continue;
    }
    if (arg.rfind("--", 0) != 0 || arg.size() < 3) continue;
    const std::string name = arg.substr(0, arg.find('='));
    if (name == "--help" || cmd.get_option_no_throw(name) != nullptr) continue;
    if (curl_like)
      if (std::string advice = foreign_flag_advice(name); !advice.empty()) return advice;
    std::string best;
    std::size_t best_d = 4;  // suggest only what is close
    for (const CLI::Option* o : cmd.get_options())
      for (const auto& l : o->get_lnames()) {
        const std::size_t d = distance(name, "--" + l);
        if (d < best_d) {
          best_d = d;
          best = "--" + l;
        }
      }
    return "unknown flag " + name + (best.empty() ? std::string() : " (did you mean " + best + "?)");
  }
  return {};
}

}  // namespace

#ifdef BACKOFF_LEAN
// Runs backoff-http with the same arguments; returns only if it cannot.
int exec_http(int argc, char** argv) {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  std::string dir = ".";
  if (n > 0) {
    self[n] = 0;
    dir = std::string(self);
    dir = dir.substr(0, dir.rfind('/'));
  }
  std::vector<char*> args(argv, argv + argc);
  args.push_back(nullptr);
  for (const std::string& path : {dir + "/backoff-http", dir + "/../libexec/backoff/backoff-http"}) {
    args[0] = const_cast<char*>(path.c_str());
    ::execv(path.c_str(), args.data());
  }
  std::cerr << "backoff: cannot run backoff-http (looked in " << dir << " and " << dir
            << "/../libexec/backoff): " << std::strerror(errno) << "\n";
  return 126;
}
#endif

int main(int argc, char** argv) {
  using namespace backoff::cli;
#ifdef BACKOFF_LEAN
  if (argc > 1 && (std::string(argv[1]) == "get" || std::string(argv[1]) == "demo")) return exec_http(argc, argv);
#ifdef BACKOFF_SHARE_ELSEWHERE
  // run --share …: backoff-http has the Redis client (the command's own
  // arguments, after --, are not looked at).
  if (argc > 1 && std::string(argv[1]) == "run")
    for (int i = 2; i < argc && std::string(argv[i]) != "--"; ++i)
      if (std::string(argv[i]).starts_with("--share")) return exec_http(argc, argv);
#endif
#endif
  CLI::App app{"backoff: retry what fails, with exponential backoff and jitter", "backoff"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "backoff 0.1.0");
#ifdef BACKOFF_LEAN
  std::vector<subcommand> commands{run_command(app), schedule_command(app), simulate_command(app)};
  // Listed in --help; `backoff get …` and `backoff demo …` never get here (exec above).
  app.add_subcommand("get", "Download with retries, resume and checksums (backoff-http)")->allow_extras();
  app.add_subcommand("demo", "See it work against a failing local server (backoff-http)")->allow_extras();
#else
  // run: `backoff run --share …` (backoff execs this for the Redis client).
  std::vector<subcommand> commands{get_command(app), demo_command(app), run_command(app)};
  // Past the file-size limit (ulimit -f) a write fails with EFBIG and get says
  // which file it could not write, instead of dying of SIGXFSZ mid-write.
  // (Not for `run`: it must not pass an ignored SIGXFSZ on to its commands.)
  if (argc < 2 || std::string(argv[1]) != "run") ::signal(SIGXFSZ, SIG_IGN);
#endif
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const auto& c : commands) known = known || c.app->get_name() == argv[1];
#ifndef BACKOFF_LEAN
    known = known || std::string(argv[1]) == "schedule" ||
            std::string(argv[1]) == "simulate";  // reached here only when run directly
#endif
    if (!known) {
      std::cerr << "backoff: unknown subcommand '" << argv[1] << "' (choose run, get, schedule, demo or simulate)\n";
      return exit_code::usage;
    }
    for (const auto& c : commands) {
      if (c.app->get_name() != argv[1]) continue;
      if (const std::string bad = unknown_flag(*c.app, argc, argv); !bad.empty()) {
        std::cerr << "backoff " << argv[1] << ": " << bad << "\n";
        return exit_code::usage;
      }
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "backoff: " << e.what() << "\n";
    std::cerr << "Run 'backoff --help' or 'backoff SUBCOMMAND --help' for usage.\n";
    return exit_code::usage;
  }
  for (const auto& c : commands) {
    if (!c.app->parsed()) continue;
    try {
      return c.run();
    } catch (const usage_error& e) {
      std::cerr << "backoff " << c.app->get_name() << ": " << e.what() << "\n";
      return exit_code::usage;
    } catch (const std::invalid_argument& e) {
      std::cerr << "backoff " << c.app->get_name() << ": " << e.what() << "\n";
      return exit_code::usage;
    } catch (const std::exception& e) {
      std::cerr << "backoff " << c.app->get_name() << ": error: " << e.what() << "\n";
      return exit_code::failed;
    }
  }
  return exit_code::usage;
}
