// SPDX-License-Identifier: BSL-1.0
#include "sim.hpp"

#include <algorithm>
#include <deque>
#include <functional>
#include <array>
#include <bit>
#include <atomic>
#include <thread>
#include <tuple>
#include <utility>
#include <limits>
#include <cmath>
#include <numeric>
#include <queue>
#include <stdexcept>

#include "backoff/breaker.hpp"
#include "backoff/hedge.hpp"
#include "backoff/host_backoff.hpp"
#include "backoff/step.hpp"
#include "backoff/budget.hpp"
#include "backoff/presets.hpp"
#include "backoff/random.hpp"
#include "backoff/throttle.hpp"

namespace backoff::sim {

namespace {

using ns = std::chrono::nanoseconds;

time_point at(std::int64_t t) { return time_point{std::chrono::duration_cast<time_point::duration>(ns{t})}; }

// Two independent standard normals by the polar method: our own, so that a
// seed gives the same numbers with every standard library.
std::pair<double, double> normal_pair(fast_rng& rng) {
  double u, v, s;
  do {
    u = 2.0 * uniform_unit(rng) - 1.0;
    v = 2.0 * uniform_unit(rng) - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double f = std::sqrt(-2.0 * std::log(s) / s);
  return {u * f, v * f};
}

// |Normal(mean, sd)|: each normal_pair yields two; the second is kept for the
// next call.
class net_model {
 public:
  net_model(double mean, double sd) : mean_(mean), sd_(sd) {}
  std::int64_t delay(fast_rng& rng) {
    double z;
    if (has_spare_) {
      z = spare_;
      has_spare_ = false;
    } else {
      std::tie(z, spare_) = normal_pair(rng);
      has_spare_ = true;
    }
    return static_cast<std::int64_t>(std::abs(mean_ + sd_ * z));
  }

 private:
  double mean_, sd_, spare_ = 0;
  bool has_spare_ = false;
};

// Exponential inter-arrival time in ns for a rate per second.
std::int64_t exp_gap(fast_rng& rng, double rate_per_s) {
  return static_cast<std::int64_t>(-std::log1p(-uniform_unit(rng)) / rate_per_s * 1e9);
}

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = a * 0x9e3779b97f4a7c15ULL + b + 0x632be59bd9b4e019ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct event {
  std::int64_t t;
  std::uint64_t seq;
  std::uint32_t id;
  std::uint8_t kind;
  std::uint32_t aux = 0;  // overload: the attempt an event belongs to
  bool operator>(const event& o) const { return t != o.t ? t > o.t : seq > o.seq; }
};


// A radix heap (Ahuja, Mehlhorn, Orlin and Tarjan, 1990): the priority queue
// of a simulation whose event times never go below the last one taken out.
// A push appends to one of 65 vectors (by the highest bit in which its time
// differs from the last time taken); a pop is amortised O(bits of the time
// span). With millions of waiting events this keeps the work per event flat,
// where a binary heap's sifting through hundreds of megabytes did not. Events
// leave in the binary heap's order: by time, then by seq (push order).
class event_queue {
 public:
  void push(const event& e) {
    const std::size_t b = bucket_of(e.t);
    buckets_[b].push_back(e);
    ++size_;
    // Keep the cached minimum right: appending never moves the events it points at.
    if (has_min_ && b != 0 && earlier(e, buckets_[min_bucket_][min_index_])) {
      min_bucket_ = b;
      min_index_ = buckets_[b].size() - 1;
    }
  }
  bool empty() const noexcept { return size_ == 0; }
  // The earliest event. Looking does not move the radix base (`last_`): only a
  // pop does, so an event pushed after a look may still be earlier than it.
  const event& top() {
    if (front_ < buckets_[0].size()) return buckets_[0][front_];
    if (!has_min_) {
      std::size_t i = 1;
      while (buckets_[i].empty()) ++i;
      min_bucket_ = i;
      min_index_ = 0;
      for (std::size_t k = 1; k < buckets_[i].size(); ++k)
        if (earlier(buckets_[i][k], buckets_[i][min_index_])) min_index_ = k;
      has_min_ = true;
    }
    return buckets_[min_bucket_][min_index_];
  }
  void pop() {
    if (front_ >= buckets_[0].size()) refill();
    ++front_;
    --size_;
  }

 private:
  static bool earlier(const event& a, const event& b) noexcept { return a.t != b.t ? a.t < b.t : a.seq < b.seq; }
  std::size_t bucket_of(std::int64_t t) const noexcept {
    return static_cast<std::size_t>(std::bit_width(static_cast<std::uint64_t>(t) ^ last_));
  }
  // Bucket 0 was used up: the earliest time becomes the base, and the bucket
  // holding it is spread below it; bucket 0 then holds that time's events in
  // push order.
  void refill() {
    (void)top();
    buckets_[0].clear();
    front_ = 0;
    has_min_ = false;
    last_ = static_cast<std::uint64_t>(buckets_[min_bucket_][min_index_].t);
    std::vector<event> moving;
    moving.swap(buckets_[min_bucket_]);
    for (const event& e : moving) buckets_[bucket_of(e.t)].push_back(e);
    std::sort(buckets_[0].begin(), buckets_[0].end(), [](const event& a, const event& b) { return a.seq < b.seq; });
  }

  std::array<std::vector<event>, 65> buckets_;
  std::uint64_t last_ = 0;  // the time of the last pop's refill: no event is earlier
  std::size_t size_ = 0, front_ = 0;
  bool has_min_ = false;
  std::size_t min_bucket_ = 0, min_index_ = 0;
};

// A slot for a new request: one that finished (`free_list`), or a new one.
template <class Request>
std::uint32_t take_slot(std::vector<Request>& pool, std::vector<std::uint32_t>& free_list, Request blank) {
  if (!free_list.empty()) {
    const std::uint32_t id = free_list.back();
    free_list.pop_back();
    return id;
  }
  pool.push_back(std::move(blank));
  return static_cast<std::uint32_t>(pool.size() - 1);
}

policy with_attempts(policy p, std::uint32_t attempts) {
  p.stop = stop::after_attempts(attempts);
  return p;
}

}  // namespace

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

policy default_policy() { return policy{}; }

std::shared_ptr<gate> default_gate() {
  return std::make_shared<retry_budget>(retry_budget::recommended());
}

strategy named_strategy(const std::string& name, duration base, duration cap) {
  const policy retry3 = with_attempts(policy{}, 4);
  if (name == "none") return {name, {.schedule = constant{.delay = ns{0}}, .jitter = jitter::none(), .stop = {}}};
  if (name == "exponential" || name == "full" || name == "equal") {
    // Brooker's expo(n) = min(cap, base × 2^n) with n = 1 for the first retry.
    const exponential e{.initial = 2 * base, .multiplier = 2.0, .max_delay = cap};
    const jitter j = name == "full" ? jitter::full() : name == "equal" ? jitter::equal() : jitter::none();
    return {name, {.schedule = e, .jitter = j, .stop = {}}};
  }
  if (name == "decorrelated")
    return {name, {.schedule = decorrelated{.base = base, .max_delay = cap}, .jitter = jitter::none(), .stop = {}}};
  if (name == "google-cloud") return {name, presets::google_cloud()};
  if (name == "aws-standard") return {name, presets::aws_standard()};
  if (name == "grpc") return {name, presets::grpc_connection()};
  if (name == "curl") return {name, presets::curl_retry()};
  if (name == "no-retries") return {name, with_attempts(policy{}, 1)};
  if (name == "3-retries") return {name, retry3};
  if (name == "budget-aws")
    return {name, retry3, [] { return std::make_shared<retry_budget>(retry_budget::aws_standard()); }};
  if (name == "budget-grpc")
    return {name, retry3, [] { return std::make_shared<retry_budget>(retry_budget::grpc({.max_tokens = 10, .token_ratio = 0.1})); }};
  if (name == "budget-finagle")
    return {name, retry3, [] { return std::make_shared<retry_budget>(retry_budget::finagle()); }};
  if (name == "sre-throttle")
    return {name, retry3, [] { return std::make_shared<adaptive_throttle>(); }, true};
  if (name == "circuit-breaker")
    return {name, retry3, [] { return std::make_shared<circuit_breaker>(); }, true};
  if (name == "backoff-default") return {name, default_policy(), default_gate};
  throw std::invalid_argument("unknown strategy '" + name +
                              "' (choose none, exponential, full, equal, decorrelated, google-cloud, aws-standard, grpc, "
                              "curl, no-retries, 3-retries, budget-aws, budget-grpc, budget-finagle, sre-throttle, "
                              "circuit-breaker or backoff-default)");
}

// ---------------------------------------------------------------------------------
// contention: read → write until a write succeeds; a failed write backs off.

// contention's events, 16 bytes: time, then (sequence, client, kind) packed so
// that equal times pop in the order they were pushed.
struct small_event {
  std::int64_t t;
  std::uint64_t key;  // seq << 24 | client << 2 | kind
  bool operator>(const small_event& o) const { return t != o.t ? t > o.t : key > o.key; }
};

contention_run contention_once(int clients, const strategy& s, const contention_options& o, std::uint64_t seed) {
  if (clients < 1 || clients > (1 << 22)) throw std::invalid_argument("contention: clients must be in [1, 4194304]");
  enum : std::uint8_t { read_arrive, write_arrive };
  fast_rng rng{seed};
  net_model net(static_cast<double>(o.net_mean.count()), static_cast<double>(o.net_sd.count()));
  struct client {
    schedule_state st;
    std::uint64_t seen = 0;
  };
  std::vector<client> c(static_cast<std::size_t>(clients));
  std::vector<small_event> heap;
  heap.reserve(c.size() + 1);
  const auto later = std::greater<small_event>{};
  std::uint64_t seq = 0, version = 0;
  auto push = [&](std::int64_t t, std::uint32_t id, std::uint8_t kind) {
    heap.push_back({t, (seq++ << 24) | (static_cast<std::uint64_t>(id) << 2) | kind});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (std::uint32_t i = 0; i < c.size(); ++i) push(net.delay(rng), i, read_arrive);
  contention_run out;
  std::int64_t now = 0, last = 0;
  // Only arrivals at the server are events: the client's part of each exchange
  // (receive the reply, send the next request, or back off) involves nobody
  // else, so its two network hops are drawn together. The model is unchanged
  // (Brooker's has one event per message); there are half as many events.
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const small_event e = heap.back();
    heap.pop_back();
    now = e.t;
    const auto id = static_cast<std::uint32_t>((e.key >> 2) & 0x3fffff);
    client& cl = c[id];
    if ((e.key & 3) == read_arrive) {
      cl.seen = version;
      const std::int64_t reply = net.delay(rng);
      push(now + reply + net.delay(rng), id, write_arrive);
    } else {
      ++out.writes;
      const std::int64_t reply_at = now + net.delay(rng);
      if (cl.seen == version) {
        ++version;
        last = std::max(last, reply_at);  // the client learns it won: done
      } else {
        push(reply_at + net.delay(rng) + s.policy.next_delay(cl.st, rng).count(), id, read_arrive);
      }
    }
  }
  now = std::max(now, last);
  out.completion = ns{now};
  return out;
}

std::vector<contention_row> run_contention(const contention_options& o) {
  if (o.runs < 1) throw std::invalid_argument("--runs: must be >= 1 (got " + std::to_string(o.runs) + ")");
  std::vector<strategy> strategies;
  for (const auto& name : o.strategies) {
    strategies.push_back(named_strategy(name, o.base, o.cap));
    strategies.back().policy.validate();
  }
  for (const int n : o.clients)
    if (n < 1) throw std::invalid_argument("--clients: each count must be >= 1 (got " + std::to_string(n) + ")");
  // Every (strategy, clients, run) is independent and seeded by its position,
  // so the runs are spread over the cores and the result does not depend on
  // how many there are.
  const std::size_t per_point = static_cast<std::size_t>(o.runs);
  const std::size_t points = strategies.size() * o.clients.size();
  std::vector<contention_run> runs(points * per_point);
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t k; (k = next.fetch_add(1)) < runs.size();) {
      const std::size_t point = k / per_point, r = k % per_point;
      const int n = o.clients[point % o.clients.size()];
      runs[k] = contention_once(n, strategies[point / o.clients.size()], o,
                                mix(mix(o.seed, static_cast<std::uint64_t>(n)), static_cast<std::uint64_t>(r)));
    }
  };
  const unsigned threads = std::max(1u, std::min(std::thread::hardware_concurrency(), 16u));
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();

