// SPDX-License-Identifier: BSL-1.0
// backoff::observer through the decision step, and backoff::metrics: what the
// loops tell, counted, and rendered as text that promtool accepts.
#include "backoff/metrics.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

#include "backoff/backoff.hpp"

using namespace std::chrono_literals;
using backoff::attempt_outcome;
using backoff::stop_reason;

namespace {

// Records every event in order, as text.
struct recorder final : backoff::observer {
  std::vector<std::string> events;
  void attempt_started(std::uint32_t n, backoff::time_point) noexcept override { events.push_back("start " + std::to_string(n)); }
  void attempt_ended(const backoff::attempt_ended_event& e) noexcept override {
    events.push_back("attempt " + std::to_string(e.number) + " " + std::string(backoff::to_string(e.outcome)) + " took " +
                     std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(e.took).count()) + "ms");
  }
  void retry_scheduled(const backoff::retry_scheduled_event& e) noexcept override {
    events.push_back("retry " + std::to_string(e.next) + " in " +
                     std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(e.delay).count()) + "ms" +
                     (e.hint ? " hinted" : ""));
  }
  void gate_denied(stop_reason why) noexcept override { events.push_back("denied " + std::string(backoff::to_string(why))); }
  void ended(stop_reason why, std::uint32_t attempts) noexcept override {
    events.push_back("ended " + std::string(backoff::to_string(why)) + " after " + std::to_string(attempts));
  }
};

const backoff::policy doubling{.schedule = backoff::exponential{.initial = 1s, .multiplier = 2.0, .max_delay = 64s},
                               .jitter = backoff::jitter::none(),
                               .stop = backoff::stop::after_attempts(4)};

}  // namespace

// The sync loop tells the observer each attempt (with how long it took on the
// loop's clock), each retry with its wait, and the end.
TEST(Observer, TheLoopTellsEachAttemptRetryAndTheEnd) {
  backoff::manual_clock clock;
  recorder rec;
  int calls = 0;
  auto r = backoff::try_retry(doubling, [&] {
    clock.advance(250ms);
    if (++calls < 3) throw std::runtime_error("refused");
    return calls;
  }, {.classify = {.retry_exception = [](const std::exception_ptr&) { return true; }}, .observer = &rec, .clock = &clock});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(rec.events, (std::vector<std::string>{"start 1", "attempt 1 retryable took 250ms", "retry 2 in 1000ms",
                                                  "start 2", "attempt 2 retryable took 250ms", "retry 3 in 2000ms",
                                                  "start 3", "attempt 3 success took 250ms", "ended success after 3"}));
}

// A gate's denial is told, then the end with its reason; the attempt limit too.
TEST(Observer, DenialsAndTheAttemptLimitAreTold) {
  backoff::manual_clock clock;
  recorder rec;
  backoff::circuit_breaker breaker({.failure_ratio = 0.5, .minimum_throughput = 2, .break_duration = 1min});
  auto fail = [&]() -> int { throw std::runtime_error("down"); };
  const backoff::options<int> o{.classify = {.retry_exception = [](const std::exception_ptr&) { return true; }},
                                .gate = &breaker,
                                .gate_first_attempt = true,
                                .observer = &rec,
                                .clock = &clock};
  EXPECT_EQ(backoff::try_retry(doubling, fail, o).reason, stop_reason::circuit_open);
  EXPECT_EQ(rec.events.back(), "ended circuit_open after 2");
  EXPECT_EQ(rec.events[rec.events.size() - 2], "denied circuit_open");
  rec.events.clear();
  EXPECT_EQ(backoff::try_retry(doubling, fail, o).reason, stop_reason::circuit_open);  // denied before any attempt
  EXPECT_EQ(rec.events, (std::vector<std::string>{"denied circuit_open", "ended circuit_open after 0"}));

  recorder limit;
  auto r = backoff::try_retry(doubling, fail, {.classify = {.retry_exception = [](const std::exception_ptr&) { return true; }},
                                               .observer = &limit, .clock = &clock});
  EXPECT_EQ(r.reason, stop_reason::exhausted);
  EXPECT_EQ(limit.events.back(), "ended exhausted after 4");
  EXPECT_EQ(std::count_if(limit.events.begin(), limit.events.end(), [](const std::string& e) { return e.rfind("retry", 0) == 0; }), 3);
}

