// SPDX-License-Identifier: BSL-1.0
// Runs the real `backoff` binary (build/bin/backoff) the way a user would.
#include "cli_support.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using backoff::testing::fault;
using namespace cli_test;

TEST_F(Cli, RunRetriesACommandThatFailsTwiceThenSucceeds) {
  const auto r = cli({"run", "--initial", "10ms", "--max-attempts", "5", "--", "sh", "-c", counting(3)});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(runs(), 3);
  EXPECT_EQ(count_lines(r.err, "Will retry in"), 2) << r.err;
  EXPECT_NE(r.err.find("backoff: attempt 1 failed (exit 1). Will retry in"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("3 retries left."), std::string::npos) << r.err;
}

TEST_F(Cli, RunGivesUpWithTheLastExitStatus) {
  const auto r = cli({"run", "--initial", "1ms", "--max-attempts", "3", "--", "sh", "-c", counting(0, 7)});
  EXPECT_EQ(r.status, 7);
  EXPECT_EQ(runs(), 3);
  EXPECT_NE(r.err.find("giving up after 3 attempts (exhausted): exit 7"), std::string::npos) << r.err;
}

TEST_F(Cli, RunQuietPrintsNothing) {
  const auto r = cli({"run", "-q", "--initial", "1ms", "--max-attempts", "2", "--", "false"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "");
}

TEST_F(Cli, RetryOnExitCodes) {
  // 4 is not in the retry set: one run only.
  auto r = cli({"run", "--initial", "1ms", "--retry-on-exit", "3,75-78", "--", "sh", "-c", counting(0, 4)});
  EXPECT_EQ(r.status, 4);
  EXPECT_EQ(runs(), 1);
  fs::remove(dir / "count");
  // 76 is in the range: retried to the limit.
  r = cli({"run", "--initial", "1ms", "--max-attempts", "3", "--retry-on-exit", "3,75-78", "--", "sh", "-c",
           counting(0, 76)});
  EXPECT_EQ(r.status, 76);
  EXPECT_EQ(runs(), 3);
  fs::remove(dir / "count");
  // --no-retry-on-exit excludes a code from the default "any non-zero".
  r = cli({"run", "--initial", "1ms", "--no-retry-on-exit", "2", "--", "sh", "-c", counting(0, 2)});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(runs(), 1);
}

TEST_F(Cli, AttemptTimeoutKillsASleepingChild) {
  const auto r = cli({"run", "--attempt-timeout", "200ms", "--initial", "1ms", "--max-attempts", "2", "--", "sleep", "30"});
  EXPECT_EQ(r.status, 124);
  EXPECT_LT(r.took, 20s);
  EXPECT_EQ(count_lines(r.err, "timed out"), 2) << r.err;
}

TEST_F(Cli, AChildIgnoringSigtermGetsSigkillAfterTheGracePeriod) {
  const auto r = cli({"run", "--attempt-timeout", "200ms", "--kill-after", "200ms", "--max-attempts", "1", "--", "sh",
                      "-c", "trap '' TERM; sleep 30 & wait; sleep 30"});
  EXPECT_EQ(r.status, 124);
  EXPECT_LT(r.took, 20s);
}

TEST_F(Cli, SigtermIsForwardedAndStopsTheRetrying) {
  const auto r = cli({"run", "--initial", "1ms", "--max-attempts", "5", "--", "sh", "-c",
                      "trap 'exit 42' TERM; echo started >> runs; while true; do sleep 0.05; done"},
                     "", [&](pid_t pid) {
                       // The trap is set before "started" is written: no need to wait longer.
                       for (int i = 0; i < 2000 && !fs::exists(dir / "runs"); ++i) std::this_thread::sleep_for(10ms);
                       ::kill(pid, SIGTERM);
                     });
  EXPECT_EQ(r.status, 42) << r.err;
  EXPECT_EQ(slurp(dir / "runs"), "started\n");  // not retried
}

TEST_F(Cli, SigintDuringTheWaitStopsWithoutAnotherAttempt) {
  const auto r = cli({"run", "--initial", "30s", "--jitter", "none", "--", "sh", "-c", "echo run >> runs; exit 1"}, "",
                     [&](pid_t pid) {
                       wait_for_the_wait(pid, dir / "runs");  // the attempt is over: backoff is waiting
                       ::kill(pid, SIGINT);
                     });
  EXPECT_EQ(r.status, 130);  // stopped by SIGINT, not the status of an attempt that was to be retried
  EXPECT_LT(r.took, 20s);
  EXPECT_EQ(slurp(dir / "runs"), "run\n");
}

// --max-time on the real clock is checked in process on the manual clock
// (RunLoop.MaxTimeBoundsTheWaitsAndEachAttempt); here, only that the flag
// reaches the loop: the report's planned waits never cross it.
TEST_F(Cli, MaxTimeReachesTheLoop) {
  const auto r = cli({"run", "-q", "--max-time", "1s", "--initial", "100ms", "--jitter", "none", "--max-attempts", "100",
                      "--report", "report.json", "--", "false"});
  EXPECT_EQ(r.status, 1);
  const auto report = nlohmann::json::parse(slurp(dir / "report.json"));
  double waits = 0;
  for (const auto& a : report["attempts"]) waits += a["delay_s"].get<double>();
  EXPECT_LE(waits, 1.0);
  EXPECT_GE(report["attempts"].size(), 1u);
  EXPECT_LE(report["attempts"].size(), 4u);  // 100 + 200 + 400 ms of waits at most
  // And a running attempt is stopped when the time is up.
  const auto s = cli({"run", "--max-time", "300ms", "--", "sleep", "30"});
  EXPECT_EQ(s.status, 124);
  EXPECT_LT(s.took, 20s);
}

// The harness's watchdog: a stuck command (here with a grandchild that holds
// the output pipes) fails its test instead of hanging it.
TEST_F(Cli, TheHarnessKillsAStuckCommandAndItsChildren) {
  const auto r = run_cli({"run", "--", "sh", "-c", "sleep 30 & sleep 30"}, dir, "", {}, 500ms);
  EXPECT_EQ(r.status, 128 + SIGKILL);
  EXPECT_NE(r.err.find("[cli_test: killed after 500 ms]"), std::string::npos) << r.err;
  EXPECT_LT(r.took, 20s);
}

TEST_F(Cli, StdinGoesToTheFirstAttemptOnlyUnlessReplayed) {
  auto r = cli({"run", "--initial", "1ms", "--max-attempts", "3", "--", "sh", "-c", "cat >> got; exit 1"}, "hello\n");
  EXPECT_EQ(slurp(dir / "got"), "hello\n");
  fs::remove(dir / "got");
  // An attempt that reads only part of its input does not hand the rest to
  // the next one: later attempts read /dev/null. (sh's read takes one line.)
  r = cli({"run", "--initial", "1ms", "--max-attempts", "3", "--", "sh", "-c", "read -r l; echo \"[$l]\" >> got; exit 1"},
          "a\nb\nc\n");
  EXPECT_EQ(slurp(dir / "got"), "[a]\n[]\n[]\n");
  fs::remove(dir / "got");
  r = cli({"run", "--stdin-replay", "--initial", "1ms", "--max-attempts", "3", "--", "sh", "-c", "cat >> got; exit 1"},
          "hello\n");
  EXPECT_EQ(slurp(dir / "got"), "hello\nhello\nhello\n");
}

TEST_F(Cli, MissingCommandIsNotRetried) {
  const auto r = cli({"run", "--initial", "1ms", "--", "no-such-command-backoff-test"});
  EXPECT_EQ(r.status, 127);
  EXPECT_EQ(count_lines(r.err, "cannot run 'no-such-command-backoff-test'"), 1) << r.err;
}

TEST_F(Cli, RunReportHasEveryAttempt) {
  const auto r = cli({"run", "--initial", "1ms", "--max-attempts", "4", "--report", "r.json", "--", "sh", "-c", counting(3, 5)});
  EXPECT_EQ(r.status, 0);
  const auto report = nlohmann::json::parse(slurp(dir / "r.json"));
  ASSERT_EQ(report["attempts"].size(), 3u);
  EXPECT_EQ(report["attempts"][0]["exit_code"], 5);
  EXPECT_EQ(report["attempts"][0]["outcome"], "retryable");
  EXPECT_GE(report["attempts"][0]["delay_s"].get<double>(), 0.0);
  EXPECT_EQ(report["attempts"][2]["exit_code"], 0);
  EXPECT_EQ(report["attempts"][2]["outcome"], "success");
  EXPECT_EQ(report["reason"], "success");
  EXPECT_EQ(report["exit_status"], 0);
}

TEST_F(Cli, EveryBadFlagExitsTwoNamingIt) {
  const struct {
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{"run", "--initial", "abc", "--", "touch", "ran"}, "--initial: invalid duration 'abc'"},
      {{"run", "--initial", "5", "--", "touch", "ran"}, "--initial: invalid duration '5'"},
      {{"run", "--max-delay", "1ms", "--initial", "1s", "--", "touch", "ran"}, "--max-delay"},
      {{"run", "--multiplier", "0.5", "--", "touch", "ran"}, "--multiplier"},
      {{"run", "--multiplier", "two", "--", "touch", "ran"}, "--multiplier: invalid number 'two'"},
      {{"run", "--jitter", "wobbly", "--", "touch", "ran"}, "--jitter: unknown jitter 'wobbly'"},
      {{"run", "--jitter", "proportional:2", "--", "touch", "ran"}, "--jitter: proportional needs a fraction"},
      {{"run", "--jitter", "additive:x", "--", "touch", "ran"}, "--jitter additive: invalid duration 'x'"},
      {{"run", "--max-attempts", "-1", "--", "touch", "ran"}, "--max-attempts"},
      {{"run", "--max-attempts", "lots", "--", "touch", "ran"}, "--max-attempts"},
      {{"run", "--max-time", "soon", "--", "touch", "ran"}, "--max-time: invalid duration 'soon'"},
      {{"run", "--seed", "x", "--", "touch", "ran"}, "--seed"},
      {{"run", "--preset", "nope", "--", "touch", "ran"}, "--preset: unknown preset 'nope'"},
      {{"run", "--retry-on-exit", "1,x", "--", "touch", "ran"}, "--retry-on-exit: invalid exit codes '1,x'"},
      {{"run", "--retry-on-exit", "0", "--", "touch", "ran"}, "--retry-on-exit: 0 means success"},
      {{"run", "--no-retry-on-exit", "300", "--", "touch", "ran"}, "--no-retry-on-exit"},
      {{"run", "--attempt-timeout", "0", "--", "touch", "ran"}, "--attempt-timeout: must be longer than 0"},
      {{"run", "--kill-after", "-1s", "--", "touch", "ran"}, "--kill-after"},
      {{"run", "--bogus", "--", "touch", "ran"}, "--bogus"},
      {{"run"}, "command is required"},
      {{"get"}, "url is required"},
      {{"get", "example.com/x"}, "has no scheme"},
      {{"get", "http://127.0.0.1:1/x", "-H", "bad"}, "--header: 'bad' is not 'Name: value'"},
      {{"get", "http://127.0.0.1:1/x", "--timeout", "1y"}, "--timeout: invalid duration '1y'"},
      {{"get", "http://127.0.0.1:1/x", "-H", "A: b\r\nX-Smuggled: 1"}, "--header: 'A: b"},
      {{"get", "http://127.0.0.1:1/x", "--per-transfer-retry-after", "--host-wide-retry-after"},
       "--host-wide-retry-after: contradicts --per-transfer-retry-after"},
      {{"get", "http://127.0.0.1:1/x", "--idempotency-key", "auto"}, "--idempotency-key: only for requests with -X or -d"},
      {{"get", "http://127.0.0.1:1/x", "-X", "get"}, "--request: 'get' is not an HTTP method"},
      {{"get", "http://127.0.0.1:1/x", "-X", "GET /admin"}, "--request: 'GET /admin' is not an HTTP method"},
      {{"get", "http://127.0.0.1:1/x", "--capath", "/etc/passwd"}, "--capath: '/etc/passwd' is not a directory"},
      {{"schedule", "--format", "xml"}, "--format: unknown format 'xml'"},
      {{"schedule", "--attempts", "0"}, "--attempts: must be at least 1"},
      {{"schedule", "--samples", "0"}, "--samples: must be at least 1"},
      {{"frobnicate"}, "frobnicate"},
      {{}, "subcommand"},
  };
  for (const auto& c : cases) {
    const auto r = cli(c.args);
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    EXPECT_EQ(r.status, 2) << joined << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << joined << "\nstderr: " << r.err;
    EXPECT_FALSE(fs::exists(dir / "ran")) << joined;
  }
}

TEST_F(Cli, ScheduleStopsWhereRunWouldAtMaxTime) {
  // 1 + 2 + 4 = 7 s fit in 10 s; the next wait (8 s) would end past it.
  const auto r = cli({"schedule", "--jitter", "none", "--max-attempts", "10", "--max-time", "10s", "--format", "csv"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "retry,delay_ms,cumulative_ms\n1,1000.000,1000.000\n2,2000.000,3000.000\n3,4000.000,7000.000\n");
  const auto s = cli({"schedule", "--jitter", "full", "--seed", "3", "--samples", "200", "--max-time", "2s", "--format", "json"});
  EXPECT_EQ(s.status, 0) << s.err;
  for (const auto& row : nlohmann::json::parse(s.out)) EXPECT_LE(row["p95_ms"].get<double>(), 2000.0);
}

// A wait that ends exactly at --max-time is inside it (run would make that
// retry): 1 + 2 + 4 = 7 s.
TEST_F(Cli, ScheduleKeepsAWaitThatEndsExactlyAtMaxTime) {
  const auto r = cli({"schedule", "--jitter", "none", "--max-attempts", "10", "--max-time", "7s", "--format", "csv"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "retry,delay_ms,cumulative_ms\n1,1000.000,1000.000\n2,2000.000,3000.000\n3,4000.000,7000.000\n");
}

// One sample is one draw: its percentiles are that draw's waits.
TEST_F(Cli, ScheduleWithOneSampleShowsThatDraw) {
  const auto r = cli({"schedule", "--jitter", "none", "--attempts", "3", "--samples", "1", "--format", "csv"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "retry,p5_ms,p50_ms,p95_ms\n1,1000.000,1000.000,1000.000\n2,2000.000,2000.000,2000.000\n"
                   "3,4000.000,4000.000,4000.000\n");
}

// Exactly 10^7 draws in all is allowed (one more sample is not, in
// SimulateBadInputExitsTwo); --max-time keeps the output short.
TEST_F(Cli, ScheduleAllowsExactlyTenMillionDraws) {
  const auto r = cli({"schedule", "--jitter", "full", "--seed", "1", "--attempts", "10000", "--samples", "1000",
                      "--max-time", "1s", "--format", "csv"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')), "retry,p5_ms,p50_ms,p95_ms");
}

TEST_F(Cli, ScheduleCsvMatchesTheFormulaWithoutJitter) {
  const auto r = cli({"schedule", "--initial", "1s", "--multiplier", "2", "--max-delay", "10s", "--jitter", "none",
                      "--attempts", "6", "--format", "csv"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out,
            "retry,delay_ms,cumulative_ms\n"
            "1,1000.000,1000.000\n2,2000.000,3000.000\n3,4000.000,7000.000\n"
            "4,8000.000,15000.000\n5,10000.000,25000.000\n6,10000.000,35000.000\n");
}

TEST_F(Cli, ScheduleGooglePresetFollowsItsFormula) {
  const auto r = cli({"schedule", "--preset", "google-cloud", "--seed", "9", "--format", "json"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto rows = nlohmann::json::parse(r.out);
  ASSERT_EQ(rows.size(), 9u);  // the preset's 10 attempts: 9 retries
  double cumulative = 0;
  for (std::size_t n = 0; n < rows.size(); ++n) {
    const double d = rows[n]["delay_ms"].get<double>();
    const double base = std::min(64000.0, 1000.0 * static_cast<double>(1u << n));
    EXPECT_GE(d, base) << n;
    EXPECT_LE(d, std::min(64000.0, base + 1000.0)) << n;
    cumulative += d;
    EXPECT_NEAR(rows[n]["cumulative_ms"].get<double>(), cumulative, 1e-6);
    EXPECT_EQ(rows[n]["retry"], n + 1);
  }
  // Same seed, same schedule.
  EXPECT_EQ(cli({"schedule", "--preset", "google-cloud", "--seed", "9", "--format", "json"}).out, r.out);
}

TEST_F(Cli, ScheduleSamplesShowTheJitterSpread) {
  const auto r = cli({"schedule", "--initial", "1s", "--max-delay", "8s", "--jitter", "full", "--attempts", "4",
                      "--samples", "20000", "--seed", "3", "--format", "csv"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream in(r.out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "retry,p5_ms,p50_ms,p95_ms");
  for (int n = 0; n < 4; ++n) {
    ASSERT_TRUE(std::getline(in, line));
    double p5, p50, p95;
    int retry;
    ASSERT_EQ(std::sscanf(line.c_str(), "%d,%lf,%lf,%lf", &retry, &p5, &p50, &p95), 4);
    const double d = 1000.0 * (1 << n);  // U(0, d): p5 = 0.05 d, p50 = 0.5 d, p95 = 0.95 d
    EXPECT_NEAR(p5, 0.05 * d, 0.02 * d);
    EXPECT_NEAR(p50, 0.50 * d, 0.02 * d);
    EXPECT_NEAR(p95, 0.95 * d, 0.02 * d);
  }
}

TEST_F(Cli, GetSucceedsAfterFaults) {
  backoff::testing::fault_server server;
  const std::string data(300'000, 'z');
  server.add_file("/file.bin", data);
  server.script("/file.bin", {fault::status(503, "0"), fault::cut(1000), fault::reset()});
  const auto r = cli({"get", server.url("/file.bin"), "-o", "out.bin", "--initial", "10ms", "--report", "get.json"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(dir / "out.bin"), data);
  EXPECT_EQ(count_lines(r.err, "Will retry in"), 3) << r.err;
  const auto report = nlohmann::json::parse(slurp(dir / "get.json"));
  ASSERT_EQ(report["attempts"].size(), 4u);
  EXPECT_EQ(report["attempts"][0]["http_status"], 503);
  EXPECT_EQ(report["attempts"][0]["hint_s"], 0.0);
  EXPECT_EQ(report["attempts"][1]["transport_error"], "connection_dropped");
  EXPECT_EQ(report["attempts"][2]["transport_error"], "connection_reset");
  EXPECT_EQ(report["resumes"], 1);  // the last attempt continued at byte 1000 with a 206
}

TEST_F(Cli, GetNotFoundIsNotRetried) {
  backoff::testing::fault_server server;
  server.script("/nope", {fault::status(404)});
  const auto r = cli({"get", server.url("/nope"), "-o", "nope.bin", "--initial", "10ms"});
  EXPECT_EQ(r.status, 4);
  EXPECT_EQ(server.hits("/nope"), 1u);
  EXPECT_FALSE(fs::exists(dir / "nope.bin"));
  EXPECT_NE(r.err.find("HTTP 404"), std::string::npos) << r.err;
}

TEST_F(Cli, GetThatGivesUpLeavesNoFile) {
  backoff::testing::fault_server server;
  server.script("/down", std::vector<fault>(10, fault::status(503)));
  const auto r = cli({"get", server.url("/down"), "-o", "down.bin", "--initial", "1ms", "--max-attempts", "3"});
  EXPECT_EQ(r.status, 3);
  EXPECT_EQ(server.hits("/down"), 3u);
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST_F(Cli, GetDefaultsToTheUrlsFileName) {
  backoff::testing::fault_server server;
  server.add_file("/files/data.csv", "a,b\n1,2\n");
  const auto r = cli({"get", server.url("/files/data.csv?x=1"), "-q"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(dir / "data.csv"), "a,b\n1,2\n");
  EXPECT_EQ(r.err, "");
}

// On a terminal (a pty from util-linux's script(1)) the demo draws its status
// line; with -q it draws nothing, terminal or not.
TEST_F(Cli, DemoDrawsItsStatusLineOnlyOnATerminalAndNeverWithQuiet) {
  const std::string bin = BACKOFF_CLI;
  const std::string tty = run_cli_shell("cd " + quote(dir.string()) + " && script -qec " +
                                        quote(quote(bin) + " demo") + " /dev/null 2>&1");
  EXPECT_NE(tty.find("all downloads verified"), std::string::npos) << tty;
  EXPECT_NE(tty.find("\rdownloading 5 files"), std::string::npos) << tty;
  const std::string quiet = run_cli_shell("cd " + quote(dir.string()) + " && script -qec " +
                                          quote(quote(bin) + " demo -q") + " /dev/null 2>&1");
  EXPECT_NE(quiet.find("all downloads verified"), std::string::npos) << quiet;
  EXPECT_EQ(quiet.find("downloading"), std::string::npos) << quiet;
}

TEST_F(Cli, DemoPasses) {
  const auto r = cli({"demo"});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("all downloads verified"), std::string::npos) << r.out;
  EXPECT_LT(r.took, 30s);
  // stderr is a pipe here, not a terminal: no status line redrawn in place.
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("\033["), std::string::npos) << r.err;
}

TEST_F(Cli, SimulateContentionCsvIsDeterministic) {
  const std::vector<std::string> args{"simulate", "contention", "--clients", "1,10", "--runs", "20",
                                      "--strategies", "full,decorrelated", "--format", "csv", "--seed", "4"};
  const auto a = cli(args), b = cli(args);
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  std::istringstream in(a.out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "clients,strategy,mean_writes,mean_completion_ms,p50_completion_ms,p99_completion_ms");
  int rows = 0;
  while (std::getline(in, line)) ++rows;
  EXPECT_EQ(rows, 4);
  EXPECT_NE(a.out.find("1,full,1.000,"), std::string::npos) << a.out;  // one client writes once
}

TEST_F(Cli, SimulateFailuresAndOverloadCsvColumns) {
  const auto f = cli({"simulate", "failures", "--failure-rates", "0,0.5", "--policies", "no-retries,backoff-default",
                      "--format", "csv"});
  ASSERT_EQ(f.status, 0) << f.err;
  EXPECT_EQ(f.out.substr(0, f.out.find('\n')), "failure_rate,policy,amplification,success_rate");
  EXPECT_NE(f.out.find("0.0000,no-retries,1.0000,1.000000"), std::string::npos) << f.out;
  const auto o = cli({"simulate", "overload", "--policies", "backoff-default", "--format", "csv"});
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.out.substr(0, o.out.find('\n')), "policy,t_s,offered_per_s,attempts_per_s,goodput_per_s");
  {
    // Every number with one decimal.
    std::istringstream rows(o.out.substr(o.out.find('\n') + 1));
    std::string row;
    ASSERT_TRUE(std::getline(rows, row));
    std::istringstream fields(row);
    std::string field;
    std::getline(fields, field, ',');
    EXPECT_EQ(field, "backoff-default");
    while (std::getline(fields, field, ',')) EXPECT_EQ(field.size() - field.find('.'), 2u) << row;
  }
  const auto h = cli({"simulate", "hedging", "--requests", "5000", "--quantiles", "0.95", "--format", "csv"});
  ASSERT_EQ(h.status, 0) << h.err;
  EXPECT_EQ(h.out.substr(0, h.out.find('\n')), "hedge,mean_delay_ms,p50_ms,p99_ms,p999_ms,extra_load");
  EXPECT_NE(h.out.find("\nnone,0.00,"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("\np95,"), std::string::npos) << h.out;
}

// Each format of failures and fleet says what its header promises: JSON
// rows, the table's columns, whole requests per second in the fleet's CSV.
TEST_F(Cli, SimulateFailuresAndFleetInEveryFormat) {
  const std::vector<std::string> failures{"simulate", "failures", "--failure-rates", "0,0.5", "--policies",
                                          "no-retries,backoff-default"};
  auto with = [](std::vector<std::string> args, const std::string& format) {
    args.insert(args.end(), {"--format", format});
    return args;
  };
  const auto json = cli(with(failures, "json"));
  ASSERT_EQ(json.status, 0) << json.err;
  const auto rows = nlohmann::json::parse(json.out);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0]["failure_rate"], 0.0);
  EXPECT_EQ(rows[0]["policy"], "no-retries");
  EXPECT_EQ(rows[0]["amplification"], 1.0);
  EXPECT_EQ(rows[0]["success_rate"], 1.0);
  EXPECT_GT(rows[0]["requests"].get<std::uint64_t>(), 0u);
  const auto table = cli(failures);
  ASSERT_EQ(table.status, 0) << table.err;
  EXPECT_EQ(table.out.substr(0, table.out.find('\n')),
            " failure  policy            amplification       success     requests");
  EXPECT_NE(table.out.find("    0.00  no-retries               1.000x     100.0000%"), std::string::npos) << table.out;

  const auto fleet = cli({"simulate", "fleet", "--clients", "100", "--rate", "1", "--duration", "60s", "--outage",
                          "10s-20s", "--format", "csv"});
  ASSERT_EQ(fleet.status, 0) << fleet.err;
  std::istringstream in(fleet.out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "mode,t_s,offered_per_s,attempts_per_s,goodput_per_s");
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    EXPECT_EQ(line.find('.'), std::string::npos) << line;  // whole numbers
    EXPECT_EQ(std::count(line.begin(), line.end(), ','), 4) << line;
  }
  EXPECT_GT(n, 0);
  // The table: each mode's recovery in whole seconds (the outage ends at 20 s).
  const auto fleet_table = cli({"simulate", "fleet", "--clients", "100", "--rate", "1", "--duration", "60s", "--outage", "10s-20s"});
  ASSERT_EQ(fleet_table.status, 0) << fleet_table.err;
  std::istringstream lines(fleet_table.out);
  int modes = 0;
  while (std::getline(lines, line)) {
    if (!line.starts_with("local ") && !line.starts_with("shared ") && !line.starts_with("probe ") &&
        !line.starts_with("gates "))
      continue;
    ++modes;
    std::istringstream words(line);
    std::string mode, outage, overall, recovered;
    words >> mode >> outage >> overall >> recovered;
    EXPECT_TRUE(recovered == "never" || (recovered.back() == 's' && recovered.find('.') == std::string::npos)) << line;
  }
  EXPECT_EQ(modes, 4) << fleet_table.out;
}

TEST_F(Cli, SimulatePlotsWithGnuplot) {
  const auto r = cli({"simulate", "contention", "--clients", "1,5", "--runs", "5", "--plot", "c.png"});
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string png = slurp(dir / "c.png");
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  const auto svg = cli({"simulate", "overload", "--policies", "no-retries", "--plot", "o.svg"});
  ASSERT_EQ(svg.status, 0) << svg.err;
  EXPECT_NE(slurp(dir / "o.svg").find("<svg"), std::string::npos);
}

TEST_F(Cli, SimulateBadInputExitsTwo) {
  const struct {
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{"simulate", "weather"}, "unknown scenario 'weather'"},
      {{"simulate", "contention", "--clients", "0"}, "--clients"},
      {{"simulate", "contention", "--clients", "ten"}, "--clients: 'ten' is not a whole number"},
      {{"simulate", "contention", "--strategies", "yolo"}, "--strategies: unknown strategy 'yolo'"},
      {{"simulate", "contention", "--runs", "0"}, "--runs"},
      {{"simulate", "failures", "--failure-rates", "1.5"}, "--failure-rates: each must be in [0, 1]"},
      {{"simulate", "failures", "--policies", "nope"}, "--policies: unknown strategy 'nope'"},
      {{"simulate", "overload", "--shape", "wave"}, "--shape: unknown shape 'wave'"},
      {{"simulate", "overload", "--plot", "x.gif"}, "--plot: 'x.gif' must end in .png or .svg"},
      {{"simulate", "contention", "--format", "yaml"}, "--format: unknown format 'yaml'"},
      {{"simulate", "fleet", "--clients", "10000001"}, "--clients: must be in 1..10000000"},
      {{"simulate", "fleet", "--outage", "10s"}, "--outage: expected FROM-TO"},
      {{"simulate", "fleet", "--outage", "30s-10s"}, "--outage: must end after it starts"},
      {{"simulate", "fleet", "--duration", "1000000h"}, "--duration: must be in 1s..24h"},
      {{"simulate", "fleet", "--clients", "10000000", "--rate", "100"}, "more than 2e9 requests"},
      {{"simulate", "fleet", "--capacity", "0"}, "--capacity: must be in (0, 100]"},
      {{"simulate", "hedging", "--quantiles", "0.95,1.5"}, "--quantiles: '1.5' is not in (0, 1)"},
      {{"simulate", "hedging", "--quantiles", "p95"}, "--quantiles"},
      {{"simulate", "hedging", "--hedge-max", "1"}, "--hedge-max: must be in 2..10"},
      {{"simulate", "hedging", "--requests", "0"}, "--requests: must be in 1..10000000"},
      {{"simulate", "contention", "--runs", "2147483647"}, "--runs: must be in 1..100000"},
      {{"simulate", "failures", "--rate", "inf"}, "--rate: must be in (0, 1000000]"},
      {{"simulate", "failures", "--duration", "1000000h"}, "--duration: must be in (0, 24h]"},
      {{"simulate", "overload", "--duration", "1000000h"}, "--duration: overload needs 40s..24h"},
      {{"schedule", "--samples", "1000000000"}, "--samples: at most 1000000"},
      {{"schedule", "--max-attempts", "4294967295"}, "--max-attempts: 4294967294 retries to show is more than 10000"},
      {{"schedule", "--attempts", "5000", "--samples", "10000"}, "is more than 10000000 in all"},
      // one past each limit
      {{"simulate", "overload", "--duration", "86401s"}, "--duration: overload needs 40s..24h"},
      {{"simulate", "overload", "--duration", "39s"}, "--duration: overload needs 40s..24h"},
      {{"schedule", "--attempts", "1000", "--samples", "10001"}, "is more than 10000000 in all"},
  };
  for (const auto& c : cases) {
    const auto r = cli(c.args);
    EXPECT_EQ(r.status, 2) << c.args.back() << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
}

// Started with standard input closed, run's pipes may get descriptor 0:
// the command's output still comes through.
TEST_F(Cli, RunRelaysOutputWhenStartedWithStandardInputClosed) {
  const std::string out = run_cli_shell("cd " + quote(dir.string()) + " && (exec 0<&-; " + quote(BACKOFF_CLI) +
                                        " run -q --retry-if-output nomatch -- sh -c 'echo out; echo err >&2' > o 2> e); echo $?");
  EXPECT_EQ(out, "0\n");
  EXPECT_EQ(slurp(dir / "o"), "out\n");
  EXPECT_EQ(slurp(dir / "e"), "err\n");
}

// On a terminal (script(1)'s pseudo-terminal) the command runs in the
// foreground process group, so that Ctrl-C and job control reach it; after
// it, backoff takes the terminal back (a second run finds it so too).
TEST_F(Cli, RunGivesACommandOnATerminalTheForeground) {
  const std::string probe = "awk '{ print ($5 == $8) ? \"foreground\" : \"background\" }' /proc/self/stat";
  const std::string cmd = quote(BACKOFF_CLI) + " run -q -- sh -c " + quote(probe);
  const std::string out = run_cli_shell("cd " + quote(dir.string()) + " && script -qec " + quote(cmd + "; " + cmd) +
                                        " /dev/null < /dev/null");
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;
  EXPECT_EQ(out.find("background"), std::string::npos) << out;
  EXPECT_NE(out.find("foreground"), out.rfind("foreground")) << out;
}

// On a terminal backoff ignores SIGTTOU around its own tcsetpgrp calls; the
// command, on every attempt, gets the default back (a shell job would), so a
// background write to the terminal stops it as the user expects.
TEST_F(Cli, RunLeavesTheCommandsSigttouAtItsDefaultOnEveryAttempt) {
  const std::string probe = "awk '/^SigIgn/ { print $2 }' /proc/self/status >> ign; exit 1";
  const std::string cmd = quote(BACKOFF_CLI) + " run -q --initial 1ms --max-attempts 2 -- sh -c " + quote(probe);
  (void)run_cli_shell("cd " + quote(dir.string()) + " && script -qec " + quote(cmd) + " /dev/null < /dev/null");
  std::istringstream lines(slurp(dir / "ign"));
  int attempts = 0;
  for (std::string hex; lines >> hex; ++attempts)
    EXPECT_EQ(std::stoull(hex, nullptr, 16) & (1ULL << (SIGTTOU - 1)), 0u) << "attempt " << attempts + 1 << ": " << hex;
  EXPECT_EQ(attempts, 2);
}

TEST_F(Cli, RunRetriesAChildKilledByASignalItDidNotSend) {
  const auto r = cli({"run", "--initial", "1ms", "--max-attempts", "3", "--", "sh", "-c", "echo x >> runs; kill -KILL $$"});
  EXPECT_EQ(r.status, 137) << r.err;
  EXPECT_EQ(slurp(dir / "runs"), "x\nx\nx\n");
}

// --- run: what operators expect, and the fixes -----------------------------------------------

TEST_F(Cli, RunTellsTheCommandWhichAttemptItIs) {
  const auto r = cli({"run", "-q", "--initial", "1ms", "--max-attempts", "3", "--", "sh", "-c",
                      "echo $BACKOFF_ATTEMPT/$BACKOFF_MAX_ATTEMPTS >> log; exit 1"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(slurp(dir / "log"), "1/3\n2/3\n3/3\n");
}

TEST_F(Cli, RunWithMaxAttemptsZeroKeepsGoingUntilItWorks) {
  const auto r = cli({"run", "-q", "--initial", "1ms", "--max-delay", "1ms", "--max-attempts", "0", "--", "sh", "-c",
                      "echo $BACKOFF_MAX_ATTEMPTS >> log; [ $(wc -l < log) -ge 9 ]"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(count_lines(slurp(dir / "log"), "0"), 9);  // past the default of 4; 0 = no limit
}

TEST_F(Cli, RunStdinReplayToACommandThatDoesNotReadIsNotKilledBySigpipe) {
  const auto r = cli({"run", "--stdin-replay", "--", "true"}, std::string(1 << 20, 'z'));
  EXPECT_EQ(r.status, 0) << r.err;
  // The command itself still gets the usual SIGPIPE.
  const auto piped = cli({"run", "-q", "--max-attempts", "1", "--", "sh", "-c", "yes | head -c 1 > /dev/null; echo ${PIPESTATUS:-ok}"});
  EXPECT_EQ(piped.status, 0) << piped.err;
}

TEST_F(Cli, RunStoppedBetweenAttemptsExitsWithTheSignal) {
  for (const int sig : {SIGINT, SIGTERM}) {
    fs::remove(dir / "runs");
    const auto r = cli({"run", "--initial", "30s", "--jitter", "none", "--max-attempts", "3", "--", "sh", "-c", "echo x >> runs; exit 3"}, "",
                       [&](pid_t pid) {
                         // After the first attempt, during the 30 s wait.
                         wait_for_the_wait(pid, dir / "runs");
                         ::kill(pid, sig);
                       });
    EXPECT_EQ(r.status, 128 + sig) << r.err;
    EXPECT_EQ(slurp(dir / "runs"), "x\n");
  }
}

TEST_F(Cli, RunForwardsSighupAndLeavesNoOrphan) {
  for (const int sig : {SIGHUP, SIGQUIT}) {
    fs::remove(dir / "pid");
    const auto r = cli({"run", "--", "sh", "-c", "echo $$ > pid.tmp; mv pid.tmp pid; exec sleep 30"}, "", [&](pid_t pid) {
      for (int i = 0; i < 2000 && !fs::exists(dir / "pid"); ++i) std::this_thread::sleep_for(5ms);
      ::kill(pid, sig);
    });
    EXPECT_EQ(r.status, 128 + sig) << r.err;
    EXPECT_LT(r.took, 20s);
    const pid_t child = std::stoi(slurp(dir / "pid"));
    EXPECT_NE(::kill(child, 0), 0) << "the command is still running after backoff exited (signal " << sig << ")";
    if (::kill(child, 0) == 0) ::kill(child, SIGKILL);
  }
}

TEST_F(Cli, RunRejectsValuesThatWouldBeMisreadByName) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"run", "--max-time", "0", "--", "true"}, "--max-time: must be longer than 0"},
      {{"run", "--seed", "-1", "--", "true"}, "--seed: '-1' is not a whole number"},
      {{"run", "--seed", "18446744073709551616", "--", "true"}, "--seed: '18446744073709551616'"},
      {{"run", "--seed", "1e23", "--", "true"}, "--seed: '1e23'"},
      {{"run", "--seed", "", "--", "true"}, "--seed: '' is not a whole number"},
      {{"run", "--max-atempts", "3", "--", "true"}, "unknown flag --max-atempts (did you mean --max-attempts?)"},
      {{"get", "--stal-timeout", "1s", "http://h/x"}, "unknown flag --stal-timeout (did you mean --stall-timeout?)"},
      {{"run", "--frobnicate", "--", "true"}, "unknown flag --frobnicate"},
      // The nearest flag, counting every letter (the first one too).
      {{"run", "--n-retry-on-exit", "3", "--", "true"}, "unknown flag --n-retry-on-exit (did you mean --no-retry-on-exit?)"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = cli(args);
    EXPECT_EQ(r.status, 2) << message << ": " << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
  // The same seed twice gives the same waits; the largest one is accepted.
  EXPECT_EQ(cli({"run", "-q", "--seed", "18446744073709551615", "--max-attempts", "1", "--", "true"}).status, 0);
}

// --- the man page and the bash completion follow the program ----------------------------------

TEST_F(Cli, EveryFlagOfEverySubcommandIsInTheManPage) {
  const std::string man = slurp(fs::path(BACKOFF_SOURCE_DIR) / "docs" / "man" / "backoff.1");
  ASSERT_FALSE(man.empty());
  const std::regex flag("(^|[ ,])(--[a-z][a-z0-9-]*)");
  for (const std::string sub : {"run", "get", "schedule", "simulate", "demo"}) {
    const auto r = cli({sub, "--help"});
    ASSERT_EQ(r.status, 0) << sub;
    int seen = 0;
    for (std::sregex_iterator it(r.out.begin(), r.out.end(), flag), end; it != end; ++it) {
      std::string name = (*it)[2];
      if (name == "--help") continue;
      std::string roff;  // troff writes a hyphen as \-
      for (char c : name) roff += c == '-' ? std::string("\\-") : std::string(1, c);
      EXPECT_NE(man.find(roff), std::string::npos) << "backoff(1) does not document " << sub << " " << name;
      ++seen;
    }
    EXPECT_GT(seen, 2) << sub;
  }
  // And every exit code the program documents.
  for (const std::string code : {".B 75", ".B 124", ".B 126", ".B 127", ".B 6", ".B 5", ".B 4", ".B 3", ".B 2"})
    EXPECT_NE(man.find(code + "\n"), std::string::npos) << code;
}

TEST_F(Cli, TheBashCompletionOffersSubcommandsAndTheirFlags) {
  auto complete = [&](const std::string& words, int cword) {
    const std::string script = "source '" + std::string(BACKOFF_SOURCE_DIR) + "/packaging/backoff.bash-completion'; " +
                               "COMP_WORDS=(" + words + "); COMP_CWORD=" + std::to_string(cword) +
                               "; _backoff; printf '%s\\n' \"${COMPREPLY[@]}\"";
    const std::string bin = fs::path(BACKOFF_CLI).parent_path().string();
    return run_cli_shell("PATH='" + bin + "':$PATH bash -c " + quote(script));
  };
  EXPECT_EQ(complete("backoff r", 1), "run\n");
  EXPECT_EQ(complete("backoff get --stall", 2), "--stall-timeout\n");
  EXPECT_EQ(complete("backoff run --max-at", 2), "--max-attempts\n");
  EXPECT_EQ(complete("backoff simulate fl", 2), "fleet\n");
  EXPECT_EQ(complete("backoff get --preset g", 3), "google-cloud\ngrpc\n");
}

TEST_F(Cli, RunDelaysAreTheWaitsSpelledOut) {
  const auto r = cli({"run", "-q", "--delays", "10ms,30ms", "--max-attempts", "4", "--report", "r.json", "--", "false"});
  EXPECT_EQ(r.status, 1) << r.err;
  const auto report = nlohmann::json::parse(slurp(dir / "r.json"));
  ASSERT_EQ(report["attempts"].size(), 4u);
  EXPECT_DOUBLE_EQ(report["attempts"][0]["delay_s"].get<double>(), 0.01);
  EXPECT_DOUBLE_EQ(report["attempts"][1]["delay_s"].get<double>(), 0.03);
  EXPECT_DOUBLE_EQ(report["attempts"][2]["delay_s"].get<double>(), 0.03);  // the last one repeats
  const auto bad = cli({"run", "--delays", "1s", "--max-delay", "5s", "--", "true"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--delays: cannot be combined with --max-delay"), std::string::npos) << bad.err;
}

TEST_F(Cli, RunRetriesOnOutputThatSaysSoAndPassesItThrough) {
  // Exit 0 twice with "429" in the output, then a clean run.
  const auto r = cli({"run", "-q", "--initial", "1ms", "--retry-if-output", "429|Too Many Requests", "--", "sh", "-c",
                      "echo x >> runs; if [ $(wc -l < runs) -lt 3 ]; then echo 'HTTP 429' ; echo 'slow down' >&2; "
                      "else echo fine; fi"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(dir / "runs"), "x\nx\nx\n");
  EXPECT_EQ(r.out, "HTTP 429\nHTTP 429\nfine\n");  // streamed through, every attempt
  EXPECT_EQ(count_lines(r.err, "slow down"), 2);
  // A match that never goes away: retries run out, and that is not a success.
  const auto stuck = cli({"run", "--initial", "1ms", "--max-attempts", "2", "--retry-if-output", "busy", "--", "sh",
                          "-c", "echo busy; exit 0"});
  EXPECT_EQ(stuck.status, 1) << stuck.err;
  EXPECT_EQ(stuck.out, "busy\nbusy\n");
  EXPECT_NE(stuck.err.find("output matched --retry-if-output (exit 0)"), std::string::npos) << stuck.err;
}

TEST_F(Cli, RunSucceedsOnOutputThatSaysSo) {
  const auto r = cli({"run", "-q", "--initial", "1ms", "--success-if-output", "already (exists|done)", "--", "sh", "-c",
                      "echo x >> runs; echo 'error: already exists' >&2; exit 1"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(dir / "runs"), "x\n");
  const auto bad = cli({"run", "--retry-if-output", "(unclosed", "--", "true"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--retry-if-output: '(unclosed' is not a valid regular expression"), std::string::npos) << bad.err;
}

// A plain `backoff run` loads neither the Redis client nor OpenSSL (loading
// libcrypto was most of its start-up); `run --share` execs backoff-http,
// which has them (the share tests run it).
TEST_F(Cli, RunWithoutShareLoadsNoRedisOrOpenSsl) {
  const auto r = cli({"run", "-q", "--", "sh", "-c", "cat /proc/$PPID/maps > maps"});
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string maps = slurp(dir / "maps");
  EXPECT_NE(maps.find("libc.so"), std::string::npos) << maps;  // the parent's maps were read
  EXPECT_EQ(maps.find("libcrypto"), std::string::npos);
  EXPECT_EQ(maps.find("libssl"), std::string::npos);
  EXPECT_EQ(maps.find("libhiredis"), std::string::npos);
}

// An error that is not about the flags (here, no temporary directory for the
// plot's data) exits 1 with the reason, not 0 and not the usage status 2.
TEST_F(Cli, AnErrorThatIsNotAboutTheFlagsExitsOneAndSaysWhy) {
  const std::string out = run_cli_shell("cd " + quote(dir.string()) + " && TMPDIR=/nonexistent " +
                                        quote(BACKOFF_CLI) +
                                        " simulate contention --clients 1 --runs 1 --plot c.png > /dev/null 2> err; "
                                        "echo $?");
  EXPECT_EQ(out, "1\n");
  const std::string err = slurp(dir / "err");
  EXPECT_NE(err.find("backoff simulate: error: "), std::string::npos) << err;
  EXPECT_NE(err.find("temp_directory_path"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir / "c.png"));
}
