// SPDX-License-Identifier: BSL-1.0
// backoff/step.hpp: the decision every loop shares, tested with no clock at all.
#include "backoff/step.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "backoff/breaker.hpp"
#include "backoff/budget.hpp"
#include "backoff/host_backoff.hpp"
#include "backoff/random.hpp"
#include "backoff/retry.hpp"

using namespace std::chrono_literals;
using backoff::attempt_outcome;
using backoff::retry_step;
using backoff::stop_reason;

namespace {

const backoff::time_point t0{std::chrono::hours{1}};

backoff::policy doubling(std::uint32_t attempts) {
  return {.schedule = backoff::exponential{.initial = 1s, .multiplier = 2.0, .max_delay = 8s},
          .jitter = backoff::jitter::none(),
          .stop = backoff::stop::after_attempts(attempts)};
}

retry_step::report failed(backoff::time_point now) { return {attempt_outcome::retryable, now, std::nullopt, false, false}; }

}  // namespace

TEST(Step, DelaysFollowTheScheduleAndTheStopRule) {
  const auto p = doubling(4);
  retry_step step(p);
  step.started_at(t0);
  backoff::fast_rng rng{1};
  std::vector<backoff::duration> delays;
  backoff::time_point now = t0;
  for (;;) {
    const auto d = step.after(failed(now), rng);
    if (d.stop) {
      EXPECT_EQ(d.reason, stop_reason::exhausted);
      break;
    }
    delays.push_back(d.delay);
    now += d.delay;
  }
  EXPECT_EQ(delays, (std::vector<backoff::duration>{1s, 2s, 4s}));
  EXPECT_EQ(step.attempts(), 4u);
}

TEST(Step, SuccessAndPermanentStopAtOnce) {
  const auto p = doubling(4);
  backoff::fast_rng rng{1};
  retry_step a(p);
  EXPECT_EQ(a.after({attempt_outcome::success, t0}, rng).reason, stop_reason::success);
  retry_step b(p);
  const auto d = b.after({attempt_outcome::permanent, t0}, rng);
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.reason, stop_reason::permanent);
}

TEST(Step, AHintIsAFloorAndNeverCrossesATimeLimit) {
  const backoff::policy p{.schedule = backoff::constant{.delay = 1s},
                          .jitter = backoff::jitter::none(),
                          .stop = backoff::stop::after_elapsed(30s)};
  backoff::fast_rng rng{1};
  retry_step step(p);
  step.started_at(t0);
  auto d = step.after({attempt_outcome::retryable, t0, 10s}, rng);
  EXPECT_FALSE(d.stop);
  EXPECT_EQ(d.delay, 10s);
  EXPECT_EQ(d.hint, 10s);
  d = step.after({attempt_outcome::retryable, t0 + 10s, 25s}, rng);  // would end at 35 s
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.reason, stop_reason::deadline);
}

// The decision after one failure at t0, with a 1 s schedule, a 30 s
// before_elapsed limit and the host held for `hold`.
retry_step::decision after_host_hold(backoff::duration hold) {
  backoff::host_backoff hosts;
  hosts.hold("api", t0, hold);
  backoff::host_backoff::key_gate g(hosts, "api");
  const backoff::policy p{.schedule = backoff::constant{.delay = 1s},
                          .jitter = backoff::jitter::none(),
                          .stop = backoff::stop::before_elapsed(30s)};
  backoff::fast_rng rng{1};
  retry_step step(p, {.gate = &g});
  step.started_at(t0);
  return step.after(failed(t0), rng);
}

// 1b: a host hold of an hour pushed the second attempt to 3600 s despite a 30 s limit.
TEST(Step, AGateHoldNeverPushesAWaitPastBeforeElapsed) {
  const auto d = after_host_hold(3600s);
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.reason, stop_reason::deadline);
}

TEST(Step, AGateHoldWithinTheLimitIsAFloor) {
  const auto d = after_host_hold(20s);
  ASSERT_FALSE(d.stop);
  EXPECT_GE(d.delay, 20s);
}

// The gate granted the retry, but its hold made the wait cross the limit: the
// retry will not happen, so the budget gets its cost back.
TEST(Step, ARetryTheDeadlineRefusesAfterTheGateGrantedItIsRefunded) {
  backoff::host_backoff hosts;
  hosts.hold("api", t0, 3600s);
  backoff::host_backoff::key_gate host(hosts, "api");
  auto budget = backoff::retry_budget::aws_standard({.capacity = 5});  // one retry's worth
  backoff::gate_chain chain{&host, &budget};
  const backoff::policy p{.schedule = backoff::constant{.delay = 1s},
                          .jitter = backoff::jitter::none(),
                          .stop = backoff::stop::before_elapsed(30s)};
  backoff::fast_rng rng{1};
  retry_step step(p, {.gate = &chain});
  step.started_at(t0);
  const auto d = step.after(failed(t0), rng);
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.reason, stop_reason::deadline);
  EXPECT_EQ(budget.milli_tokens(), 5000);
}

