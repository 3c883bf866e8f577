// SPDX-License-Identifier: BSL-1.0
// sim/sim.hpp — a discrete-event simulator for retry strategies, driving the
// library's own policy, schedule, stop-rule and gate objects on simulated time.
//
//   auto rows = backoff::sim::run_contention({.clients = {10, 100}, .runs = 100});
//   auto fail = backoff::sim::run_failures({.failure_rates = {0.05, 0.5}});
//   auto over = backoff::sim::run_overload({.shape = backoff::sim::load_shape::spike});
//
// Three scenarios (docs/simulations.md shows their results):
//  - contention: Brooker's 2015 model ("Exponential Backoff And Jitter", AWS
//    Architecture Blog): N clients race to update one optimistic-concurrency row.
//  - failures: open-loop clients against a server that fails each attempt with
//    probability p; measures load amplification and client success.
//  - overload: a server whose latency grows with concurrency; a load spike past
//    the client timeout can leave it stuck (a metastable failure) unless retries
//    are contained.
// Everything is deterministic for a given seed.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backoff/gate.hpp"
#include "backoff/policy.hpp"

namespace backoff::sim {

// A retry strategy as a simulated client uses it: a policy, and a gate made
// fresh for each client (clients do not share gates unless the factory returns
// the same one).
struct strategy {
  std::string name;
  backoff::policy policy;
  std::function<std::shared_ptr<backoff::gate>()> make_gate{};
  bool gate_first_attempt = false;
};

// The library's recommended setup, chosen with this simulator (see
// docs/simulations.md): backoff::policy{} (full jitter over 1 s × 2^n up to
// 32 s, 4 attempts) and retry_budget::recommended() (10 % of requests).
backoff::policy default_policy();
std::shared_ptr<backoff::gate> default_gate();

// The p-th percentile (nearest rank) of a sample; 0 for an empty one.
double percentile(std::vector<double> sample, double p);

// Named strategies: "none", "exponential", "full", "equal", "decorrelated"
// (Brooker's, with base and cap), the presets "google-cloud", "aws-standard",
// "grpc", "curl", and for the load scenarios "no-retries", "3-retries",
// "budget-aws", "budget-grpc", "budget-finagle", "sre-throttle",
// "circuit-breaker", "backoff-default". Throws std::invalid_argument for an
// unknown name.
strategy named_strategy(const std::string& name, duration base = std::chrono::milliseconds{5},
                        duration cap = std::chrono::milliseconds{2000});

// --- contention ---------------------------------------------------------------

struct contention_options {
  std::vector<int> clients{1, 2, 5, 10, 20, 50, 100};
  std::vector<std::string> strategies{"none", "exponential", "full", "equal", "decorrelated"};
  int runs = 100;
  std::uint64_t seed = 1;
  duration base = std::chrono::milliseconds{5};
  duration cap = std::chrono::milliseconds{2000};
  duration net_mean = std::chrono::milliseconds{10};
  duration net_sd = std::chrono::milliseconds{2};
};

struct contention_run {
  std::uint64_t writes = 0;  // total write calls
  duration completion{0};    // time of the last event
};

struct contention_row {
  int clients;
  std::string strategy;
  double mean_writes, mean_completion_ms, p50_completion_ms, p99_completion_ms;
};

// One run: `clients` clients with `s`, randomness from `seed`.
contention_run contention_once(int clients, const strategy& s, const contention_options& o, std::uint64_t seed);
std::vector<contention_row> run_contention(const contention_options& o);

// --- failures -------------------------------------------------------------------

struct failures_options {
  // Request streams. By default they share one gate, as the threads of one
  // client process share a gate per upstream host; gate_per_client gives each
  // stream its own, as if each were a separate process.
  std::uint32_t clients = 100;
  bool gate_per_client = false;
  double rate_per_client = 10;  // requests per second
  duration length = std::chrono::seconds{10};
  std::vector<double> failure_rates{0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75};
  std::vector<std::string> policies{"no-retries",     "3-retries",    "budget-aws",      "budget-grpc",
                                    "budget-finagle", "sre-throttle", "circuit-breaker", "backoff-default"};
  std::uint64_t seed = 1;
};

struct failures_row {
  double failure_rate;
  std::string policy;
  double amplification;  // server attempts ÷ requests
  double success_rate;   // successful requests ÷ requests
  std::uint64_t requests, attempts, successes;
};

failures_row failures_once(double failure_rate, const strategy& s, const failures_options& o, std::uint64_t seed);
std::vector<failures_row> run_failures(const failures_options& o);

// --- overload -------------------------------------------------------------------

enum class load_shape { spike, ramp };

struct overload_options {
  load_shape shape = load_shape::spike;
  double base_rate = 40;  // requests per second
  double peak_rate = 80;
  duration length = std::chrono::seconds{90};
  duration window = std::chrono::seconds{1};
  std::uint32_t clients = 10;  // client processes, each with its own gate
  duration base_latency = std::chrono::seconds{1};
  duration latency_per_request = std::chrono::milliseconds{10};
  duration timeout = std::chrono::seconds{3};
  std::uint32_t attempts = 3;
  std::vector<std::string> policies{"no-retries",     "3-retries",    "budget-aws",      "budget-grpc",
                                    "budget-finagle", "sre-throttle", "circuit-breaker", "backoff-default"};
  std::uint64_t seed = 1;
};

struct overload_row {
  std::string policy;
  double t_s, offered_per_s, attempts_per_s, goodput_per_s;
};

struct overload_summary {
  std::string policy;
  double trigger_end_s;
  std::optional<double> recovered_at_s;  // when goodput was back at 95 % of offered load for 5 s
  double goodput_share;                   // successful ÷ offered over the whole run
};

// The offered load at time t (requests per second).
double offered_rate(const overload_options& o, double t_s);
double trigger_end_s(const overload_options& o);

struct overload_result {
  std::vector<overload_row> rows;
  std::vector<overload_summary> summaries;
};
overload_result run_overload(const overload_options& o);

// --- fleet ----------------------------------------------------------------------
// N client processes against one server that is down (503 with Retry-After)
// from outage_start to outage_end and then serves `capacity` × the offered
// load (a token bucket: what exceeds it fails with 503). Every process runs
// backoff::policy{} (4 attempts, full jitter over 1 s × 2^n). Two fleets:
//  - local: each process has its own retry_budget::recommended() and obeys a
//    Retry-After for the request that received it, as processes that share
//    nothing do;
//  - shared: one budget for the fleet (backoff::redis::shared_budget's rule:
//    10 % of the fleet's requests plus 1 retry/s) and one release time (a
//    Retry-After holds every process, first attempts included), as with
//    backoff::redis; requests it held leave spread over release_spread of
//    their wait after it (host_backoff::options::release_spread; 0 here by
//    default, `backoff get --share` uses 0.2). The Redis round trips are not
//    modelled (they take milliseconds; the waits here take seconds).
// Work is linear in processes × rate × length: one event per attempt.

struct fleet_options {
  std::uint32_t processes = 1000;
  double rate_per_process = 1;  // requests per second
  duration length = std::chrono::seconds{60};
  duration outage_start = std::chrono::seconds{10};
  duration outage_end = std::chrono::seconds{30};
  duration retry_after = std::chrono::seconds{5};  // sent during the outage (0: none)
  double capacity = 1.2;                            // server capacity ÷ offered load
  double release_spread = 0;                        // shared: [0, 1], see above
  // probe: the release without a herd. A Retry-After closes the fleet; when
  // its release time passes (at most probe_interval later, so that the fleet
  // sees the server back within it), one request goes alone; its failure
  // closes the fleet again, its success lets the held requests and all new
  // ones go in order at a paced rate: slow_start_from × the offered load,
  // doubling every 100 ms until more than 5 % fail, then -30 % / +5 % of the
  // offered load per 100 ms (AIMD), never above max_factor; pacing ends when
  // the backlog is gone and the pace covers the offered load.
  std::chrono::milliseconds probe_interval{1000};
  double slow_start_from = 0.25;
  double max_factor = 1.5;
  // gates: the probe as the Redis gates and `backoff get --share` build it —
  // the real host_backoff with options::probe, its state shared by the fleet
  // (Redis, without its round trips): one probe when the release time passes
  // (the Retry-After is obeyed, so probes come every retry_after), the others
  // recheck every 100 ms, and after the probe's success they leave by the
  // ramp (a quarter of the rate they came at, doubling every 100 ms, up to
  // 1.5 times it). No AIMD: a failure with a Retry-After closes the fleet again.
  std::vector<std::string> modes{"local", "shared"};  // and "probe", "gates"
  std::uint64_t seed = 1;
};

struct fleet_row {
  std::string mode;
  double t_s, offered_per_s, attempts_per_s, goodput_per_s;
};

struct fleet_summary {
  std::string mode;
  double amplification_outage;           // attempts ÷ requests arriving during the outage
  double amplification;                   // attempts ÷ requests, whole run
  std::optional<double> recovered_at_s;   // ≥ 95 % of attempts succeed for 5 s after the outage
  double goodput_share;                   // successes ÷ requests
  double seconds;                         // wall time of the simulation
  double peak_after_outage;               // the highest second of attempts after the outage ÷ the offered load
};

struct fleet_result {
  std::vector<fleet_row> rows;  // one per second and mode
  std::vector<fleet_summary> summaries;
};
fleet_result run_fleet(const fleet_options& o);

// hedging: "The Tail at Scale" (Dean and Barroso 2013). Requests one after
// another, each copy's latency log-normal around `median` (sigma of its log),
// and with probability `hiccup` a pause drawn log-uniformly from
// hiccup_min..hiccup_max on top — what strikes one server and not its twin,
// so two copies are independent. Each row sends them plain ("none") or
// hedged by the library's own hedge_policy and latency_sketch at a quantile:
// the next copy after the sketch's quantile of recent request latencies (the
// fixed initial_delay until it holds 20), the first answer wins. The server
// is not slowed by the extra copies (a lightly loaded service, as in the
// paper's measurements).
struct hedging_options {
  std::uint64_t requests = 100000;
  duration median = std::chrono::milliseconds{10};
  double sigma = 0.3;
  double hiccup = 0.02;
  duration hiccup_min = std::chrono::milliseconds{200};
  duration hiccup_max = std::chrono::seconds{2};
  std::uint32_t max_attempts = 2;
  duration initial_delay = std::chrono::milliseconds{100};
  std::vector<double> quantiles{0.5, 0.9, 0.95, 0.99};  // one row each, after "none"
  std::uint64_t seed = 1;
};

struct hedging_row {
  std::string hedge;         // "none", "p95", …
  double mean_delay_ms = 0;  // the hedge delay, averaged over the requests
  double p50_ms = 0, p99_ms = 0, p999_ms = 0;  // request latency
  double extra_load = 0;     // copies beyond one per request ÷ requests
};
std::vector<hedging_row> run_hedging(const hedging_options& o);

}  // namespace backoff::sim
