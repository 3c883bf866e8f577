// SPDX-License-Identifier: BSL-1.0
#include "backoff/retry.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "backoff/presets.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using backoff::stop_reason;
namespace stop = backoff::stop;

namespace {

struct flaky_error : std::runtime_error {
  explicit flaky_error(const std::string& m, int c) : std::runtime_error(m), code(c) {}
  int code;
};

backoff::policy no_jitter(std::uint32_t attempts) {
  return {.schedule = backoff::exponential{.initial = 1s, .multiplier = 2.0, .max_delay = 64s},
          .jitter = backoff::jitter::none(),
          .stop = stop::after_attempts(attempts)};
}

// A fake operation: fails `failures` times, then returns its call count.
struct flaky {
  int failures;
  int calls = 0;
  int operator()() {
    ++calls;
    if (calls <= failures) throw flaky_error("attempt " + std::to_string(calls) + " failed", calls);
    return calls;
  }
};

}  // namespace

TEST(Retry, SucceedsAfterFailuresAndWaitsTheScheduledDelays) {
  backoff::manual_clock clock;
  flaky f{3};
  std::vector<backoff::duration> delays;
  const int v = backoff::retry(no_jitter(5), f,
                               {.after_attempt = [&](const auto& a) { delays.push_back(a.record.delay); },
                                .clock = &clock});
  EXPECT_EQ(v, 4);
  EXPECT_EQ(f.calls, 4);
  EXPECT_EQ(delays, (std::vector<backoff::duration>{1s, 2s, 4s, 0s}));
  EXPECT_EQ(clock.total_slept(), 7s);
}

TEST(Retry, LastExceptionPropagatesUnchanged) {
  backoff::manual_clock clock;
  flaky f{100};
  try {
    backoff::retry(no_jitter(3), f, {.clock = &clock});
    FAIL() << "no exception";
  } catch (const flaky_error& e) {
    EXPECT_STREQ(e.what(), "attempt 3 failed");
    EXPECT_EQ(e.code, 3);
  }
  EXPECT_EQ(f.calls, 3);
}

TEST(Retry, WrappedErrorKeepsReasonHistoryAndTheNestedOriginal) {
  backoff::manual_clock clock;
  flaky f{100};
  try {
    backoff::retry(no_jitter(4), f, {.clock = &clock, .wrap_errors = true});
    FAIL() << "no exception";
  } catch (const backoff::retry_error& e) {
    EXPECT_EQ(e.reason(), stop_reason::exhausted);
    EXPECT_EQ(e.attempts(), 4u);
    EXPECT_EQ(std::string(e.what()), "backoff: gave up after 4 attempts (exhausted): attempt 4 failed");
    ASSERT_EQ(e.history().size(), 4u);
    EXPECT_EQ(e.history()[0].delay, 1s);
    EXPECT_EQ(e.history()[2].delay, 4s);
    EXPECT_EQ(e.history()[3].delay, 0s);
    EXPECT_TRUE(e.history()[3].threw);
    try {
      std::rethrow_if_nested(e);
      FAIL() << "not nested";
    } catch (const flaky_error& inner) {
      EXPECT_EQ(inner.code, 4);
    }
    try {
      std::rethrow_exception(e.last_error());
    } catch (const flaky_error& inner) {
      EXPECT_STREQ(inner.what(), "attempt 4 failed");
    }
  }
}

TEST(Retry, PermanentFailureStopsAtOnce) {
  backoff::manual_clock clock;
  int calls = 0;
  auto r = backoff::try_retry(
      no_jitter(10),
      [&]() -> int {
        ++calls;
        throw std::invalid_argument("404");
      },
      {.classify = {.retry_exception = backoff::on_exception<flaky_error>()}, .clock = &clock});
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(r.reason, stop_reason::permanent);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(clock.total_slept(), 0s);
}

TEST(Retry, FallbackProducesTheResultForPermanentFailures) {
  backoff::manual_clock clock;
  int seen_status = 0;
  auto r = backoff::try_retry(
      no_jitter(10), [] { return 404; },
      {.classify = {.is_success = [](int s) { return s < 400; },
                    .retry_value = [](int s) { return s >= 500 || s == 429; }},
       .fallback = [&](const backoff::attempt<int>& a) {
         seen_status = *a.result;
         return -1;
       },
       .clock = &clock});
  EXPECT_EQ(r.reason, stop_reason::fallback);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(*r.value, -1);
  EXPECT_EQ(seen_status, 404);
  EXPECT_EQ(r.attempts(), 1u);
}