// 1b: in gate_chain{&breaker, &budget}, a budget denial after the breaker handed
// out its half-open probe lost the probe: the breaker stayed half-open forever.
TEST(Step, AProbeTheBudgetDeniedIsGivenBack) {
  backoff::circuit_breaker breaker({.minimum_throughput = 2, .break_duration = 5s, .probes = 1});
  auto budget = backoff::retry_budget::aws_standard({.capacity = 5});  // exactly one retry
  backoff::gate_chain chain{&breaker, &budget};
  breaker.record({attempt_outcome::retryable, false, false, t0});
  breaker.record({attempt_outcome::retryable, false, false, t0});
  ASSERT_EQ(breaker.current(), backoff::circuit_breaker::state::open);
  ASSERT_TRUE(budget.acquire({true, t0, false}).allowed);  // spend the budget
  EXPECT_FALSE(chain.acquire({true, t0 + 5s, false}).allowed);  // the breaker allowed a probe, the budget denied
  EXPECT_EQ(breaker.current(), backoff::circuit_breaker::state::half_open);
  // The probe is free again: a first attempt (which the budget does not charge) gets it.
  EXPECT_TRUE(chain.acquire({false, t0 + 10s, false}).allowed);
}

TEST(Step, AProbeOfACancelledWaitIsGivenBack) {
  backoff::circuit_breaker breaker({.minimum_throughput = 2, .break_duration = 5s, .probes = 1});
  breaker.record({attempt_outcome::retryable, false, false, t0});
  breaker.record({attempt_outcome::retryable, false, false, t0});
  const backoff::policy p{.schedule = backoff::constant{.delay = 1s},
                          .jitter = backoff::jitter::none(),
                          .stop = backoff::stop::after_attempts(5)};
  backoff::fast_rng rng{1};
  retry_step step(p, {.gate = &breaker});
  step.started_at(t0 + 5s);
  // The failure is recorded while open (ignored); the retry takes the probe.
  const auto d = step.after(failed(t0 + 5s), rng);
  ASSERT_FALSE(d.stop);
  EXPECT_FALSE(breaker.acquire({true, t0 + 6s, false}).allowed);  // the one probe is out
  step.abandon();                                                  // the wait was cancelled
  EXPECT_TRUE(breaker.acquire({true, t0 + 6s, false}).allowed);
}

// The gate's grant for the first attempt (gate_first_attempt) is given back
// when the wait before that attempt is cancelled; a "recheck" answer granted
// nothing, so nothing is given back for it.
TEST(Step, AFirstAttemptCancelledBeforeItRunsGivesItsGrantBack) {
  struct counting final : backoff::gate {
    bool recheck = false;
    int released = 0;
    backoff::gate_decision acquire(const backoff::gate_request&) noexcept override {
      backoff::gate_decision d = backoff::gate_decision::allow();
      d.recheck = recheck;
      return d;
    }
    void record(const backoff::gate_outcome&) noexcept override {}
    void release(const backoff::gate_request&) noexcept override { ++released; }
  };
  const backoff::policy p{.stop = backoff::stop::after_attempts(3)};
  for (const bool recheck : {false, true}) {
    counting g;
    g.recheck = recheck;
    retry_step step(p, {.gate = &g, .gate_first_attempt = true});
    const auto go = step.start(t0);
    ASSERT_TRUE(go.allowed);
    EXPECT_EQ(go.recheck, recheck);
    step.abandon();
    EXPECT_EQ(g.released, recheck ? 0 : 1) << "recheck " << recheck;
  }
  // The same after a recheck: a grant without a further recheck is held, and
  // given back when the attempt does not run.
  for (const bool again : {false, true}) {
    counting g;
    g.recheck = true;
    retry_step step(p, {.gate = &g, .gate_first_attempt = true});
    ASSERT_TRUE(step.start(t0).recheck);
    g.recheck = again;
    const auto go = step.recheck(t0 + 1s);
    ASSERT_TRUE(go.allowed);
    EXPECT_EQ(go.recheck, again);
    step.abandon();
    EXPECT_EQ(g.released, again ? 0 : 1) << "recheck again " << again;
  }
}

TEST(Step, AReportIsATimeoutOnlyWhenItSaysSo) {
  struct seen final : backoff::gate {
    std::vector<bool> timeouts;
    backoff::gate_decision acquire(const backoff::gate_request&) noexcept override { return backoff::gate_decision::allow(); }
    void record(const backoff::gate_outcome& o) noexcept override { timeouts.push_back(o.timeout); }
    void release(const backoff::gate_request&) noexcept override {}
  };
  seen g;
  const backoff::policy p{.stop = backoff::stop::after_attempts(3)};
  retry_step step(p, {.gate = &g});
  step.note({attempt_outcome::retryable, t0});
  retry_step::report timed{attempt_outcome::retryable, t0 + 1s};
  timed.timed_out = true;
  step.note(timed);
  EXPECT_EQ(g.timeouts, (std::vector<bool>{false, true}));
}