// backoff::metrics counts what it is told and renders it; a hinted retry is
// counted by its cause.
TEST(Metrics, CountsAttemptsRetriesAndEnds) {
  backoff::manual_clock clock;
  backoff::metrics m({.scope = "api \"v2\""});
  for (int run = 0; run < 2; ++run) {
    int calls = 0;
    auto r = backoff::try_retry(doubling, [&] {
      clock.advance(30ms);
      return ++calls < 3 ? std::make_error_code(std::errc::timed_out) : std::error_code{};
    }, {.server_hint = [](const auto&) -> std::optional<backoff::duration> { return 5s; }, .observer = &m, .clock = &clock});
    ASSERT_TRUE(r.ok());
  }
  EXPECT_EQ(m.attempts(attempt_outcome::success), 2u);
  EXPECT_EQ(m.attempts(attempt_outcome::retryable), 4u);
  EXPECT_EQ(m.retries(), 4u);
  EXPECT_EQ(m.retries_after_hint(), 4u);
  EXPECT_EQ(m.operations(stop_reason::success), 2u);
  const std::string text = m.prometheus();
  EXPECT_NE(text.find("backoff_attempts_total{scope=\"api \\\"v2\\\"\",outcome=\"retryable\"} 4"), std::string::npos) << text;
  EXPECT_NE(text.find("backoff_attempt_duration_seconds_bucket{scope=\"api \\\"v2\\\"\",le=\"0.025\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("backoff_attempt_duration_seconds_bucket{scope=\"api \\\"v2\\\"\",le=\"0.05\"} 6"), std::string::npos) << text;
  EXPECT_NE(text.find("backoff_retry_delay_seconds_bucket{scope=\"api \\\"v2\\\"\",le=\"4\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("backoff_retry_delay_seconds_bucket{scope=\"api \\\"v2\\\"\",le=\"8\"} 4"), std::string::npos) << text;
  EXPECT_NE(text.find("backoff_retry_delay_seconds_sum{scope=\"api \\\"v2\\\"\"} 20.000000000"), std::string::npos) << text;
  EXPECT_NE(text.find("backoff_operations_total{scope=\"api \\\"v2\\\"\",reason=\"success\"} 2"), std::string::npos) << text;

  // Buckets are inclusive (le): waits of exactly 1 s and 2 s fall in le="1" and le="2".
  backoff::metrics exact;
  int calls = 0;
  ASSERT_TRUE(backoff::try_retry(doubling, [&] { return ++calls < 3 ? std::make_error_code(std::errc::timed_out) : std::error_code{}; },
                                 {.observer = &exact, .clock = &clock})
                  .ok());
  EXPECT_NE(exact.prometheus().find("backoff_retry_delay_seconds_bucket{le=\"1\"} 1\n"), std::string::npos) << exact.prometheus();
  EXPECT_NE(exact.prometheus().find("backoff_retry_delay_seconds_bucket{le=\"2\"} 2\n"), std::string::npos);
  EXPECT_NE(exact.prometheus().find("backoff_retry_delay_seconds_count 2\n"), std::string::npos);

  // promtool (Debian's prometheus) accepts it, without a lint.
  char path[] = "/tmp/backoff-metrics-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  FILE* p = ::popen(("promtool check metrics < " + std::string(path) + " 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = ::pclose(p);
  ::unlink(path);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  EXPECT_EQ(out, "") << text;
}

// A breaker that names an observer tells each change of state: it trips
// (open), lets a probe through after the break (half-open), and closes on
// the probe's success.
TEST(Metrics, BreakerChangesOfStateAreCounted) {
  backoff::metrics m;
  backoff::circuit_breaker b({.failure_ratio = 0.5, .minimum_throughput = 2, .break_duration = 1s, .observer = &m});
  const backoff::time_point t0{std::chrono::hours{1}};
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(b.acquire({false, t0, false}).allowed);
    b.record({attempt_outcome::retryable, false, false, t0});
  }
  EXPECT_EQ(m.breaker_changes(backoff::breaker_state::open), 1u);
  EXPECT_FALSE(b.acquire({false, t0 + 500ms, false}).allowed);
  ASSERT_TRUE(b.acquire({false, t0 + 1s, false}).allowed);  // the probe
  EXPECT_EQ(m.breaker_changes(backoff::breaker_state::half_open), 1u);
  b.record({attempt_outcome::success, false, false, t0 + 1s});
  EXPECT_EQ(m.breaker_changes(backoff::breaker_state::closed), 1u);
  EXPECT_NE(m.prometheus().find("backoff_breaker_transitions_total{state=\"open\"} 1"), std::string::npos) << m.prometheus();
}

// retry() (not only try_retry) tells the observer about a first attempt that
// succeeds: its fast path, which reads no clock, is not taken then (found by
// BM_RetrySuccessObserved, whose observer saw nothing).
TEST(Observer, RetrysFastPathIsNotTakenWithAnObserver) {
  backoff::manual_clock clock;
  recorder rec;
  EXPECT_EQ(backoff::retry(doubling, [] { return 7; }, {.observer = &rec, .clock = &clock}), 7);
  EXPECT_EQ(rec.events, (std::vector<std::string>{"start 1", "attempt 1 success took 0ms", "ended success after 1"}));
}