TEST(Retry, ResultPredicateRetriesAndReturnsTheLastResultWhenExhausted) {
  backoff::manual_clock clock;
  int calls = 0;
  const int status = backoff::retry(no_jitter(3), [&] { return ++calls, 503; },
                                    {.classify = {.is_success = [](int s) { return s < 400; }}, .clock = &clock});
  EXPECT_EQ(status, 503);
  EXPECT_EQ(calls, 3);
}

// wrap_errors when the last attempt returned a failed result: the
// retry_error says so, with the history, and nests nothing (there was no
// exception to nest, and none is made up).
TEST(Retry, AWrappedFailedResultSaysSoAndNestsNothing) {
  backoff::manual_clock clock;
  int calls = 0;
  try {
    backoff::retry(no_jitter(3), [&] { return ++calls, 503; },
                   {.classify = {.is_success = [](int s) { return s < 400; }}, .clock = &clock, .wrap_errors = true});
    FAIL() << "no exception";
  } catch (const backoff::retry_error& e) {
    EXPECT_EQ(e.reason(), stop_reason::exhausted);
    EXPECT_EQ(e.attempts(), 3u);
    EXPECT_NE(std::string(e.what()).find("the last attempt returned a failed result"), std::string::npos) << e.what();
    EXPECT_FALSE(e.last_error());
    EXPECT_NO_THROW(std::rethrow_if_nested(e));
  }
  EXPECT_EQ(calls, 3);
}

TEST(Retry, ErrorCodeResultsNeedNoExceptions) {
  backoff::manual_clock clock;
  int calls = 0;
  auto r = backoff::try_retry(
      no_jitter(5),
      [&]() -> std::error_code {
        return ++calls < 3 ? std::make_error_code(std::errc::connection_refused) : std::error_code{};
      },
      {.classify = {.retry_value = backoff::on_error_codes({std::errc::connection_refused})}, .clock = &clock});
  EXPECT_EQ(r.reason, stop_reason::success);
  EXPECT_EQ(calls, 3);
  EXPECT_FALSE(*r.value);

  auto perm = backoff::try_retry(
      no_jitter(5), [] { return std::make_error_code(std::errc::permission_denied); },
      {.classify = {.retry_value = backoff::on_error_codes({std::errc::connection_refused})}, .clock = &clock});
  EXPECT_EQ(perm.reason, stop_reason::permanent);
  EXPECT_EQ(*perm.value, std::errc::permission_denied);
}

namespace {
// An expected-like type (std::expected arrives with C++23).
struct expected_int {
  int v;
  std::error_code ec;
  bool has_value() const { return !ec; }
  std::error_code error() const { return ec; }
};
}  // namespace

TEST(Retry, ExpectedLikeResultsRetryOnError) {
  backoff::manual_clock clock;
  int calls = 0;
  auto r = backoff::try_retry(no_jitter(4), [&] {
    return ++calls < 4 ? expected_int{0, std::make_error_code(std::errc::timed_out)} : expected_int{7, {}};
  }, {.clock = &clock});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.value->v, 7);
  auto fail = backoff::try_retry(no_jitter(2), [] { return expected_int{0, std::make_error_code(std::errc::timed_out)}; },
                                 {.clock = &clock});
  EXPECT_EQ(fail.reason, stop_reason::exhausted);
  EXPECT_EQ(fail.value->ec, std::errc::timed_out);
  EXPECT_EQ(fail.error, nullptr);
}

TEST(Retry, VoidCallables) {
  backoff::manual_clock clock;
  int calls = 0;
  backoff::retry(no_jitter(3), [&] {
    if (++calls < 2) throw std::runtime_error("x");
  }, {.clock = &clock});
  EXPECT_EQ(calls, 2);
}

