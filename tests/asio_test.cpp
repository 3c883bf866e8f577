// SPDX-License-Identifier: BSL-1.0
// backoff::asio on virtual time (manual_timer): every completion token, the
// stop reasons, hooks, gates and cancellation, with no test sleeping.
#include "backoff/asio.hpp"

#include <gtest/gtest.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/append.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>

#include <future>
#include <optional>
#include <stdexcept>
#include <thread>

#include "backoff/breaker.hpp"
#include "backoff/budget.hpp"
#include "backoff/metrics.hpp"

using namespace std::chrono_literals;
namespace ba = backoff::asio;
using backoff::stop_reason;

namespace {

backoff::policy doubling(std::uint32_t attempts) {
  return {.schedule = backoff::exponential{.initial = 1s, .multiplier = 2.0, .max_delay = 64s},
          .jitter = backoff::jitter::none(),
          .stop = backoff::stop::after_attempts(attempts)};
}

// An op that completes on the io_context with the next error of `script`
// (std::error_code{} and the attempt number once the script is used up).
struct scripted_op {
  asio::io_context* ctx;
  std::vector<std::error_code> script;
  int* calls;
  template <class Token>
  auto operator()(Token&& token) {
    const int n = ++*calls;
    const std::error_code ec = static_cast<std::size_t>(n) <= script.size() ? script[n - 1] : std::error_code{};
    return asio::post(*ctx, asio::experimental::append(std::forward<Token>(token), ec, n));
  }
};

const std::error_code refused = std::make_error_code(std::errc::connection_refused);

class Asio : public ::testing::Test {
 protected:
  void SetUp() override { ba::manual_clock::reset(); }
  asio::io_context ctx;
  int calls = 0;
  scripted_op op(std::vector<std::error_code> script) { return {&ctx, std::move(script), &calls}; }
};

}  // namespace

TEST_F(Asio, ACallbackGetsTheSuccessfulAttemptsArguments) {
  std::optional<std::pair<std::error_code, int>> got;
  const auto t0 = ba::manual_clock::now();
  ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(5), op({refused, refused}),
                                    [&](std::error_code ec, int n) { got.emplace(ec, n); });
  ctx.run();
  ASSERT_TRUE(got);
  EXPECT_FALSE(got->first);
  EXPECT_EQ(got->second, 3);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(ba::manual_clock::now() - t0, 3s);  // 1 s + 2 s of virtual time
}

TEST_F(Asio, GivingUpCompletesWithTheLastRealError) {
  std::optional<std::error_code> got;
  stop_reason why = stop_reason::success;
  backoff::options<ba::result_of<scripted_op>> o{
      .on_give_up = [&](const backoff::attempt<ba::result_of<scripted_op>>& a) { why = a.reason; }};
  ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(3), op({refused, refused, refused, refused}), o,
                                    [&](std::error_code ec, int) { got = ec; });
  ctx.run();
  EXPECT_EQ(got, refused);
  EXPECT_EQ(why, stop_reason::exhausted);
  EXPECT_EQ(calls, 3);
}

// before_retry runs after each wait, right before the retry, with the attempt
// that failed (as in the sync loop; issue 25: no test noticed its absence).
TEST_F(Asio, BeforeRetryRunsAfterEachWaitWithTheFailedAttempt) {
  std::vector<std::pair<std::uint32_t, backoff::duration>> seen;  // attempt number, virtual time since start
  const auto t0 = ba::manual_clock::now();
  backoff::options<ba::result_of<scripted_op>> o{.before_retry = [&](const backoff::attempt<ba::result_of<scripted_op>>& a) {
    seen.emplace_back(a.record.number, ba::manual_clock::now() - t0);
    EXPECT_EQ(calls, static_cast<int>(a.record.number));  // the next attempt has not started yet
  }};
  std::optional<std::error_code> got;
  ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(5), op({refused, refused}), o,
                                    [&](std::error_code ec, int) { got = ec; });
  ctx.run();
  ASSERT_TRUE(got);
  EXPECT_FALSE(*got);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, 1u);
  EXPECT_EQ(seen[0].second, 1s);  // after the 1 s wait
  EXPECT_EQ(seen[1].first, 2u);
  EXPECT_EQ(seen[1].second, 3s);  // after the 2 s wait
}

