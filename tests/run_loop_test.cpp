// SPDX-License-Identifier: BSL-1.0
// backoff run's retry loop in process, on the manual clock: what --max-time,
// --attempt-timeout and a signal between attempts do, without sleeping.
#include <gtest/gtest.h>
#include <signal.h>

#include <sstream>

#include "run_loop.hpp"

using namespace std::chrono_literals;
using backoff::cli::outcome;
using backoff::cli::run_context;
using backoff::cli::run_options;

namespace {

struct launched {
  std::uint32_t n;
  backoff::duration at, limit;
};

// Every attempt takes `took` on the clock and exits `code`.
struct scripted {
  backoff::manual_clock& clock;
  backoff::time_point t0;
  backoff::duration took;
  int code = 1;
  std::vector<launched> calls = {};
  outcome operator()(std::uint32_t n, backoff::duration limit) {
    calls.push_back({n, clock.now() - t0, limit});
    outcome o;
    if (limit.count() > 0 && took >= limit) {
      clock.advance(limit);
      o.timed_out = true;
      o.status = 124;
      return o;
    }
    clock.advance(took);
    o.exit_code = code;
    o.status = code;
    return o;
  }
};

run_options flags(std::string max_time, std::string initial, std::uint32_t attempts) {
  run_options ro;
  ro.policy.max_time = std::move(max_time);
  ro.policy.initial = std::move(initial);
  ro.policy.jitter = "none";
  ro.policy.max_attempts = attempts;
  ro.command = {"false"};
  return ro;
}

}  // namespace

// What Cli.MaxTimeIsRespected once checked against the wall clock, exactly.
TEST(RunLoop, MaxTimeBoundsTheWaitsAndEachAttempt) {
  const auto plan = backoff::cli::plan_run(flags("1s", "100ms", 100));
  backoff::manual_clock clock;
  scripted cmd{clock, clock.now(), 10ms};
  std::ostringstream err;
  run_context ctx{clock, err, std::ref(cmd), {}, [] { return 0; }, nullptr};
  const auto r = backoff::cli::run_loop(plan, ctx);
  EXPECT_EQ(r.status, 1);
  // Waits of 100, 200 and 400 ms; the next (800 ms) would end past 1 s, so the loop stops.
  ASSERT_EQ(cmd.calls.size(), 4u);
  const std::vector<backoff::duration> at{0ms, 110ms, 320ms, 730ms};
  for (std::size_t i = 0; i < at.size(); ++i) {
    EXPECT_EQ(cmd.calls[i].at, at[i]) << i;
    EXPECT_EQ(cmd.calls[i].limit, 1s - at[i]) << i;  // --max-time also bounds the running attempt
  }
  EXPECT_EQ(clock.total_slept(), 700ms);
  EXPECT_LE(clock.now() - cmd.t0, 1s);
  ASSERT_EQ(r.attempts.size(), 4u);
  EXPECT_DOUBLE_EQ(r.attempts[1]["delay_s"].get<double>(), 0.2);
  EXPECT_NE(err.str().find("Will retry in 100ms"), std::string::npos) << err.str();
}

TEST(RunLoop, AnAttemptTimeoutIsCutToWhatIsLeftOfMaxTime) {
  auto ro = flags("7s", "1s", 10);
  ro.attempt_timeout = "5s";
  const auto plan = backoff::cli::plan_run(ro);
  backoff::manual_clock clock;
  scripted cmd{clock, clock.now(), 1h};  // never finishes by itself
  std::ostringstream err;
  run_context ctx{clock, err, std::ref(cmd), {}, [] { return 0; }, nullptr};
  const auto r = backoff::cli::run_loop(plan, ctx);
  EXPECT_EQ(r.status, 124);
  ASSERT_EQ(cmd.calls.size(), 2u);
  EXPECT_EQ(cmd.calls[0].limit, 5s);
  EXPECT_EQ(cmd.calls[1].at, 6s);     // 5 s attempt, 1 s wait
  EXPECT_EQ(cmd.calls[1].limit, 1s);  // what is left of the 7 s
}