TEST(Retry, HooksSeeEveryAttemptInOrder) {
  backoff::manual_clock clock;
  flaky f{2};
  std::vector<std::string> log;
  backoff::retry(no_jitter(5), f,
                 {.before_retry = [&](const auto& a) { log.push_back("before_retry after #" + std::to_string(a.record.number)); },
                  .after_attempt = [&](const auto& a) {
                    log.push_back("attempt #" + std::to_string(a.record.number) + " " +
                                  std::string(backoff::to_string(a.record.outcome)) + (a.error ? " threw" : "") +
                                  (a.last ? " last" : ""));
                  },
                  .on_give_up = [&](const auto&) { log.push_back("give up"); },
                  .on_success = [&](const auto& a) { log.push_back("success=" + std::to_string(*a.result)); },
                  .clock = &clock});
  const std::vector<std::string> want{"attempt #1 retryable threw", "before_retry after #1", "attempt #2 retryable threw",
                                      "before_retry after #2", "attempt #3 success last", "success=3"};
  EXPECT_EQ(log, want);
  // Giving up: the attempt that ends the loop is the one marked last.
  log.clear();
  const auto r = backoff::try_retry(no_jitter(2), flaky{5}, {.after_attempt = [&](const auto& a) {
                                                             log.push_back(a.last ? "last" : "retried");
                                                           },
                                                           .clock = &clock});
  EXPECT_EQ(r.reason, backoff::stop_reason::exhausted);
  EXPECT_EQ(log, (std::vector<std::string>{"retried", "last"}));
}

TEST(Retry, HookRecordsCarryElapsedTimeFromTheClock) {
  backoff::manual_clock clock;
  std::vector<backoff::attempt_record> recs;
  int calls = 0;
  backoff::retry(no_jitter(4), [&] {
    clock.advance(100ms);  // each attempt "takes" 100 ms
    if (++calls < 3) throw std::runtime_error("x");
    return 0;
  }, {.after_attempt = [&](const auto& a) { recs.push_back(a.record); }, .clock = &clock});
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].start, 0ms);
  EXPECT_EQ(recs[0].took, 100ms);
  EXPECT_EQ(recs[1].start, 1100ms);  // 100 ms attempt + 1 s wait
  EXPECT_EQ(recs[2].start, 1100ms + 100ms + 2s);
}

TEST(Retry, AHookThatThrowsEndsTheLoopWithItsException) {
  backoff::manual_clock clock;
  flaky f{10};
  EXPECT_THROW(backoff::retry(no_jitter(5), f,
                              {.before_retry = [](const auto&) { throw std::logic_error("token refresh failed"); },
                               .clock = &clock}),
               std::logic_error);
  EXPECT_EQ(f.calls, 1);
}

TEST(Retry, GiveUpHookReceivesTheReason) {
  backoff::manual_clock clock;
  flaky f{10};
  stop_reason seen = stop_reason::success;
  auto r = backoff::try_retry(no_jitter(3), f, {.on_give_up = [&](const auto& a) { seen = a.reason; }, .clock = &clock});
  EXPECT_EQ(seen, stop_reason::exhausted);
  EXPECT_EQ(r.reason, stop_reason::exhausted);
  ASSERT_TRUE(r.error);
}

TEST(Retry, ElapsedLimitShortensTheLastWaitAndNeverOvershoots) {
  backoff::manual_clock clock;
  const auto start = clock.now();
  flaky f{100};
  const backoff::policy p{.schedule = backoff::exponential{.initial = 1s, .max_delay = 64s},
                          .jitter = backoff::jitter::none(),
                          .stop = stop::after_elapsed(10s)};
  auto r = backoff::try_retry(p, f, {.clock = &clock});
  EXPECT_EQ(r.reason, stop_reason::deadline);
  // waits 1, 2, 4, then 3 (shortened from 8): the last attempt runs at exactly 10 s.
  EXPECT_EQ(clock.now() - start, 10s);
  EXPECT_EQ(f.calls, 5);
}

TEST(Retry, BeforeDeadlineGivesUpInsteadOfSleepingPastIt) {
  backoff::manual_clock clock;
  const auto start = clock.now();
  flaky f{100};
  const backoff::policy p{.schedule = backoff::exponential{.initial = 1s, .max_delay = 64s},
                          .jitter = backoff::jitter::none(),
                          .stop = stop::before_deadline(start + 10s)};
  auto r = backoff::try_retry(p, f, {.clock = &clock});
  EXPECT_EQ(r.reason, stop_reason::deadline);
  EXPECT_EQ(clock.now() - start, 7s);  // 1 + 2 + 4; the next 8 s wait would end at 15 s
  EXPECT_EQ(f.calls, 4);
}

