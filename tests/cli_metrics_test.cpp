// SPDX-License-Identifier: BSL-1.0
// backoff run/get --metrics, --metrics-name, --push-metrics: every file the
// tests write passes Debian's `promtool check metrics`; node_exporter's
// textfile collector and a Pushgateway, started here on 127.0.0.1, take them.
#include <httplib.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <mutex>
#include <thread>

#include "cli_support.hpp"
#include "metrics.hpp"
#include "wait.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using backoff::testing::fault;
using namespace cli_test;

namespace {

// Runs a program (argv) to its end; its exit status and what it printed (both streams).
std::pair<int, std::string> run_tool(const std::vector<std::string>& argv, const fs::path& input = {}) {
  std::string cmd;
  for (const auto& a : argv) cmd += "'" + a + "' ";
  if (!input.empty()) cmd += "< '" + input.string() + "' ";
  cmd += "2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = p ? ::pclose(p) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// promtool check metrics: exit 0 and not a word (a lint is a failure too).
void expect_valid(const fs::path& file) {
  const auto [status, out] = run_tool({"promtool", "check", "metrics"}, file);
  EXPECT_EQ(status, 0) << out << slurp(file);
  EXPECT_EQ(out, "") << slurp(file);
}

// A Prometheus component from Debian on 127.0.0.1 and an ephemeral port,
// stopped at the end; ready once GET /metrics answers.
class daemon_process {
 public:
  daemon_process(const std::string& program, std::vector<std::string> args) : port_(backoff::testing::free_port()) {
    args.insert(args.begin(), program);
    args.push_back("--web.listen-address=127.0.0.1:" + std::to_string(port_));
    pid_ = ::fork();
    if (pid_ == 0) {
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      std::vector<char*> v;
      for (auto& a : args) v.push_back(a.data());
      v.push_back(nullptr);
      ::execvp(v[0], v.data());
      ::_exit(127);
    }
    httplib::Client c("127.0.0.1", port_);
    for (int i = 0; i < 500; ++i) {
      if (auto r = c.Get("/metrics"); r && r->status == 200) return;
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error(program + " did not start");
      }
      std::this_thread::sleep_for(20ms);
    }
    throw std::runtime_error(program + " did not answer on port " + std::to_string(port_));
  }
  ~daemon_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  std::string scrape() const {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/metrics");
    return r ? r->body : std::string();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  pid_t pid_ = -1;
};

std::optional<double> sample(const fs::path& file, const std::string& family, const std::string& name) {
  return backoff::cli::find_sample(slurp(file), family, name);
}

}  // namespace

// A success, then a failure under the same name: the file passes promtool,
// the failure's exit code and attempts are there, and the last success is
// carried over from the file; nothing but the file and its lock is left.
TEST_F(Cli, MetricsFileKeepsTheLastSuccessAcrossAFailure) {
  const fs::path m = dir / "jobs.prom";
  auto ok = cli({"run", "--metrics", m.string(), "--metrics-name", "nightly", "--", "true"});
  ASSERT_EQ(ok.status, 0) << ok.err;
  expect_valid(m);
  const auto success = sample(m, "backoff_last_success_timestamp_seconds", "nightly");
  ASSERT_TRUE(success);
  EXPECT_EQ(sample(m, "backoff_last_run_timestamp_seconds", "nightly"), success);
  EXPECT_EQ(sample(m, "backoff_last_run_attempts", "nightly"), 1.0);
  const double now_s = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_NEAR(*success, now_s, 60);

  std::this_thread::sleep_for(20ms);
  auto bad = cli({"run", "--metrics", m.string(), "--metrics-name", "nightly", "--initial", "1ms", "--max-attempts", "3",
                  "-q", "--", "sh", "-c", "exit 3"});
  ASSERT_EQ(bad.status, 3) << bad.err;
  expect_valid(m);
  EXPECT_EQ(sample(m, "backoff_last_success_timestamp_seconds", "nightly"), success);  // carried over
  EXPECT_GT(*sample(m, "backoff_last_run_timestamp_seconds", "nightly"), *success);
  EXPECT_EQ(sample(m, "backoff_last_run_exit_code", "nightly"), 3.0);
  EXPECT_EQ(sample(m, "backoff_last_run_attempts", "nightly"), 3.0);
  EXPECT_NE(slurp(m).find("backoff_last_run_failed_attempts{name=\"nightly\",reason=\"exit_3\"} 3"), std::string::npos)
      << slurp(m);
  EXPECT_NE(slurp(m).find("backoff_last_run_stop_reason{name=\"nightly\",reason=\"exhausted\"} 1"), std::string::npos);
  EXPECT_EQ(slurp(m).find("reason=\"success\""), std::string::npos);  // the old reason is gone
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"jobs.prom", "jobs.prom.lock"}));
}

