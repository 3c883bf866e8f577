// SPDX-License-Identifier: BSL-1.0
// Core benchmarks. Names are stable so results can be compared over time:
//   BM_DirectCall          a non-inlined trivial callee, called directly (the baseline)
//   BM_RetrySuccess        the same callee through retry() with a 3-attempt policy
//   BM_RetrySuccessObserved the same with backoff::metrics attached (it reads the clock twice)
//   BM_RetryThreeFailures  three retryable failures then success, manual clock (no sleeping)
//   BM_NextDelay/<jitter>  one delay from the policy (schedule + jitter)
#include <benchmark/benchmark.h>

#include <backoff/backoff.hpp>
#include <backoff/metrics.hpp>

#include <system_error>

using namespace std::chrono_literals;

namespace {

[[gnu::noinline]] int callee(int x) {
  benchmark::DoNotOptimize(x);
  return x + 1;
}

void BM_DirectCall(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) {
    x = callee(x);
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(BM_DirectCall);

void BM_RetrySuccess(benchmark::State& state) {
  const backoff::policy p{.stop = backoff::stop::after_attempts(3)};
  int x = 0;
  for (auto _ : state) {
    x = backoff::retry(p, [&] { return callee(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(BM_RetrySuccess);

void BM_RetrySuccessObserved(benchmark::State& state) {
  const backoff::policy p{.stop = backoff::stop::after_attempts(3)};
  backoff::metrics m;
  const backoff::options<int> o{.observer = &m};
  int x = 0;
  for (auto _ : state) {
    x = backoff::retry(p, [&] { return callee(x); }, o);
    benchmark::DoNotOptimize(x);
  }
  if (m.attempts(backoff::attempt_outcome::success) == 0) state.SkipWithError("the observer saw nothing");
}
BENCHMARK(BM_RetrySuccessObserved);

void BM_RetryThreeFailures(benchmark::State& state) {
  const backoff::policy p{.stop = backoff::stop::after_attempts(4)};
  backoff::manual_clock clock;
  backoff::fast_rng rng{1};
  const backoff::options<std::error_code> o{.clock = &clock, .rng = rng};
  for (auto _ : state) {
    int calls = 0;
    auto r = backoff::retry(p, [&] {
      return ++calls <= 3 ? std::make_error_code(std::errc::timed_out) : std::error_code{};
    }, o);
    benchmark::DoNotOptimize(r);
  }
  state.counters["per_retry_ns"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 3, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_RetryThreeFailures);

void next_delay(benchmark::State& state, backoff::policy p) {
  backoff::fast_rng rng{42};
  backoff::schedule_state s;
  for (auto _ : state) {
    if (s.retry > 40) s = {};
    benchmark::DoNotOptimize(p.next_delay(s, rng));
  }
}
BENCHMARK_CAPTURE(next_delay, full, backoff::policy{.jitter = backoff::jitter::full()})->Name("BM_NextDelay/full");
BENCHMARK_CAPTURE(next_delay, equal, backoff::policy{.jitter = backoff::jitter::equal()})->Name("BM_NextDelay/equal");
BENCHMARK_CAPTURE(next_delay, decorrelated,
                  backoff::policy{.schedule = backoff::decorrelated{.base = 5ms, .max_delay = 2s},
                                  .jitter = backoff::jitter::none()})
    ->Name("BM_NextDelay/decorrelated");
BENCHMARK_CAPTURE(next_delay, additive, backoff::presets::google_cloud())->Name("BM_NextDelay/additive");

// Overload protection. One budget shared by all benchmark threads: each
// iteration is a retry's acquire plus the success that refunds it.
backoff::retry_budget& shared_budget() {
  static backoff::retry_budget b = backoff::retry_budget::aws_standard();
  return b;
}

void BM_BudgetAcquireRelease(benchmark::State& state) {
  auto& b = shared_budget();
  const backoff::time_point now{};
  for (auto _ : state) {
    const auto d = b.acquire({true, now, false});
    if (d.allowed) b.record({backoff::attempt_outcome::success, true, false, now});
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_BudgetAcquireRelease)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();

// A success that finds the bucket full: no atomic read-modify-write at all.
void BM_BudgetFullRefund(benchmark::State& state) {
  auto b = backoff::retry_budget::aws_standard();
  const backoff::time_point now{};
  for (auto _ : state) {
    b.record({backoff::attempt_outcome::success, false, false, now});
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_BudgetFullRefund);

void BM_BreakerClosedPath(benchmark::State& state) {
  backoff::circuit_breaker breaker;
  const backoff::time_point now{std::chrono::hours{1}};
  for (auto _ : state) {
    const auto d = breaker.acquire({false, now, false});
    breaker.record({backoff::attempt_outcome::success, false, false, now});
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_BreakerClosedPath);

}  // namespace

BENCHMARK_MAIN();