TEST(Retry, StopTokenCancelsBeforeTheFirstAttempt) {
  std::stop_source s;
  s.request_stop();
  int calls = 0;
  auto r = backoff::try_retry(no_jitter(3), [&] { return ++calls; }, {.stop_token = s.get_token()});
  EXPECT_EQ(r.reason, stop_reason::cancelled);
  EXPECT_EQ(calls, 0);
  EXPECT_THROW(backoff::retry(no_jitter(3), [&] { return ++calls; }, {.stop_token = s.get_token()}),
               backoff::retry_error);
}

TEST(Retry, StopTokenCancelsALongRealSleep) {
  std::stop_source s;
  const backoff::policy p{.schedule = backoff::constant{.delay = 1h}, .jitter = backoff::jitter::none(),
                          .stop = stop::after_attempts(3)};
  std::atomic<int> calls = 0;
  std::jthread canceller([&] {
    // After the first attempt: the stop reaches the loop in (or before) its wait.
    while (calls.load() == 0) std::this_thread::sleep_for(1ms);
    s.request_stop();
  });
  const auto t = std::chrono::steady_clock::now();
  auto r = backoff::try_retry(p, [&]() -> int { ++calls; throw flaky_error("down", 1); }, {.stop_token = s.get_token()});
  EXPECT_EQ(r.reason, stop_reason::cancelled);
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(r.error);
  EXPECT_LT(std::chrono::steady_clock::now() - t, 60s);  // it did not wait the hour
}

TEST(Retry, SeededRunsAreReproducible) {
  auto run = [](std::uint64_t seed) {
    backoff::manual_clock clock;
    backoff::fast_rng rng{seed};
    flaky f{100};
    auto r = backoff::try_retry(backoff::policy{.stop = stop::after_attempts(8)}, f, {.clock = &clock, .rng = rng});
    std::vector<backoff::duration> d;
    for (const auto& a : r.history) d.push_back(a.delay);
    return d;
  };
  EXPECT_EQ(run(5), run(5));
  EXPECT_NE(run(5), run(6));
}

TEST(Retry, HistoryIsBoundedButCountsEverything) {
  backoff::manual_clock clock;
  flaky f{1000};
  const backoff::policy p{.schedule = backoff::constant{.delay = 1ms}, .jitter = backoff::jitter::none(),
                          .stop = stop::after_attempts(1000)};
  auto r = backoff::try_retry(p, f, {.clock = &clock});
  EXPECT_EQ(r.attempts(), 1000u);
  EXPECT_EQ(r.history.size(), backoff::history::capacity);
  EXPECT_EQ(r.history[0].number, 1000u - backoff::history::capacity + 1);
  EXPECT_EQ(r.history[backoff::history::capacity - 1].number, 1000u);
  std::uint32_t expect = r.history[0].number;
  for (const auto& a : r.history) EXPECT_EQ(a.number, expect++);
}