TEST_F(Asio, TheClassifierAndFallbackBehaveAsInTheSyncLoop) {
  const std::error_code denied = std::make_error_code(std::errc::permission_denied);
  std::optional<std::pair<std::error_code, int>> got;
  backoff::options<ba::result_of<scripted_op>> o{
      .classify = {.retry_value = backoff::on_error_codes({std::errc::connection_refused})},
      .fallback = [](const backoff::attempt<ba::result_of<scripted_op>>&) {
        return ba::result_of<scripted_op>{std::error_code{}, std::tuple<int>{-1}};
      }};
  ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(5), op({refused, denied}), o,
                                    [&](std::error_code ec, int n) { got.emplace(ec, n); });
  ctx.run();
  ASSERT_TRUE(got);
  EXPECT_FALSE(got->first);
  EXPECT_EQ(got->second, -1);  // permission_denied is permanent: the fallback answered
  EXPECT_EQ(calls, 2);
}

TEST_F(Asio, UseAwaitable) {
  int value = 0;
  auto once_refused = op({refused});  // (GCC 12 cannot hold an initializer_list in a coroutine frame)
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        value = co_await ba::async_retry<ba::manual_timer>(ex, doubling(5), once_refused, asio::use_awaitable);
      },
      asio::detached);
  ctx.run();
  EXPECT_EQ(value, 2);
}

TEST_F(Asio, UseFuture) {
  auto fut = ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(5), op({refused, refused}), asio::use_future);
  ctx.run();
  EXPECT_EQ(fut.get(), 3);
}

TEST_F(Asio, Deferred) {
  auto later = ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(5), op({refused}),
                                                 asio::experimental::deferred);
  EXPECT_EQ(calls, 0);  // nothing starts until the deferred operation is launched
  int got = 0;
  std::move(later)([&](std::error_code, int n) { got = n; });
  ctx.run();
  EXPECT_EQ(got, 2);
}

TEST_F(Asio, ACoroutineOpIsRetriedThroughItsExceptions) {
  int tries = 0;
  auto flaky = ba::coroutine_op(ctx.get_executor(), [&]() -> asio::awaitable<int> {
    if (++tries < 3) throw std::runtime_error("reset");
    co_return 42;
  });
  std::optional<int> got;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        got = co_await ba::async_retry<ba::manual_timer>(ex, doubling(5), flaky, asio::use_awaitable);
      },
      asio::detached);
  ctx.run();
  EXPECT_EQ(got, 42);
  EXPECT_EQ(tries, 3);
}

TEST_F(Asio, ACoroutineOpsLastExceptionIsRethrownByUseAwaitable) {
  auto hopeless = ba::coroutine_op(ctx.get_executor(), [&]() -> asio::awaitable<int> {
    ++calls;
    throw std::out_of_range("gone");
    co_return 0;
  });
  bool caught = false;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        try {
          const auto ex = co_await asio::this_coro::executor;
          co_await ba::async_retry<ba::manual_timer>(ex, doubling(3), hopeless, asio::use_awaitable);
        } catch (const std::out_of_range&) {
          caught = true;
        }
      },
      asio::detached);
  ctx.run();
  EXPECT_TRUE(caught);
  EXPECT_EQ(calls, 3);
}

TEST_F(Asio, ACancelDuringAWaitEndsTheLoopAtOnce) {
  asio::cancellation_signal cancel;
  std::optional<std::error_code> got;
  stop_reason why = stop_reason::success;
  backoff::options<ba::result_of<scripted_op>> o{
      .after_attempt = [&](const backoff::attempt<ba::result_of<scripted_op>>& a) {
        if (!a.last) asio::post(ctx, [&] { cancel.emit(asio::cancellation_type::terminal); });
      },
      .on_give_up = [&](const backoff::attempt<ba::result_of<scripted_op>>& a) { why = a.reason; }};
  ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(5), op({refused, refused}), o,
                                    asio::bind_cancellation_slot(cancel.slot(), [&](std::error_code ec, int) { got = ec; }));
  ctx.run();
  EXPECT_EQ(got, asio::error::operation_aborted);
  EXPECT_EQ(why, stop_reason::cancelled);
  EXPECT_EQ(calls, 1);  // the 1 s wait was not waited out: no second attempt
}