// A clock whose waits are interrupted the moment they begin, as SIGTERM
// arriving between two attempts would.
class interrupted_clock final : public backoff::clock {
 public:
  interrupted_clock(backoff::manual_clock& inner, std::stop_source& src, int& sig) : inner_(inner), src_(src), sig_(sig) {}
  backoff::time_point now() const noexcept override { return inner_.now(); }
  bool sleep_until(backoff::time_point deadline, std::stop_token stop) override {
    sig_ = SIGTERM;
    src_.request_stop();
    return inner_.sleep_until(deadline, stop);
  }

 private:
  backoff::manual_clock& inner_;
  std::stop_source& src_;
  int& sig_;
};

TEST(RunLoop, ASignalDuringAWaitEndsWithItsStatusNotTheAttempts) {
  const auto plan = backoff::cli::plan_run(flags("", "30s", 3));
  backoff::manual_clock manual;
  std::stop_source src;
  int sig = 0;
  interrupted_clock clock(manual, src, sig);
  scripted cmd{manual, manual.now(), 1ms, 3};
  std::ostringstream err;
  run_context ctx{clock, err, std::ref(cmd), src.get_token(), [&] { return sig; }, nullptr};
  const auto r = backoff::cli::run_loop(plan, ctx);
  EXPECT_EQ(r.status, 128 + SIGTERM);
  EXPECT_EQ(r.reason, backoff::stop_reason::cancelled);
  EXPECT_EQ(cmd.calls.size(), 1u);
  EXPECT_EQ(manual.total_slept(), 0ms);  // the 30 s wait did not happen
}

// The signal lands after the command exited and before the loop decided
// (CI met this window under ASan): still the signal's status, not the exit
// status of an attempt that was going to be retried, and no second attempt.
TEST(RunLoop, ASignalAfterTheAttemptEndsBeforeTheWaitIsStillTheSignals) {
  const auto plan = backoff::cli::plan_run(flags("", "30s", 3));
  backoff::manual_clock clock;
  std::stop_source src;
  int sig = 0;
  scripted inner{clock, clock.now(), 1ms, 3};
  auto cmd = [&](std::uint32_t n, backoff::duration limit) {
    const outcome o = inner(n, limit);
    sig = SIGINT;  // the child is reaped; now the signal
    src.request_stop();
    return o;
  };
  std::ostringstream err;
  run_context ctx{clock, err, cmd, src.get_token(), [&] { return sig; }, nullptr};
  const auto r = backoff::cli::run_loop(plan, ctx);
  EXPECT_EQ(r.status, 128 + SIGINT);
  EXPECT_EQ(r.reason, backoff::stop_reason::cancelled);
  EXPECT_EQ(inner.calls.size(), 1u);
  EXPECT_EQ(clock.total_slept(), 0ms);
  EXPECT_EQ(err.str().find("permanent"), std::string::npos) << err.str();
  // An exit status that is never retried stays the command's, signal or not.
  sig = 0;
  scripted lasting{clock, clock.now(), 1ms, 3};
  auto ro = flags("", "30s", 3);
  ro.no_retry_on = "3";
  run_context ctx2{clock, err,
                   [&](std::uint32_t n, backoff::duration l) {
                     const outcome o = lasting(n, l);
                     sig = SIGINT;
                     return o;
                   },
                   {}, [&] { return sig; }, nullptr};
  const auto kept = backoff::cli::run_loop(backoff::cli::plan_run(ro), ctx2);
  EXPECT_EQ(kept.status, 3);
  EXPECT_EQ(kept.reason, backoff::stop_reason::permanent);
}

TEST(RunLoop, BadFlagsAreFoundBeforeAnythingRuns) {
  auto ro = flags("", "1s", 3);
  ro.retry_on = "0";
  EXPECT_THROW(backoff::cli::plan_run(ro), backoff::cli::usage_error);
  ro = flags("0", "1s", 3);
  EXPECT_THROW(backoff::cli::plan_run(ro), backoff::cli::usage_error);
  ro = flags("", "1s", 3);
  ro.attempt_timeout = "0";
  EXPECT_THROW(backoff::cli::plan_run(ro), backoff::cli::usage_error);
  ro = flags("", "1s", 3);
  ro.retry_if_output = "(";
  EXPECT_THROW(backoff::cli::plan_run(ro), backoff::cli::usage_error);
}