// Property test: thousands of random configurations; for each, the number of
// attempts never exceeds the limit, every wait is within [0, cap], and no wait
// ends past the deadline.
TEST(RetryProperty, AttemptsDelaysAndDeadlinesHoldForRandomConfigurations) {
  backoff::fast_rng meta{2024};
  for (int trial = 0; trial < 3000; ++trial) {
    const auto pick = [&](std::uint64_t n) { return backoff::uniform_u64(meta, n); };
    const backoff::duration initial = backoff::uniform_duration(meta, 1ms, 2s);
    const backoff::duration cap = initial + backoff::uniform_duration(meta, 0ms, 60s);
    backoff::schedule sched;
    switch (pick(3)) {
      case 0: sched = backoff::exponential{.initial = initial, .multiplier = 1.0 + 4.0 * backoff::uniform_unit(meta), .max_delay = cap}; break;
      case 1: sched = backoff::linear{.initial = initial, .increment = initial, .max_delay = cap}; break;
      case 2: sched = backoff::decorrelated{.base = initial, .max_delay = cap}; break;
      default: sched = backoff::constant{.delay = initial}; break;
    }
    backoff::jitter jit;
    switch (pick(4)) {
      case 0: jit = backoff::jitter::none(); break;
      case 1: jit = backoff::jitter::full(); break;
      case 2: jit = backoff::jitter::equal(); break;
      case 3: jit = backoff::jitter::proportional(backoff::uniform_unit(meta)); break;
      default: jit = backoff::jitter::additive(backoff::uniform_duration(meta, 0ms, 5s)); break;
    }
    backoff::manual_clock clock;
    const auto start = clock.now();
    const auto max_attempts = static_cast<std::uint32_t>(1 + pick(30));
    const backoff::duration limit = backoff::uniform_duration(meta, 0ms, 120s);
    const auto deadline = start + limit;
    backoff::stop_rule rule = stop::after_attempts(max_attempts);
    const auto kind = pick(2);
    if (kind == 0) rule = rule | stop::at_deadline(deadline);
    if (kind == 1) rule = rule | stop::before_deadline(deadline);
    if (kind == 2) rule = rule | stop::after_elapsed(limit);
    const backoff::policy p{.schedule = sched, .jitter = jit, .stop = rule};
    backoff::fast_rng rng{static_cast<std::uint64_t>(trial)};
    std::uint32_t calls = 0;
    bool ok = true;
    auto r = backoff::try_retry(p, [&]() -> int {
      ++calls;
      clock.advance(backoff::uniform_duration(meta, 0ms, 50ms));
      throw std::runtime_error("down");
    }, {.after_attempt = [&](const auto& a) {
          ok = ok && a.record.delay >= 0ns && a.record.delay <= sched.cap();
          ok = ok && (a.record.delay == 0ns || clock.now() + a.record.delay <= deadline);
        },
        .clock = &clock, .rng = rng});
    ASSERT_TRUE(ok) << "trial " << trial;
    ASSERT_LE(calls, max_attempts) << "trial " << trial;
    ASSERT_GE(calls, 1u);
    ASSERT_NE(r.reason, stop_reason::success);
    // The loop never slept past the deadline (attempts themselves may run over it).
    ASSERT_LE(clock.total_slept(), limit) << "trial " << trial;
  }
}

TEST(RetryAllocation, SuccessPathAllocatesNothing) {
  const backoff::policy p{.stop = stop::after_attempts(3)};
  int x = 0;
  (void)backoff::retry(p, [&] { return ++x; });  // warm up statics
  const auto before = backoff_test::allocations();
  for (int i = 0; i < 1000; ++i) (void)backoff::retry(p, [&] { return ++x; });
  EXPECT_EQ(backoff_test::allocations(), before);
}

TEST(RetryAllocation, EachRetryAllocatesNothing) {
  backoff::manual_clock clock;
  backoff::fast_rng rng{1};
  const backoff::policy p{.stop = stop::after_attempts(1000)};
  auto run = [&](int failures) {
    int calls = 0;
    const auto before = backoff_test::allocations();
    auto r = backoff::try_retry(p, [&]() -> std::error_code {
      return ++calls <= failures ? std::make_error_code(std::errc::timed_out) : std::error_code{};
    }, {.clock = &clock, .rng = rng});
    EXPECT_TRUE(r.ok());
    return backoff_test::allocations() - before;
  };
  run(1);  // warm up
  EXPECT_EQ(run(2), 0u);
  EXPECT_EQ(run(200), 0u);
}

TEST(RetryServerHint, WaitsTheLongerOfScheduleAndHint) {
  backoff::manual_clock clock;
  flaky f{2};
  std::vector<backoff::attempt_record> recs;
  backoff::retry(no_jitter(5), f,
                 {.after_attempt = [&](const auto& a) { recs.push_back(a.record); },
                  .server_hint = [](const auto& a) -> std::optional<backoff::duration> {
                    if (a.record.number == 1) return 30s;  // longer than the 1 s the schedule wants
                    return 500ms;                          // shorter than the 2 s: ignored
                  },
                  .clock = &clock});
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].hint, 30s);
  EXPECT_EQ(recs[0].delay, 30s);
  EXPECT_EQ(recs[1].hint, 500ms);
  EXPECT_EQ(recs[1].delay, 2s);
  EXPECT_EQ(recs[2].hint, -1ns);
  EXPECT_EQ(clock.total_slept(), 32s);
}