// A metrics file whose lock another process keeps: the run says so after
// 5 s, and its own exit status is kept (metrics never fail a job).
TEST_F(Cli, AMetricsFileLockedByAnotherProcessIsReportedNotWaitedForEver) {
  const fs::path m = dir / "held.prom";
  const int lock = ::open((m.string() + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(lock, 0);
  ASSERT_EQ(::flock(lock, LOCK_EX), 0);
  const auto r = cli({"run", "--metrics", m.string(), "--", "true"});
  ::close(lock);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("--metrics: '" + m.string() + ".lock' stayed locked for 5 s"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(m));
}

// Several names in one file, written by runs at the same time: none is lost,
// the file is never torn; and a name with a quote, a backslash and a line
// break is escaped as the exposition format asks.
TEST_F(Cli, MetricsOfManyNamesShareOneFileUnderConcurrentRuns) {
  const fs::path m = dir / "all.prom";
  std::vector<std::thread> runs;
  std::vector<int> status(8, -1);
  for (int i = 0; i < 8; ++i)
    runs.emplace_back([&, i] {
      status[static_cast<std::size_t>(i)] =
          cli({"run", "--metrics", m.string(), "--metrics-name", "job" + std::to_string(i), "--", "true"}).status;
    });
  for (auto& t : runs) t.join();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(status[static_cast<std::size_t>(i)], 0);
    EXPECT_TRUE(sample(m, "backoff_last_run_exit_code", "job" + std::to_string(i))) << i << "\n" << slurp(m);
  }
  expect_valid(m);
  const std::string odd = "a \"quoted\" \\ name\nnext line";
  ASSERT_EQ(cli({"run", "--metrics", m.string(), "--metrics-name", odd, "--", "false"}).status, 1);
  expect_valid(m);
  EXPECT_EQ(sample(m, "backoff_last_run_exit_code", odd), 1.0);
  EXPECT_NE(slurp(m).find(R"(name="a \"quoted\" \\ name\nnext line")"), std::string::npos) << slurp(m);
  EXPECT_FALSE(sample(m, "backoff_last_success_timestamp_seconds", odd));  // never succeeded
  EXPECT_TRUE(sample(m, "backoff_last_run_exit_code", "job7"));
}

// Stopped by a signal between attempts: the file is still written, with the
// exit status the shell sees (128 + the signal).
TEST_F(Cli, MetricsAreWrittenWhenASignalStopsTheRun) {
  const fs::path m = dir / "sig.prom";
  const auto r = cli({"run", "--metrics", m.string(), "--initial", "30s", "--jitter", "none", "--", "sh", "-c",
                      "echo x >> runs; exit 1"},
                     "", [&](pid_t pid) {
                       wait_for_the_wait(pid, dir / "runs");
                       ::kill(pid, SIGTERM);
                     });
  EXPECT_EQ(r.status, 128 + SIGTERM) << r.err;
  expect_valid(m);
  EXPECT_EQ(sample(m, "backoff_last_run_exit_code", "run"), 128.0 + SIGTERM);  // the default name: the subcommand
}

// get: bytes, failed attempts by HTTP status, time spent waiting.
TEST_F(Cli, MetricsOfGetCountBytesAndFailuresByStatus) {
  backoff::testing::fault_server server;
  server.add_file("/f", std::string(5000, 'g'));
  server.script("/f", {fault::status(503, "0"), fault::status(503, "0")});
  const fs::path m = dir / "get.prom";
  const auto r = cli({"get", "-q", "--metrics", m.string(), "--initial", "10ms", "--jitter", "none", "-o", "f",
                      server.url("/f")});
  ASSERT_EQ(r.status, 0) << r.err;
  expect_valid(m);
  EXPECT_EQ(sample(m, "backoff_last_run_bytes", "get"), 5000.0);
  EXPECT_EQ(sample(m, "backoff_last_run_attempts", "get"), 3.0);
  EXPECT_GE(*sample(m, "backoff_last_run_wait_seconds", "get"), 0.02);
  EXPECT_NE(slurp(m).find("backoff_last_run_failed_attempts{name=\"get\",reason=\"http_503\"} 2"), std::string::npos)
      << slurp(m);
  EXPECT_EQ(slurp(m).find("127.0.0.1"), std::string::npos);  // no URL in any label
}

// Bad places are refused before anything runs, naming the flag.
TEST_F(Cli, MetricsFlagsAreCheckedBeforeTheRun) {
  const auto nodir = cli({"run", "--metrics", (dir / "no" / "such" / "x.prom").string(), "--", "sh", "-c", "echo ran > ran"});
  EXPECT_EQ(nodir.status, 2);
  EXPECT_NE(nodir.err.find("--metrics"), std::string::npos) << nodir.err;
  EXPECT_FALSE(fs::exists(dir / "ran"));
  fs::create_directories(dir / "d.prom");
  const auto isdir = cli({"run", "--metrics", (dir / "d.prom").string(), "--", "true"});
  EXPECT_EQ(isdir.status, 2);
  EXPECT_NE(isdir.err.find("not a regular file"), std::string::npos) << isdir.err;
  for (const std::string bad : {"https://push.example:9091", "ftp://x", "http://", "http://h:99999", "http://h:0",
                                "http://h:91x", "http://h:", "http://h:-1", "http://u@h:9091", "http://[::1]:0",
                                "http://[::1]:65536", "http://[::1]:", "http://[]:9091", "http://[::1:9091"}) {
    const auto r = cli({"get", "--push-metrics", bad, "-o", "f", "http://127.0.0.1:1/x"});
    EXPECT_EQ(r.status, 2) << bad;
    EXPECT_NE(r.err.find("--push-metrics"), std::string::npos) << bad << ": " << r.err;
  }
}

// Debian's node_exporter reads the file with its textfile collector: the
// families are served, and it reports no scrape error.
TEST_F(Cli, MetricsFileIsReadByNodeExportersTextfileCollector) {
  fs::create_directories(dir / "textfile");
  const fs::path m = dir / "textfile" / "backoff.prom";
  ASSERT_EQ(cli({"run", "--metrics", m.string(), "--metrics-name", "backup", "--", "true"}).status, 0);
  ASSERT_EQ(cli({"run", "--metrics", m.string(), "--metrics-name", "sync", "--", "false"}).status, 1);
  daemon_process exporter("prometheus-node-exporter",
                          {"--collector.disable-defaults", "--collector.textfile",
                           "--collector.textfile.directory=" + (dir / "textfile").string()});
  const std::string text = exporter.scrape();
  EXPECT_NE(text.find("backoff_last_success_timestamp_seconds{name=\"backup\"}"), std::string::npos) << text;
  EXPECT_NE(text.find("backoff_last_run_exit_code{name=\"sync\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("node_textfile_scrape_error 0"), std::string::npos) << text;
}

// A Pushgateway takes the push: the group job="backoff", name=NAME; a failed
// run after a success keeps the success pushed before (POST replaces only
// the families it sends).
TEST_F(Cli, MetricsArePushedToAPushgateway) {
  // In memory only: Debian's pushgateway persists to /var/lib/prometheus by
  // default, and then every run (and the mutation runner's many) would see
  // the groups pushed by the ones before.
  daemon_process gateway("prometheus-pushgateway", {"--persistence.file="});
  ASSERT_EQ(gateway.scrape().find("job=\"backoff\""), std::string::npos) << "the gateway starts empty";
  const auto ok = cli({"run", "--push-metrics", gateway.url(), "--metrics-name", "nightly", "--", "true"});
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(ok.err.find("warning"), std::string::npos) << ok.err;
  std::string text = gateway.scrape();
  EXPECT_NE(text.find("backoff_last_run_exit_code{instance=\"\",job=\"backoff\",name=\"nightly\"} 0"), std::string::npos)
      << text;
  const auto bad = cli({"run", "--push-metrics", gateway.url(), "--metrics-name", "nightly", "-q", "--max-attempts", "1",
                        "--", "false"});
  ASSERT_EQ(bad.status, 1) << bad.err;
  text = gateway.scrape();
  EXPECT_NE(text.find("backoff_last_run_exit_code{instance=\"\",job=\"backoff\",name=\"nightly\"} 1"), std::string::npos)
      << text;
  EXPECT_NE(text.find("backoff_last_success_timestamp_seconds{instance=\"\",job=\"backoff\",name=\"nightly\"}"),
            std::string::npos)
      << text;
  // A name that is not a plain path segment travels base64-encoded.
  ASSERT_EQ(cli({"run", "--push-metrics", gateway.url(), "--metrics-name", "a/b c", "--", "true"}).status, 0);
  EXPECT_NE(gateway.scrape().find("name=\"a/b c\""), std::string::npos);
  // Nobody listening: a warning; the run's own status is kept.
  const auto gone = cli({"run", "--push-metrics", "http://127.0.0.1:1", "--", "true"});
  EXPECT_EQ(gone.status, 0);
  EXPECT_NE(gone.err.find("warning: --push-metrics"), std::string::npos) << gone.err;
  // Started with standard input closed, the push's socket may be descriptor 0: it is pushed all the same.
  EXPECT_EQ(run_cli_shell("cd " + quote(dir.string()) + " && (exec 0<&-; " + quote(BACKOFF_CLI) + " run --push-metrics " +
                          gateway.url() + " --metrics-name closed -- true); echo $?"),
            "0\n");
  EXPECT_NE(gateway.scrape().find("name=\"closed\""), std::string::npos);
}

// A Pushgateway that answers anything but 2xx (here 300, one past the
// range) is reported, and the run's status is kept.
TEST_F(Cli, APushgatewayAnswerOutside2xxIsAWarning) {
  for (const int status : {300, 199}) {
    httplib::Server fake;
    auto answer = [status](const httplib::Request&, httplib::Response& res) { res.status = status; };
    fake.Put(".*", answer);
    fake.Post(".*", answer);
    const int port = fake.bind_to_any_port("127.0.0.1");
    std::thread serve([&] { fake.listen_after_bind(); });
    const auto r = cli({"run", "--push-metrics", "http://127.0.0.1:" + std::to_string(port), "--", "true"});
    fake.stop();
    serve.join();
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("the Pushgateway answered HTTP " + std::to_string(status)), std::string::npos) << r.err;
  }
}

// A Pushgateway at an IPv6 literal: with a port ("[::1]:PORT") and, through
// a path, without one being needed past the brackets. The port is the one
// after the brackets, and the Host header keeps them, as RFC 9110 writes it.
TEST_F(Cli, MetricsArePushedToAPushgatewayAtAnIpv6Address) {
  httplib::Server fake;
  std::mutex m;
  std::vector<std::string> hosts, paths;
  fake.Put(".*", [&](const httplib::Request& rq, httplib::Response& res) {
    std::lock_guard lock(m);
    hosts.push_back(rq.get_header_value("Host"));
    paths.push_back(rq.path);
    res.status = 200;
  });
  const int port = fake.bind_to_any_port("::1");
  if (port <= 0) GTEST_SKIP() << "no ::1 on this machine";
  std::thread serve([&] { fake.listen_after_bind(); });
  const auto r = cli({"run", "--push-metrics", "http://[::1]:" + std::to_string(port) + "/gw", "--metrics-name", "six",
                      "--", "true"});
  fake.stop();
  serve.join();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
  ASSERT_EQ(hosts.size(), 1u) << r.err;
  EXPECT_EQ(hosts[0], "[::1]:" + std::to_string(port));
  EXPECT_EQ(paths[0], "/gw/metrics/job/backoff/name/six");
}

// A transfer that never got an HTTP answer is counted by its transport
// error, not as an "http_0".
TEST_F(Cli, MetricsCountAFailedConnectionByWhyItFailed) {
  const fs::path m = dir / "refused.prom";
  const auto r = cli({"get", "-q", "--metrics", m.string(), "--initial", "1ms", "--max-attempts", "2", "-o", "f",
                      "http://127.0.0.1:1/x"});
  EXPECT_NE(r.status, 0);
  expect_valid(m);
  EXPECT_NE(slurp(m).find("backoff_last_run_failed_attempts{name=\"get\",reason=\"connect_failed\"} 2"), std::string::npos)
      << slurp(m);
  EXPECT_EQ(slurp(m).find("http_0"), std::string::npos) << slurp(m);
}

// The alert rule the README shows is a rule file promtool accepts.
TEST_F(Cli, TheReadmesAlertRuleIsValid) {
  const fs::path rules = fs::path(BACKOFF_SOURCE_DIR) / "docs" / "prometheus" / "backoff-alerts.yml";
  const auto [status, out] = run_tool({"promtool", "check", "rules", rules.string()});
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("SUCCESS: 1 rules found"), std::string::npos) << out;
  EXPECT_NE(slurp(fs::path(BACKOFF_SOURCE_DIR) / "README.md").find("time() - backoff_last_success_timestamp_seconds > 26*3600"),
            std::string::npos);
}