TEST_F(Asio, ACancelDuringAnAttemptReachesTheAttempt) {
  asio::steady_timer never(ctx, std::chrono::hours{1});  // the attempt: a real wait of an hour
  asio::cancellation_signal cancel;
  std::optional<std::error_code> got;
  auto hang = [&](auto&& token) { return never.async_wait(std::forward<decltype(token)>(token)); };
  const auto started = std::chrono::steady_clock::now();
  const auto virtual_start = ba::manual_clock::now();
  ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(5), hang,
                                    asio::bind_cancellation_slot(cancel.slot(), [&](std::error_code ec) { got = ec; }));
  asio::post(ctx, [&] { cancel.emit(asio::cancellation_type::terminal); });
  ctx.run();
  EXPECT_EQ(got, asio::error::operation_aborted);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 30s);
  // The aborted attempt ended the loop: no wait was scheduled after it (a wait
  // on the manual timer would have moved virtual time by the first delay, 1 s).
  EXPECT_EQ(ba::manual_clock::now(), virtual_start);
}

TEST_F(Asio, OneGateServesSyncAndAsyncLoops) {
  auto budget = backoff::retry_budget::aws_standard({.capacity = 5});  // one retry in all
  std::optional<std::error_code> got;
  backoff::options<ba::result_of<scripted_op>> o{.gate = &budget};
  ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(5), op({refused, refused, refused}), o,
                                    [&](std::error_code ec, int) { got = ec; });
  ctx.run();
  EXPECT_EQ(got, refused);
  EXPECT_EQ(calls, 2);  // the first attempt and the one retry the budget paid for
  int sync_calls = 0;
  const auto r = backoff::try_retry(doubling(5), [&]() -> int { ++sync_calls; throw std::runtime_error("x"); },
                                    {.gate = &budget, .clock = nullptr});
  EXPECT_EQ(r.reason, stop_reason::budget_exhausted);
  EXPECT_EQ(sync_calls, 1);
}

TEST_F(Asio, AGateDenyingTheFirstAttemptCompletesWithABackoffError) {
  backoff::circuit_breaker breaker({.minimum_throughput = 2, .break_duration = 60s});
  const backoff::time_point now{ba::manual_clock::now().time_since_epoch()};
  breaker.record({backoff::attempt_outcome::retryable, false, false, now});
  breaker.record({backoff::attempt_outcome::retryable, false, false, now});
  std::optional<std::error_code> got;
  std::optional<backoff::attempt<ba::result_of<scripted_op>>> gave_up;
  backoff::options<ba::result_of<scripted_op>> o{
      .on_give_up = [&](const backoff::attempt<ba::result_of<scripted_op>>& a) { gave_up = a; },
      .gate = &breaker,
      .gate_first_attempt = true};
  ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(5), op({}), o, [&](std::error_code ec, int) { got = ec; });
  ctx.run();
  EXPECT_EQ(got, ba::error::gate_denied);
  EXPECT_EQ(calls, 0);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->message(), "a gate denied the first attempt");
  EXPECT_EQ(std::error_code(ba::error::no_attempt).message(), "no attempt was made");
  EXPECT_STREQ(got->category().name(), "backoff");
  // on_give_up hears of no attempt: number 0, no result, no hint (-1 ns).
  ASSERT_TRUE(gave_up);
  EXPECT_EQ(gave_up->record.number, 0u);
  EXPECT_EQ(gave_up->result, nullptr);
  EXPECT_EQ(gave_up->record.hint, -1ns);
  EXPECT_EQ(gave_up->reason, stop_reason::circuit_open);
  EXPECT_TRUE(gave_up->last);
}

// A value the classifier calls a failure has no error code of its own: when
// the loop gives up on it, the caller gets that attempt's arguments, without
// an error made up by the loop (as the sync loop returns the last value).
TEST_F(Asio, GivingUpOnAFailedValueCompletesWithThatValue) {
  std::optional<std::pair<std::error_code, int>> got;
  std::optional<stop_reason> why;
  backoff::options<ba::result_of<scripted_op>> o{
      .classify = {.is_success = [](const ba::result_of<scripted_op>& r) { return std::get<0>(r.values) > 100; }},
      .on_give_up = [&](const backoff::attempt<ba::result_of<scripted_op>>& a) { why = a.reason; }};
  ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(3), op({}), o,
                                    [&](std::error_code ec, int n) { got.emplace(ec, n); });
  ctx.run();
  ASSERT_TRUE(got);
  EXPECT_FALSE(got->first) << got->first.message();
  EXPECT_EQ(got->second, 3);
  EXPECT_EQ(why, stop_reason::exhausted);
  EXPECT_EQ(calls, 3);
}