TEST(RetryServerHint, AHintPastTheDeadlineGivesUpWithoutSleeping) {
  backoff::manual_clock clock;
  flaky f{5};
  const backoff::policy p{.schedule = backoff::constant{.delay = 1s}, .jitter = backoff::jitter::none(),
                          .stop = stop::after_attempts(5) | stop::after_elapsed(60s)};
  auto r = backoff::try_retry(p, f, {.server_hint = [](const auto&) -> std::optional<backoff::duration> { return 2h; },
                                     .clock = &clock});
  EXPECT_EQ(r.reason, stop_reason::deadline);
  EXPECT_EQ(f.calls, 1);
  EXPECT_EQ(clock.total_slept(), 0s);
  EXPECT_EQ(r.history[0].hint, 2h);
}

TEST(Retry, AttemptsThatMadeProgressRestartTheScheduleAndDoNotCount) {
  backoff::manual_clock clock;
  // Ten failures, every odd one "made progress"; three attempts allowed.
  int calls = 0;
  auto op = [&]() -> int {
    ++calls;
    if (calls <= 10) throw flaky_error("cut", calls);
    return calls;
  };
  std::vector<backoff::duration> delays;
  const backoff::options<int> o{
      .after_attempt = [&](const backoff::attempt<int>& a) { if (!a.last) delays.push_back(a.record.delay); },
      .made_progress =
          [](const backoff::attempt<int>& a) { return a.record.number % 2 == 1; },
      .clock = &clock,
  };
  const auto r = backoff::try_retry(no_jitter(3), op, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(calls, 11);
  // After a progressing attempt the wait is the first one again (1 s); after a
  // failure without progress it grows (2 s).
  const std::vector<backoff::duration> want{1s, 2s, 1s, 2s, 1s, 2s, 1s, 2s, 1s, 2s};
  EXPECT_EQ(delays, want);
}

TEST(Retry, WithoutProgressTheAttemptLimitHolds) {
  backoff::manual_clock clock;
  int calls = 0;
  auto op = [&]() -> int { throw flaky_error("no", ++calls); };
  const backoff::options<int> o{
      .made_progress = [](const backoff::attempt<int>& a) { return a.record.number == 1; },
      .clock = &clock,
  };
  const auto r = backoff::try_retry(no_jitter(3), op, o);
  EXPECT_EQ(r.reason, stop_reason::exhausted);
  EXPECT_EQ(calls, 4);  // the first one progressed, then three that did not
}

// The first attempt of a loop that had no reason to read the clock before it
// was reported with start = -(the clock's reading) and took = +(the reading).
TEST(Retry, TheFirstAttemptsRecordIsNeverMeasuredFromTheClocksEpoch) {
  backoff::manual_clock clock;  // starts at one day
  std::vector<backoff::attempt_record> seen;
  int calls = 0;
  const backoff::options<int> o{
      .server_hint =
          [&](const backoff::attempt<int>& a) {
            seen.push_back(a.record);
            return std::optional<backoff::duration>{};
          },
      .clock = &clock,
  };
  const auto r = backoff::retry(no_jitter(2), [&]() -> int { if (++calls == 1) throw flaky_error("x", 1); return 7; }, o);
  EXPECT_EQ(r, 7);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].number, 1u);
  EXPECT_EQ(seen[0].start, backoff::duration{0});
  EXPECT_GE(seen[0].took, backoff::duration{0});
  EXPECT_LT(seen[0].took, std::chrono::hours{1});
}

struct http_error : std::runtime_error {
  explicit http_error(int s) : std::runtime_error("HTTP " + std::to_string(s)), status(s) {}
  int status;
};

