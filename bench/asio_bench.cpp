// SPDX-License-Identifier: BSL-1.0
// Async retries on Asio (backoff/asio.hpp), on virtual time:
//   BM_AsioTimerBaseline        three failed attempts and their three waits, written by hand on bare
//                               manual timers (the floor for any async retry loop)
//   BM_AsyncRetryThreeFailures  the same sequence through async_retry
//   BM_AsyncRetryFirstSuccess   async_retry whose first attempt succeeds (the floor for hedging)
//   BM_AsyncHedgeFirstWins      async_hedge (2 copies, delay 2 s) whose first copy succeeds before the
//                               delay: the hedge timer armed and cancelled, no second copy
//   BM_AsyncPending/N           N async_retry operations pending at once on one io_context thread,
//                               every one completing; bytes_per_op = growth of resident memory / N
#include <benchmark/benchmark.h>

#include <asio/experimental/append.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <backoff/asio.hpp>
#include <backoff/asio_hedge.hpp>

#include <cstdio>
#include <functional>
#include <fstream>

using namespace std::chrono_literals;
namespace ba = backoff::asio;

namespace {

const std::error_code refused = std::make_error_code(std::errc::connection_refused);

// Completes on the io_context with `refused` for the first `failures` calls.
struct failing_op {
  asio::io_context* ctx;
  int failures;
  int* calls;
  template <class Token>
  auto operator()(Token&& token) {
    const std::error_code ec = ++*calls <= failures ? refused : std::error_code{};
    return asio::post(*ctx, asio::experimental::append(std::forward<Token>(token), ec));
  }
};

const backoff::policy three_waits{.schedule = backoff::exponential{.initial = 1s, .multiplier = 2.0, .max_delay = 8s},
                                  .jitter = backoff::jitter::none(),
                                  .stop = backoff::stop::after_attempts(4)};

// The hand-written loop: attempt, on failure wait 1 s, 2 s, 4 s on one timer.
struct by_hand {
  asio::io_context& ctx;
  ba::manual_timer timer;
  int calls = 0;
  std::chrono::nanoseconds wait = 1s;
  int* done;
  void attempt() {
    asio::post(ctx, [this] {
      if (++calls <= 3) {
        timer.expires_after(wait);
        wait *= 2;
        timer.async_wait([this](std::error_code) { attempt(); });
      } else {
        ++*done;
      }
    });
  }
};

void BM_AsioTimerBaseline(benchmark::State& state) {
  asio::io_context ctx;
  int done = 0;
  for (auto _ : state) {
    by_hand loop{ctx, ba::manual_timer(ctx), 0, 1s, &done};
    loop.attempt();
    ctx.restart();
    ctx.run();
  }
  if (done != static_cast<int>(state.iterations())) state.SkipWithError("a loop did not complete");
}
BENCHMARK(BM_AsioTimerBaseline);

void BM_AsyncRetryThreeFailures(benchmark::State& state) {
  asio::io_context ctx;
  int done = 0;
  for (auto _ : state) {
    int calls = 0;
    ba::async_retry<ba::manual_timer>(ctx.get_executor(), three_waits, failing_op{&ctx, 3, &calls},
                                      [&](std::error_code ec) { done += !ec; });
    ctx.restart();
    ctx.run();
  }
  if (done != static_cast<int>(state.iterations())) state.SkipWithError("a loop did not succeed");
}
BENCHMARK(BM_AsyncRetryThreeFailures);

void BM_AsyncRetryFirstSuccess(benchmark::State& state) {
  asio::io_context ctx;
  int done = 0;
  for (auto _ : state) {
    int calls = 0;
    ba::async_retry(ctx.get_executor(), three_waits, failing_op{&ctx, 0, &calls}, [&](std::error_code ec) { done += !ec; });
    ctx.restart();
    ctx.run();
  }
  if (done != static_cast<int>(state.iterations())) state.SkipWithError("a loop did not succeed");
}
BENCHMARK(BM_AsyncRetryFirstSuccess);

void BM_AsyncHedgeFirstWins(benchmark::State& state) {
  asio::io_context ctx;
  const backoff::hedge_policy hedge{.max_attempts = 2, .delay = 2s, .retry = three_waits};
  int done = 0, copies = 0;
  for (auto _ : state) {
    int calls = 0;
    ba::async_hedge(ctx.get_executor(), hedge, failing_op{&ctx, 0, &calls}, [&](std::error_code ec) { done += !ec; });
    ctx.restart();
    ctx.run();
    copies += calls;
  }
  if (done != static_cast<int>(state.iterations())) state.SkipWithError("a hedge did not succeed");
  if (copies != done) state.SkipWithError("a second copy was sent");
}
BENCHMARK(BM_AsyncHedgeFirstWins);

long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * 4096;
}

void BM_AsyncPending(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  double bytes_per_op = 0;
  for (auto _ : state) {
    asio::io_context ctx;
    std::vector<int> calls(static_cast<std::size_t>(n), 0);
    int done = 0;
    const long before = resident_bytes();
    for (int i = 0; i < n; ++i)
      ba::async_retry<ba::manual_timer>(ctx.get_executor(), std::cref(three_waits),
                                        failing_op{&ctx, 1, &calls[static_cast<std::size_t>(i)]},
                                        [&](std::error_code ec) { done += !ec; });
    ctx.poll();  // every first attempt has failed: n loops wait on their timers
    const long pending = resident_bytes();
    ctx.run();
    bytes_per_op = static_cast<double>(pending - before) / n;
    if (done != n) state.SkipWithError("not every operation completed");
  }
  state.counters["bytes_per_op"] = bytes_per_op;
  state.counters["ops"] = n;
}
BENCHMARK(BM_AsyncPending)->Arg(1000000)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