  std::vector<contention_row> rows;
  for (std::size_t point = 0; point < points; ++point) {
    std::vector<double> completions;
    double writes = 0;
    for (std::size_t r = 0; r < per_point; ++r) {
      const auto& run = runs[point * per_point + r];
      writes += static_cast<double>(run.writes);
      completions.push_back(std::chrono::duration<double, std::milli>(run.completion).count());
    }
    const double mean_c = std::accumulate(completions.begin(), completions.end(), 0.0) / o.runs;
    rows.push_back({o.clients[point % o.clients.size()], strategies[point / o.clients.size()].name, writes / o.runs,
                    mean_c, percentile(completions, 50), percentile(completions, 99)});
  }
  return rows;
}

// ---------------------------------------------------------------------------------
// failures: open-loop requests; each attempt fails independently with probability p.

failures_row failures_once(double p, const strategy& s, const failures_options& o, std::uint64_t seed) {
  fast_rng rng{seed};
  std::vector<std::shared_ptr<gate>> gates;
  if (s.make_gate) {
    const std::uint32_t n = o.gate_per_client ? o.clients : 1;
    gates.reserve(n);
    for (std::uint32_t i = 0; i < n; ++i) gates.push_back(s.make_gate());
  }
  struct request {
    std::uint32_t client;
    retry_step step;  // the same decision as the library's retry loop
  };
  std::vector<request> pool;
  std::vector<std::uint32_t> free_list;
  event_queue retries;
  std::uint64_t seq = 0;
  failures_row row{p, s.name, 0, 0, 0, 0, 0};
  const double total_rate = o.rate_per_client * o.clients;
  const std::int64_t end = o.length.count();
  std::int64_t next_arrival = exp_gap(rng, total_rate);

  // One attempt at `now`; returns when the request is finished or rescheduled.
  auto attempt = [&](std::uint32_t id, std::int64_t now) {
    request& rq = pool[id];
    if (rq.step.attempts() == 0 && !rq.step.start(at(now)).allowed) {
      free_list.push_back(id);
      return;
    }
    ++row.attempts;
    const bool failed = uniform_unit(rng) < p;
    const auto d = rq.step.after({failed ? attempt_outcome::retryable : attempt_outcome::success, at(now)}, rng);
    if (!failed) ++row.successes;
    if (d.stop) {
      free_list.push_back(id);
      return;
    }
    retries.push({now + d.delay.count(), seq++, id, 0});
  };

  while (true) {
    const bool arrival = next_arrival < end && (retries.empty() || next_arrival <= retries.top().t);
    if (arrival) {
      const std::int64_t now = next_arrival;
      next_arrival += exp_gap(rng, total_rate);
      const std::uint32_t id = take_slot(pool, free_list, request{0, retry_step(s.policy)});
      const auto client = static_cast<std::uint32_t>(uniform_u64(rng, o.clients - 1));
      gate* g = gates.empty() ? nullptr : gates[gates.size() == 1 ? 0 : client].get();
      pool[id] = {client, retry_step(s.policy, {g, s.gate_first_attempt})};
      ++row.requests;
      attempt(id, now);
    } else if (!retries.empty()) {
      const event e = retries.top();
      retries.pop();
      attempt(e.id, e.t);
    } else {
      break;
    }
  }
  row.amplification = row.requests ? static_cast<double>(row.attempts) / static_cast<double>(row.requests) : 0;
  row.success_rate = row.requests ? static_cast<double>(row.successes) / static_cast<double>(row.requests) : 0;
  return row;
}