TEST(Retry, AnExceptionPredicateLooksAtTheExceptionsValue) {
  backoff::manual_clock clock;
  const auto server_side = backoff::on_exception<http_error>([](const http_error& e) { return e.status >= 500; });
  for (const auto& [status, calls_expected] : {std::pair{503, 3}, std::pair{404, 1}}) {
    int calls = 0;
    const auto r = backoff::try_retry(
        no_jitter(3), [&, s = status]() -> int { ++calls; throw http_error(s); },
        {.classify = {.retry_exception = server_side}, .clock = &clock});
    EXPECT_EQ(calls, calls_expected) << status;
    EXPECT_EQ(r.reason, status == 503 ? stop_reason::exhausted : stop_reason::permanent);
  }
  // Another exception type is not matched at all.
  EXPECT_FALSE(server_side(std::make_exception_ptr(std::runtime_error("x"))));
}

TEST(Retry, CancellationSaysSoInsteadOfRethrowingTheLastError) {
  backoff::manual_clock clock;
  std::stop_source stop;
  try {
    backoff::retry(
        no_jitter(5),
        [&]() -> int {
          stop.request_stop();
          throw flaky_error("the real error", 1);
        },
        {.clock = &clock, .stop_token = stop.get_token()});
    FAIL() << "no exception";
  } catch (const backoff::retry_error& e) {
    EXPECT_EQ(e.reason(), stop_reason::cancelled);
    try {
      std::rethrow_if_nested(e);
      FAIL() << "the last error is not nested";
    } catch (const flaky_error& inner) {
      EXPECT_STREQ(inner.what(), "the real error");
    }
  }
}

TEST(Retry, ABadJitterIsReportedBeforeAnyAttempt) {
  backoff::policy p = no_jitter(3);
  p.jitter.fraction = 2.0;  // written after construction
  p.jitter.type = backoff::jitter::kind::proportional;
  int calls = 0;
  EXPECT_THROW(backoff::try_retry(p, [&] { return ++calls; }), std::invalid_argument);
  EXPECT_EQ(calls, 0);
  // On retry()'s fast path the first attempt runs; its error stays nested.
  try {
    backoff::retry(p, [&]() -> int { ++calls; throw flaky_error("real", 1); });
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("fraction"), std::string::npos) << e.what();
    EXPECT_THROW(std::rethrow_if_nested(e), flaky_error);
  }
  EXPECT_EQ(calls, 1);
}

TEST(Retry, NegativeAttemptCountsAreRejected) {
  EXPECT_THROW(backoff::stop::after_attempts(-1), std::invalid_argument);
  EXPECT_THROW(backoff::stop::after_attempts(0), std::invalid_argument);
  EXPECT_THROW(backoff::stop::after_attempts(std::int64_t{1} << 40), std::invalid_argument);
  EXPECT_EQ(backoff::stop::after_attempts(7).max_attempts(), 7u);
}

TEST(Retry, ErrorMessagesNameTheUsersFieldInReadableUnits) {
  try {
    backoff::presets::google_cloud({.maximum_backoff = 500ms});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "backoff::presets::google_cloud: maximum_backoff must be >= 1s (the first wait) (got 500ms)");
  }
  try {
    backoff::exponential{.initial = 1500ms, .multiplier = 2.0, .max_delay = 1s}.validate();
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "backoff::exponential: max_delay must be >= initial (got 1s)");
  }
}

TEST(Retry, TheFallbackIsForPermanentFailuresOnly) {
  backoff::manual_clock clock;
  int fallbacks = 0;
  const backoff::options<int> o{
      .fallback = [&](const backoff::attempt<int>&) { return ++fallbacks, -1; },
      .clock = &clock,
  };
  const auto r = backoff::try_retry(no_jitter(3), []() -> int { throw flaky_error("x", 1); }, o);
  EXPECT_EQ(r.reason, stop_reason::exhausted);
  EXPECT_EQ(fallbacks, 0);
  EXPECT_FALSE(r.ok());
}

// gate_first_attempt asks the gate once for the first attempt, then once per
// retry as a retry: never "first attempt" again (which would restart the
// operation's clock and charge a budget twice per retry).
TEST(Retry, GateFirstAttemptAsksOnceForTheFirstAttemptOnly) {
  struct counting final : backoff::gate {
    int firsts = 0, retries = 0;
    backoff::gate_decision acquire(const backoff::gate_request& r) noexcept override {
      ++(r.retry ? retries : firsts);
      return {};
    }
    void record(const backoff::gate_outcome&) noexcept override {}
  } g;
  backoff::manual_clock clock;
  flaky f{3};
  const backoff::policy p{.schedule = backoff::constant{.delay = 1ms}, .jitter = backoff::jitter::none(),
                          .stop = stop::after_attempts(10)};
  auto r = backoff::try_retry(p, f, {.gate = &g, .gate_first_attempt = true, .clock = &clock});
  EXPECT_EQ(r.attempts(), 4u);
  EXPECT_EQ(g.firsts, 1);
  EXPECT_EQ(g.retries, 3);
}