TEST(Step, ACancelledLoopGivesTheProbeBack) {
  backoff::circuit_breaker breaker({.minimum_throughput = 2, .break_duration = 5s, .probes = 1});
  backoff::manual_clock clock(t0);
  breaker.record({attempt_outcome::retryable, false, false, t0});
  breaker.record({attempt_outcome::retryable, false, false, t0});
  clock.advance(5s);  // the break is over: the retry after the failure below takes the probe
  std::stop_source stop;
  int calls = 0;
  const auto r = backoff::try_retry(
      doubling(5),
      [&]() -> int {
        ++calls;
        stop.request_stop();  // cancelled during the wait that follows
        throw std::runtime_error("down");
      },
      backoff::options<int>{.gate = &breaker, .clock = &clock, .stop_token = stop.get_token()});
  EXPECT_EQ(r.reason, stop_reason::cancelled);
  EXPECT_EQ(calls, 1);
  // Not stuck half-open with a probe nobody will report: the next caller probes.
  EXPECT_TRUE(breaker.acquire({false, clock.now() + 60s, false}).allowed);
}

TEST(Step, ABudgetRefundsARetryThatWillNotHappen) {
  auto budget = backoff::retry_budget::aws_standard({.capacity = 10});
  ASSERT_TRUE(budget.acquire({true, t0, false}).allowed);
  EXPECT_EQ(budget.milli_tokens(), 5000);
  budget.release({true, t0, false});
  EXPECT_EQ(budget.milli_tokens(), 10000);
}

TEST(Step, ProgressRestartsTheScheduleAndTheCount) {
  const auto p = doubling(2);
  retry_step step(p);
  step.started_at(t0);
  backoff::fast_rng rng{1};
  auto d = step.after(failed(t0), rng);
  EXPECT_EQ(d.delay, 1s);
  d = step.after({attempt_outcome::retryable, t0, std::nullopt, false, true}, rng);  // progress
  ASSERT_FALSE(d.stop);
  EXPECT_EQ(d.delay, 1s);
  d = step.after(failed(t0), rng);
  ASSERT_FALSE(d.stop);
  EXPECT_EQ(d.delay, 2s);
  EXPECT_TRUE(step.after(failed(t0), rng).stop);
}

namespace {
struct end_counter final : backoff::observer {
  int ends = 0;
  stop_reason last = stop_reason::success;
  std::uint32_t attempts = 0;
  void ended(stop_reason why, std::uint32_t n) noexcept override {
    ++ends;
    last = why;
    attempts = n;
  }
};
}  // namespace

// An operation ends once for its observer: finished() after a decision that
// stopped (or after abandon) says nothing more; finished() alone tells it,
// with the loop's own count of attempts.
TEST(Step, TheObserverHearsTheEndOnce) {
  const auto p = doubling(4);
  backoff::fast_rng rng{1};
  end_counter seen;
  retry_step decided(p, {.observer = &seen});
  decided.after({attempt_outcome::success, t0}, rng);
  decided.finished(stop_reason::success, 1);
  decided.abandon();
  EXPECT_EQ(seen.ends, 1);

  end_counter quiet;
  retry_step undecided(p, {.observer = &quiet});
  undecided.note({attempt_outcome::success, t0});
  undecided.finished(stop_reason::success, 7);
  undecided.finished(stop_reason::cancelled, 8);
  EXPECT_EQ(quiet.ends, 1);
  EXPECT_EQ(quiet.last, stop_reason::success);
  EXPECT_EQ(quiet.attempts, 7u);
}

// A hedge is a retry to the stop rule and the gate: refused past the attempt
// limit, refused (with nothing kept) by a gate that denies or asks to wait.
TEST(Step, AHedgeAsksTheStopRuleAndTheGate) {
  const auto p = doubling(3);
  retry_step free(p);
  free.started_at(t0);
  EXPECT_TRUE(free.hedge(t0, 1));
  EXPECT_TRUE(free.hedge(t0, 2));
  EXPECT_FALSE(free.hedge(t0, 3));  // a 4th attempt would pass after_attempts(3)

  backoff::retry_budget budget = backoff::retry_budget::grpc({.max_tokens = 10, .token_ratio = 0.1});
  retry_step gated(p, {.gate = &budget});
  gated.started_at(t0);
  EXPECT_TRUE(gated.hedge(t0, 1));
  for (int i = 0; i < 6; ++i) budget.record({attempt_outcome::retryable, false, false, t0});
  EXPECT_FALSE(gated.hedge(t0, 1));
}