TEST_F(Asio, DestroyingTheIoContextWithPendingRetriesLeaksNothing) {
  auto ctx2 = std::make_unique<asio::io_context>();
  int n = 0;
  for (int i = 0; i < 100; ++i)
    ba::async_retry(ctx2->get_executor(), doubling(5), scripted_op{ctx2.get(), std::vector<std::error_code>(1000, refused), &n},
                    [](std::error_code, int) { ADD_FAILURE() << "must not complete"; });
  ctx2->poll();  // every first attempt failed; each loop now waits 1 s on a real steady_timer
  EXPECT_EQ(n, 100);
  ctx2.reset();  // ASan reports anything left behind
}

TEST_F(Asio, ACoroutineFunctionIsTakenDirectly) {
  int tries = 0;
  auto flaky = [&]() -> asio::awaitable<std::string> {
    if (++tries < 2) throw std::runtime_error("reset");
    co_return std::string("ok");
  };
  std::string got;
  std::exception_ptr error;
  ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(5), flaky, [&](std::exception_ptr e, std::string v) {
    error = e;
    got = std::move(v);
  });
  ctx.run();
  EXPECT_FALSE(error);
  EXPECT_EQ(got, "ok");
  EXPECT_EQ(tries, 2);
}

namespace {
// Says "not yet, ask again in 300 ms" until `until`, then allows; counts the asking.
struct not_until final : backoff::gate {
  backoff::time_point until;
  int asked = 0, rechecks = 0;
  backoff::gate_decision acquire(const backoff::gate_request& r) noexcept override {
    ++asked;
    if (r.recheck) ++rechecks;
    if (r.now < until) return backoff::gate_decision::ask_again(r.now + 300ms);
    return {};
  }
  void record(const backoff::gate_outcome&) noexcept override {}
};
}  // namespace

// async_retry honours a recheck before the first attempt and before a retry:
// it waits, asks again, and attempts only once allowed.
TEST_F(Asio, AGateThatSaysRecheckIsAskedAgainAfterTheWait) {
  not_until g;
  const auto t0 = ba::manual_clock::now();
  g.until = ba::detail::to_backoff<ba::manual_clock>(t0) + 1s;
  std::vector<backoff::duration> starts;
  backoff::options<ba::result_of<scripted_op>> o{.gate = &g, .gate_first_attempt = true};
  std::optional<std::error_code> got;
  auto inner = op({refused});
  ba::async_retry<ba::manual_timer>(
      ctx.get_executor(), doubling(5),
      [&](auto&& token) {
        starts.push_back(ba::manual_clock::now() - t0);
        return inner(std::forward<decltype(token)>(token));
      },
      o, [&](std::error_code ec, int) { got = ec; });
  ctx.run();
  ASSERT_TRUE(got);
  EXPECT_FALSE(*got);
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[0], 1200ms);  // asked at 0, 300, 600, 900, 1200 ms
  EXPECT_EQ(starts[1], 2200ms);  // the retry after 1 s: allowed at once
  EXPECT_EQ(g.rechecks, 4);
}

// async_retry tells an observer what the sync loop tells it.
TEST_F(Asio, AnObserverHearsEachAttemptAndTheEnd) {
  backoff::metrics m;
  backoff::options<ba::result_of<scripted_op>> o{.observer = &m};
  std::optional<std::error_code> got;
  ba::async_retry<ba::manual_timer>(ctx.get_executor(), doubling(5), op({refused, refused}), o,
                                    [&](std::error_code ec, int) { got = ec; });
  ctx.run();
  ASSERT_TRUE(got);
  EXPECT_EQ(m.attempts(backoff::attempt_outcome::retryable), 2u);
  EXPECT_EQ(m.attempts(backoff::attempt_outcome::success), 1u);
  EXPECT_EQ(m.retries(), 2u);
  EXPECT_EQ(m.operations(stop_reason::success), 1u);
}