// retry()'s fast path makes the first attempt before any clock is read: the
// loop that takes over records it as beginning and ending then (start 0,
// took 0), on the real clock too, never as a span up to a later reading.
TEST(Retry, TheFastPathsFirstAttemptIsRecordedAsStartAndTookZero) {
  int calls = 0;
  std::vector<backoff::attempt_record> seen;
  const backoff::policy p{.schedule = backoff::constant{.delay = std::chrono::milliseconds{1}},
                          .jitter = backoff::jitter::none(),
                          .stop = backoff::stop::after_attempts(3)};
  const int v = backoff::retry(
      p,
      [&]() -> int {
        if (++calls == 1) throw std::runtime_error("first");
        return 7;
      },
      backoff::options<int>{.server_hint = [&](const backoff::attempt<int>& a) -> std::optional<backoff::duration> {
        seen.push_back(a.record);
        return std::nullopt;
      }});
  EXPECT_EQ(v, 7);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].number, 1u);
  EXPECT_EQ(seen[0].start.count(), 0);
  EXPECT_EQ(seen[0].took.count(), 0);
}

// A stop requested in before_retry (after the wait, before the next attempt)
// ends the loop there: on_give_up hears of the attempts made (one), with no
// result and no hint (-1 ns), and nothing more runs.
TEST(Retry, AStopRequestedInBeforeRetryEndsTheLoopBeforeTheNextAttempt) {
  std::stop_source stop;
  backoff::manual_clock clock;
  int calls = 0;
  std::optional<backoff::attempt<int>> gave_up;
  const backoff::policy p{.schedule = backoff::constant{.delay = std::chrono::seconds{1}},
                          .jitter = backoff::jitter::none(),
                          .stop = backoff::stop::after_attempts(5)};
  const auto r = backoff::try_retry(
      p,
      [&]() -> int {
        ++calls;
        throw std::runtime_error("down");
      },
      backoff::options<int>{.before_retry = [&](const backoff::attempt<int>&) { stop.request_stop(); },
                            .on_give_up = [&](const backoff::attempt<int>& a) { gave_up = a; },
                            .clock = &clock,
                            .stop_token = stop.get_token()});
  EXPECT_EQ(r.reason, backoff::stop_reason::cancelled);
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(gave_up);
  EXPECT_EQ(gave_up->record.number, 1u);
  EXPECT_EQ(gave_up->record.hint.count(), -1);
  EXPECT_EQ(gave_up->result, nullptr);
  EXPECT_EQ(gave_up->reason, backoff::stop_reason::cancelled);
  EXPECT_TRUE(gave_up->last);
}

// A copy of a history, by construction or assignment, keeps every record,
// the oldest first, also once it has wrapped around.
TEST(History, CopiesKeepEveryRecordInOrder) {
  for (const std::uint32_t n : {3u, 40u}) {
    backoff::history a;
    for (std::uint32_t i = 1; i <= n; ++i)
      a.push({i, backoff::attempt_outcome::retryable, false, {}, {}, {}, std::chrono::nanoseconds{-1}});
    backoff::history assigned;
    assigned.push({99, backoff::attempt_outcome::success, false, {}, {}, {}, std::chrono::nanoseconds{-1}});
    assigned = a;
    const backoff::history constructed(a);
    for (const backoff::history* h : std::initializer_list<const backoff::history*>{&assigned, &constructed}) {
      ASSERT_EQ(h->size(), a.size()) << n;
      EXPECT_EQ(h->total(), n);
      for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ((*h)[i].number, a[i].number) << n << " " << i;
      EXPECT_EQ((*h)[0].number, n <= backoff::history::capacity ? 1u : n - backoff::history::capacity + 1);
    }
  }
}