std::vector<failures_row> run_failures(const failures_options& o) {
  if (o.clients == 0) throw std::invalid_argument("--clients: must be >= 1 (got 0)");
  if (!(o.rate_per_client > 0)) throw std::invalid_argument("--rate: must be > 0");
  std::vector<failures_row> rows;
  for (const double p : o.failure_rates) {
    if (!(p >= 0 && p <= 1)) throw std::invalid_argument("--failure-rates: each must be in [0, 1] (got " + std::to_string(p) + ")");
    for (std::size_t i = 0; i < o.policies.size(); ++i) {
      const strategy s = named_strategy(o.policies[i]);
      rows.push_back(failures_once(p, s, o, mix(o.seed, static_cast<std::uint64_t>(std::llround(p * 1e6)))));
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------
// overload: latency = base + per_request × concurrency; clients time out and retry.

double offered_rate(const overload_options& o, double t) {
  if (o.shape == load_shape::spike) return (t >= 20 && t < 25) ? o.peak_rate : o.base_rate;
  // ramp: base until 15 s, up to the peak at 25 s, back down by 35 s
  if (t < 15 || t >= 35) return o.base_rate;
  if (t < 25) return o.base_rate + (o.peak_rate - o.base_rate) * (t - 15) / 10;
  return o.peak_rate - (o.peak_rate - o.base_rate) * (t - 25) / 10;
}

double trigger_end_s(const overload_options& o) { return o.shape == load_shape::spike ? 25.0 : 35.0; }

overload_result run_overload(const overload_options& o) {
  if (o.attempts == 0) throw std::invalid_argument("--attempts: must be >= 1 (got 0)");
  overload_result result;
  const std::int64_t window = o.window.count();
  const auto windows = static_cast<std::size_t>(o.length.count() / window);
  for (std::size_t pi = 0; pi < o.policies.size(); ++pi) {
    strategy s = named_strategy(o.policies[pi]);
    if (s.name != "no-retries" && s.name != "backoff-default") s.policy = with_attempts(s.policy, o.attempts);
    fast_rng rng{mix(o.seed, pi)};
    std::vector<std::shared_ptr<gate>> gates;
    for (std::uint32_t i = 0; s.make_gate && i < o.clients; ++i) gates.push_back(s.make_gate());

    enum : std::uint8_t { completion, timeout, retry_start };
    struct request {
      std::uint32_t client;
      retry_step step;  // the same decision as the library's retry loop
      std::uint32_t attempts = 0;
      std::int64_t attempt_start = 0;
      bool in_flight = false;  // the current attempt has neither succeeded nor timed out
    };
    std::vector<request> reqs;
    event_queue q;
    std::uint64_t seq = 0;
    std::int64_t concurrency = 0;
    std::vector<double> offered(windows), attempts(windows), goodput(windows);
    auto bin = [&](std::int64_t t) { return std::min(windows - 1, static_cast<std::size_t>(t / window)); };

    auto start_attempt = [&](std::uint32_t id, std::int64_t now) {
      request& r = reqs[id];
      if (r.attempts == 0 && !r.step.start(at(now)).allowed) return;
      ++r.attempts;
      ++concurrency;
      attempts[bin(now)] += 1;
      const std::int64_t latency = o.base_latency.count() + o.latency_per_request.count() * concurrency;
      r.attempt_start = now;
      r.in_flight = true;
      // Events carry the attempt number, so a late completion of an attempt
      // the client already gave up on is recognised as wasted work.
      q.push({now + latency, seq++, id, completion, r.attempts});
      q.push({now + o.timeout.count(), seq++, id, timeout, r.attempts});
    };

    const double max_rate = std::max(o.base_rate, o.peak_rate);
    std::int64_t next_arrival = exp_gap(rng, max_rate);
    const std::int64_t end = o.length.count();
    while (true) {
      const bool arrival = next_arrival < end && (q.empty() || next_arrival <= q.top().t);
      if (arrival) {
        const std::int64_t now = next_arrival;
        next_arrival += exp_gap(rng, max_rate);
        // Thinning: keep the arrival with probability rate(t) / max_rate.
        if (uniform_unit(rng) * max_rate >= offered_rate(o, static_cast<double>(now) / 1e9)) continue;
        offered[bin(now)] += 1;
        const auto client = static_cast<std::uint32_t>(uniform_u64(rng, o.clients - 1));
        reqs.push_back({client, retry_step(s.policy, {gates.empty() ? nullptr : gates[client].get(), s.gate_first_attempt})});
        start_attempt(static_cast<std::uint32_t>(reqs.size() - 1), now);
        continue;
      }
      if (q.empty()) break;
      const event e = q.top();
      q.pop();
      if (e.t >= end && e.kind != completion) continue;
      request& r = reqs[e.id];
      if (e.kind == completion) {
        --concurrency;
        // Only the attempt still awaited can succeed; later ones are wasted work.
        if (r.in_flight && e.aux == r.attempts) {
          r.in_flight = false;
          if (e.t < end) goodput[bin(e.t)] += 1;
          r.step.after({attempt_outcome::success, at(e.t)}, rng);  // tells the gate
        }
      } else if (e.kind == timeout) {
        if (!r.in_flight || e.aux != r.attempts) continue;
        r.in_flight = false;
        const auto d = r.step.after({attempt_outcome::retryable, at(e.t), std::nullopt, true, false}, rng);
        if (d.stop) continue;
        q.push({e.t + d.delay.count(), seq++, e.id, retry_start});
      } else {
        start_attempt(e.id, e.t);
      }
    }

    const double w = static_cast<double>(window) / 1e9;
    double total_offered = 0, total_good = 0;
    for (std::size_t i = 0; i < windows; ++i) {
      const double t = static_cast<double>(i) * w;
      result.rows.push_back({s.name, t, offered[i] / w, attempts[i] / w, goodput[i] / w});
      total_offered += offered[i];
      total_good += goodput[i];
    }
    overload_summary sum{s.name, trigger_end_s(o), std::nullopt, total_offered ? total_good / total_offered : 0};
    const std::size_t need = static_cast<std::size_t>(std::ceil(5.0 / w));
    std::size_t streak = 0;
    for (std::size_t i = 0; i < windows; ++i) {
      const double t = static_cast<double>(i) * w;
      if (t < sum.trigger_end_s) continue;
      const bool ok = goodput[i] / w >= 0.95 * offered_rate(o, t + w / 2);
      streak = ok ? streak + 1 : 0;
      if (streak == need) {
        sum.recovered_at_s = t - static_cast<double>(need - 1) * w;
        break;
      }
    }
    result.summaries.push_back(sum);
  }
  return result;
}

// ---------------------------------------------------------------------------------
// fleet: N processes, an outage with Retry-After, and the recovery.

fleet_result run_fleet(const fleet_options& o) {
  if (o.processes == 0) throw std::invalid_argument("--processes: must be >= 1 (got 0)");
  if (!(o.rate_per_process > 0)) throw std::invalid_argument("--rate: must be > 0");
  if (!(o.capacity > 0)) throw std::invalid_argument("--capacity: must be > 0");
  if (!(o.release_spread >= 0 && o.release_spread <= 1))
    throw std::invalid_argument("--release-spread: must be in [0, 1]");
  if (o.outage_end < o.outage_start || o.outage_end > o.length)
    throw std::invalid_argument("the outage must end after it starts and before the run ends");
  if (o.probe_interval.count() <= 0) throw std::invalid_argument("probe_interval: must be > 0");
  if (!(o.max_factor > 0) || !(o.slow_start_from > 0) || o.slow_start_from > o.max_factor)
    throw std::invalid_argument("slow_start_from and max_factor: must be 0 < slow_start_from <= max_factor");
  fleet_result result;
  const std::int64_t end = o.length.count(), second = std::chrono::nanoseconds(std::chrono::seconds(1)).count();
  const std::int64_t down_from = o.outage_start.count(), down_to = o.outage_end.count();
  const auto windows = static_cast<std::size_t>((end + second - 1) / second);
  const double offered = o.rate_per_process * o.processes;
  const policy p = default_policy();

  for (std::size_t mi = 0; mi < o.modes.size(); ++mi) {
    const std::string& mode = o.modes[mi];
    if (mode != "local" && mode != "shared" && mode != "probe" && mode != "gates")
      throw std::invalid_argument("--modes: unknown mode '" + mode + "' (local, shared, probe, gates)");
    const bool probe = mode == "probe";
    const bool gates = mode == "gates";  // the probe as built: host_backoff::options::probe
    const bool shared = mode == "shared" || probe || gates;
    const auto wall0 = std::chrono::steady_clock::now();
    fast_rng rng{mix(o.seed, mi)};

    // Gates: one budget per process (local), or one for the fleet and one
    // release time (shared). Local budgets are built when a process first retries.
    std::vector<std::unique_ptr<retry_budget>> budgets(shared ? 0 : o.processes);
    retry_budget fleet_budget = retry_budget::finagle({.ttl = std::chrono::seconds{10}, .min_retries_per_sec = 1, .percent_can_retry = 0.1});
    host_backoff hosts({.schedule = constant{.delay = duration{0}},
                        .max_entries = 1,
                        .release_spread = gates ? 0 : o.release_spread,
                        .probe = {.enabled = gates}});
    auto host = hosts.for_key("server");
    gate_chain fleet_gates{&host, &fleet_budget};

    struct request {
      std::uint32_t process = 0;
      retry_step step;
      bool started = false;
      bool probe = false;     // probe: the one request that tests the server for the fleet
      bool admitted = false;  // probe: let through by the pacing
      bool recheck = false;   // gates: ask the gate again before the attempt
    };
    std::vector<request> pool;
    std::vector<std::uint32_t> free_list;
    event_queue q;
    std::uint64_t seq = 0;
    std::vector<double> arrived(windows), attempts(windows), good(windows);
    std::uint64_t requests = 0, total_attempts = 0, successes = 0, outage_requests = 0, outage_attempts = 0;
    // The server's token bucket (tokens are attempts), full at the start.
    const double rate = o.capacity * offered, burst = std::max(1.0, rate / 10);
    double tokens = burst;
    std::int64_t refilled = 0;

    auto gate_of = [&](std::uint32_t proc) -> gate* {
      if (shared) return &fleet_gates;
      auto& b = budgets[proc];
      if (!b) b = std::make_unique<retry_budget>(retry_budget::recommended());
      return b.get();
    };

    // probe: the release without a herd (see fleet_options). The fleet's
    // state, as the shared gates would keep it in Redis.
    enum class phase { direct, closed, probing, pacing };
    phase ph = phase::direct;
    std::int64_t release = 0;
    std::deque<std::uint32_t> held;  // requests waiting for the probe's answer or for their turn
    double factor = 0;               // pacing: admissions per second ÷ offered
    bool slow_start = true;
    double pace_tokens = 0;
    std::uint64_t tick_attempts = 0, tick_failures = 0;
    std::int64_t next_adjust = 0;
    constexpr std::uint32_t probe_timer = UINT32_MAX, pace_timer = UINT32_MAX - 1;
    const std::int64_t pace_tick = std::chrono::nanoseconds(std::chrono::milliseconds(10)).count();
    const std::int64_t adjust_every = std::chrono::nanoseconds(std::chrono::milliseconds(100)).count();
    const std::int64_t probe_every = std::min<std::int64_t>(
        std::chrono::nanoseconds(o.probe_interval).count(),
        o.retry_after.count() > 0 ? o.retry_after.count() : std::chrono::nanoseconds(o.probe_interval).count());
    std::function<void(std::uint32_t, std::int64_t)> attempt;
    // A Retry-After: the fleet closes until one probe, sent at most probe_every later, succeeds.
    auto close_fleet = [&](std::int64_t now) {
      if (ph == phase::closed) return;
      ph = phase::closed;
      release = now + probe_every;
      q.push({release, seq++, probe_timer, 0});
    };
    auto start_pacing = [&](std::int64_t now) {
      ph = phase::pacing;
      factor = o.slow_start_from;
      slow_start = true;
      pace_tokens = 0;
      tick_attempts = tick_failures = 0;
      next_adjust = now + adjust_every;
      q.push({now + pace_tick, seq++, pace_timer, 0});
    };
    // The fleet's turn for a request: true when it may go now; else it is held.
    auto admitted = [&](std::uint32_t id, std::int64_t now) {
      switch (ph) {
        case phase::direct: return true;
        case phase::closed:
          if (now >= release && held.empty()) {  // the release time passed: this one is the probe
            ph = phase::probing;
            pool[id].probe = true;
            return true;
          }
          held.push_back(id);
          return false;
        case phase::probing:
          held.push_back(id);
          return false;
        case phase::pacing:
          held.push_back(id);  // in order, at the paced rate
          return false;
      }
      return true;
    };
    auto timer = [&](std::uint32_t which, std::int64_t now) {
      if (which == probe_timer) {
        if (ph != phase::closed || now < release || held.empty()) return;  // the next request will probe
        const std::uint32_t id = held.front();
        held.pop_front();
        ph = phase::probing;
        pool[id].probe = true;
        attempt(id, now);
        return;
      }
      if (ph != phase::pacing) return;
      // Slow start: the admitted rate doubles every adjust period until a
      // failure rate above 5 %, then shrinks by 30 % and grows by 5 % of the
      // offered load per period (AIMD); never above max_factor.
      if (now >= next_adjust) {
        const bool congested = tick_attempts > 0 && static_cast<double>(tick_failures) > 0.05 * static_cast<double>(tick_attempts);
        if (congested) {
          factor = std::max(o.slow_start_from, factor * 0.7);
          slow_start = false;
        } else {
          factor = std::min(o.max_factor, slow_start ? factor * 2 : factor + 0.05);
        }
        tick_attempts = tick_failures = 0;
        next_adjust = now + adjust_every;
      }
      pace_tokens += factor * offered * static_cast<double>(pace_tick) / 1e9;
      while (pace_tokens >= 1 && !held.empty() && ph == phase::pacing) {
        pace_tokens -= 1;
        const std::uint32_t id = held.front();
        held.pop_front();
        pool[id].admitted = true;
        attempt(id, now);
      }
      if (ph != phase::pacing) return;
      if (held.empty() && factor >= 1) {
        ph = phase::direct;  // the backlog is gone and the pace covers the offered load
        return;
      }
      pace_tokens = std::min(pace_tokens, 1.0);
      q.push({now + pace_tick, seq++, pace_timer, 0});
    };

    attempt = [&](std::uint32_t id, std::int64_t now) {
      request& rq = pool[id];
      if (probe && !rq.probe && !rq.admitted && !admitted(id, now)) return;
      rq.admitted = false;
      if (rq.recheck) {  // gates: the wait the gate asked for ended
        rq.recheck = false;
        const auto d = rq.step.recheck(at(now));
        if (!d.allowed) {
          free_list.push_back(id);
          return;
        }
        const std::int64_t nb = d.not_before.time_since_epoch().count();
        if (d.recheck || nb > now) {
          rq.recheck = d.recheck;
          q.push({std::max(nb, now + 1), seq++, id, 0});
          return;
        }
      }
      if (!rq.started) {
        rq.started = true;
        const auto first = rq.step.start(at(now));
        if (!first.allowed) {
          if (rq.probe) {  // the probe never went: the next request probes
            rq.probe = false;
            ph = phase::closed;
            release = now;
          }
          free_list.push_back(id);
          return;
        }
        const std::int64_t nb = first.not_before.time_since_epoch().count();
        if (nb > now || first.recheck) {  // held back by the fleet's release time (or its probe)
          rq.recheck = first.recheck;
          q.push({std::max(nb, now + 1), seq++, id, 0});
          return;
        }
      }
      const auto w = static_cast<std::size_t>(std::min<std::int64_t>(now / second, static_cast<std::int64_t>(windows) - 1));
      ++total_attempts;
      attempts[w] += 1;
      if (now >= down_from && now < down_to) ++outage_attempts;
      bool ok = false;
      std::optional<duration> hint;
      if (now >= down_from && now < down_to) {
        if (o.retry_after.count() > 0) hint = o.retry_after;
      } else {
        tokens = std::min(burst, tokens + static_cast<double>(now - refilled) / 1e9 * rate);
        refilled = now;
        if (tokens >= 1) {
          tokens -= 1;
          ok = true;
        }
      }
      if (ok) {
        ++successes;
        good[w] += 1;
      }
      if (hint && shared && !probe) hosts.hold("server", at(now), *hint);
      if (probe) {
        ++tick_attempts;
        tick_failures += ok ? 0 : 1;
        if (hint) close_fleet(now);
        if (rq.probe) {
          rq.probe = false;
          if (ok) start_pacing(now);
          else if (ph == phase::probing) close_fleet(now);
        }
      }
      retry_step::report r{ok ? attempt_outcome::success : attempt_outcome::retryable, at(now)};
      if (!shared) r.hint = hint;  // shared: the hold already covers it
      const auto d = rq.step.after(r, rng);
      if (d.stop) {
        free_list.push_back(id);
        return;
      }
      std::int64_t next = now + d.delay.count();
      rq.recheck = d.recheck;
      if (shared && !probe && !gates) next = std::max(next, hosts.admit_time("server", at(now)).time_since_epoch().count());
      q.push({next, seq++, id, 0});
    };

    std::int64_t next_arrival = exp_gap(rng, offered);
    while (true) {
      const bool arrival = next_arrival < end && (q.empty() || next_arrival <= q.top().t);
      if (arrival) {
        const std::int64_t now = next_arrival;
        next_arrival += exp_gap(rng, offered);
        const auto proc = static_cast<std::uint32_t>(uniform_u64(rng, o.processes - 1));
        const std::uint32_t id = take_slot(pool, free_list, request{0, retry_step(p), false, false, false, false});
        pool[id] = {proc, retry_step(p, {gate_of(proc), shared}), false, false, false, false};
        ++requests;
        if (now >= down_from && now < down_to) ++outage_requests;
        arrived[static_cast<std::size_t>(now / second)] += 1;
        attempt(id, now);
      } else if (!q.empty()) {
        const event e = q.top();
        q.pop();
        if (e.t >= end) break;  // the run is over: what is still waiting is not counted
        if (e.id >= pace_timer) timer(e.id, e.t);
        else attempt(e.id, e.t);
      } else {
        break;
      }
    }

    fleet_summary sum{mode, 0, 0, std::nullopt, 0, 0, 0};
    for (std::size_t w = static_cast<std::size_t>(down_to / second); w < windows; ++w)
      sum.peak_after_outage = std::max(sum.peak_after_outage, attempts[w] / offered);
    sum.amplification_outage = outage_requests ? static_cast<double>(outage_attempts) / static_cast<double>(outage_requests) : 0;
    sum.amplification = requests ? static_cast<double>(total_attempts) / static_cast<double>(requests) : 0;
    sum.goodput_share = requests ? static_cast<double>(successes) / static_cast<double>(requests) : 0;
    // Recovered: for 5 s, at least 95 % of what reaches the server succeeds
    // (successes alone would count the backlog of retries as health).
    std::size_t streak = 0;
    for (std::size_t w = static_cast<std::size_t>(down_to / second); w < windows; ++w) {
      streak = attempts[w] > 0 && good[w] >= 0.95 * attempts[w] ? streak + 1 : 0;
      if (streak == 5) {
        sum.recovered_at_s = static_cast<double>(w - 4);
        break;
      }
    }
    for (std::size_t w = 0; w < windows; ++w)
      result.rows.push_back({mode, static_cast<double>(w), arrived[w], attempts[w], good[w]});
    sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    result.summaries.push_back(sum);
  }
  return result;
}

// --- hedging ------------------------------------------------------------------------------

namespace {

double ms_of(duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double copy_latency_ms(fast_rng& rng, const hedging_options& o) {
  double ms = ms_of(o.median) * std::exp(o.sigma * normal_pair(rng).first);
  if (uniform_unit(rng) < o.hiccup) {
    const double lo = ms_of(o.hiccup_min), hi = ms_of(o.hiccup_max);
    ms += lo * std::pow(hi / lo, uniform_unit(rng));
  }
  return ms;
}

std::string quantile_name(double q) {
  std::string s = std::to_string(q * 100);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return "p" + s;
}

}  // namespace

std::vector<hedging_row> run_hedging(const hedging_options& o) {
  if (o.requests == 0) throw std::invalid_argument("hedging: requests must be > 0");
  if (o.max_attempts < 1 || o.max_attempts > 10) throw std::invalid_argument("hedging: max_attempts must be in 1..10");
  std::vector<double> at{0};  // 0: no hedging
  for (const double q : o.quantiles) {
    if (!(q > 0 && q < 1)) throw std::invalid_argument("hedging: a quantile must be in (0, 1)");
    at.push_back(q);
  }
  std::vector<hedging_row> rows;
  for (const double q : at) {
    fast_rng rng{mix(o.seed, 7)};  // the same draws in every row
    latency_sketch sketch;
    const hedge_policy hp{.max_attempts = q > 0 ? o.max_attempts : 1u,
                          .delay = o.initial_delay,
                          .adaptive = &sketch,
                          .quantile = q > 0 ? q : 0.5,
                          .floor = std::chrono::milliseconds{1}};
    std::vector<double> seen;
    seen.reserve(static_cast<std::size_t>(o.requests));
    std::uint64_t copies = 0;
    double delays = 0;
    for (std::uint64_t r = 0; r < o.requests; ++r) {
      const double d = ms_of(hp.hedge_delay());
      double done = copy_latency_ms(rng, o);
      ++copies;
      for (std::uint32_t k = 1; k < hp.max_attempts && d * k < done; ++k) {
        ++copies;
        done = std::min(done, d * k + copy_latency_ms(rng, o));
      }
      if (hp.max_attempts > 1) delays += d;
      seen.push_back(done);
      // As async_hedge does: the request's latency from its first copy.
      sketch.add(std::chrono::duration_cast<duration>(std::chrono::duration<double, std::milli>(done)));
    }
    hedging_row row;
    row.hedge = q > 0 ? quantile_name(q) : "none";
    row.mean_delay_ms = delays / static_cast<double>(o.requests);
    row.p50_ms = percentile(seen, 50);
    row.p99_ms = percentile(seen, 99);
    row.p999_ms = percentile(seen, 99.9);
    row.extra_load = static_cast<double>(copies - o.requests) / static_cast<double>(o.requests);
    rows.push_back(row);
  }
  return rows;
}

}  // namespace backoff::sim
