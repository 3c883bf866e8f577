// SPDX-License-Identifier: BSL-1.0
// backoff::redis hot paths, against the local gates of core_bench.cpp: a
// shared budget's acquire and record touch only atomics of this process.
// A redis-server (Debian's) is started on a loopback port for the run.
#include <benchmark/benchmark.h>

#include <memory>
#include <stdexcept>
#include <thread>

#include "backoff/redis/fleet.hpp"
#include "redis_server.hpp"

namespace {

struct fleet_fixture {
  backoff::testing::redis_server redis;
  backoff::redis::fleet fleet{{.url = redis.url("/bench")}};
  // A lease that never runs dry: ratio 10, 50 tokens a sync.
  backoff::redis::shared_budget budget{fleet, "api", {.ratio = 10, .min_per_second = 1000, .window = std::chrono::seconds(10), .max_lease = 50}};
  backoff::redis::shared_host_backoff hosts{fleet};
  backoff::redis::shared_host_backoff::key_gate host = hosts.for_key("api:443");
};

fleet_fixture& fixture() {
  static fleet_fixture f;
  static const bool leased = [] {
    for (int i = 0; i < 2000 && f.budget.lease() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return f.budget.lease() > 0;
  }();
  if (!leased) throw std::runtime_error("fleet_bench: no lease from Redis");
  return f;
}

// As BM_BudgetAcquireRelease: a retry's acquire (a token of the lease), then
// its result. The token is handed back (release) so that the lease never runs
// dry and every iteration takes the granting path, not the cheaper denial.
void BM_SharedBudgetAcquire(benchmark::State& state) {
  auto& b = fixture().budget;
  const backoff::time_point now{};
  for (auto _ : state) {
    const backoff::gate_request r{true, now, false};
    const auto d = b.acquire(r);
    if (!d.allowed) state.SkipWithError("the lease ran dry");
    b.record({backoff::attempt_outcome::success, true, false, now});
    b.release(r);
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_SharedBudgetAcquire)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();

// A first attempt through the fleet's budget: one counter.
void BM_SharedBudgetFirstAttempt(benchmark::State& state) {
  auto& b = fixture().budget;
  const backoff::time_point now{};
  for (auto _ : state) {
    const auto d = b.acquire({false, now, false});
    b.record({backoff::attempt_outcome::success, false, false, now});
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_SharedBudgetFirstAttempt);

// The fleet's release time for a host, read from the local host_backoff.
void BM_SharedHostGate(benchmark::State& state) {
  auto& g = fixture().host;
  const backoff::time_point now = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const auto d = g.acquire({false, now, false});
    g.record({backoff::attempt_outcome::success, false, false, now});
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_SharedHostGate);

}  // namespace
