// SPDX-License-Identifier: BSL-1.0
// backoff/host_backoff.hpp — backoff shared by everything that talks to one
// host, in the manner of Chromium's BackoffEntry: a release time per key.
//
//   static backoff::host_backoff hosts;                    // process-wide
//   auto gate = hosts.for_key("api.example.com");          // a gate bound to one host
//   backoff::retry(policy, call, {.gate = &gate, .gate_first_attempt = true});
//   hosts.on_failure("api.example.com", now, 30s);         // a Retry-After seen elsewhere
//
// Every failure for a key pushes its release time to now + delay(failures);
// a server hint (Retry-After) sets a floor, and nothing ever lowers a horizon
// already set. A success lowers the failure count by one rather than
// resetting it, so a flapping host stays backed off. Entries idle for
// `entry_ttl` with their release time passed start over (and are freed
// within 64 operations on their shard), and at most
// `max_entries` are kept (the least recently used go first): memory is bounded.
// Thread-safe (16 shards, each with its own mutex).
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backoff/detail/saturate.hpp"
#include "backoff/detail/validate.hpp"
#include "backoff/gate.hpp"
#include "backoff/jitter.hpp"
#include "backoff/schedule.hpp"

namespace backoff {

class host_backoff {
 public:
  struct options {
    backoff::schedule schedule = exponential{.initial = std::chrono::seconds{1}, .multiplier = 2.0,
                                             .max_delay = std::chrono::seconds{60}};
    backoff::jitter jitter = backoff::jitter::none();
    duration entry_ttl = std::chrono::minutes{10};
    std::size_t max_entries = 10'000;
    duration max_hint = std::chrono::hours{1};
    // Requests held back by a release time leave spread over this fraction of
    // their wait after it ([0, 1]; 0: all at the release time), so that the
    // requests of many processes held by one Retry-After do not come back in
    // one wave. Never earlier than the release time.
    double release_spread = 0;
    // Release by probe (the fleet's answer to a herd; docs/simulations.md §4).
    // When a server's hint (Retry-After) has held a key, its release lets one
    // request go alone; the others ask again every `recheck` (the gates answer
    // gate_decision::recheck) until that probe succeeds. Then they leave paced,
    // still asking every `recheck`: at first a quarter of the rate at which
    // requests came while the key was held (at least one a second), doubling
    // every `ramp_step` (slow start) up to 1.5 times that rate; once more than
    // 5 % of a step's outcomes fail, the pace drops by 30 % and then grows by
    // 5 % of the rate per step (AIMD, as TCP). Pacing ends when a whole step
    // kept no one waiting at the full rate. A probe that meets a new hint
    // closes the key again, with no wave; a probe with no outcome after
    // `probe_timeout` lets another one go.
    struct probe_options {
      bool enabled = false;
      duration recheck = std::chrono::milliseconds{100};
      duration probe_timeout = std::chrono::seconds{5};
      duration ramp_step = std::chrono::milliseconds{100};
      // Fleet-wide probes (backoff::redis): may this process send the key's
      // probe now? Called under the key's lock: it must not call back into
      // this host_backoff. Unset: yes.
      std::function<bool(std::string_view key, time_point now)> may_probe = {};
      // This process's probe succeeded: the key is open (under the key's lock).
      std::function<void(std::string_view key, time_point now, time_point release)> on_open = {};
    };
    probe_options probe = {};
    // Called when a key's release time is raised into the future (by a failure
    // or a hint), under the key's lock: it must not call back into this
    // host_backoff. backoff::redis uses it to share release times.
    std::function<void(std::string_view key, time_point release)> on_raise = {};
  };

  host_backoff() : host_backoff(options{}) {}
  explicit host_backoff(options o) : o_(std::move(o)) {
    o_.jitter.validate();
    if (!(o_.release_spread >= 0 && o_.release_spread <= 1))
      detail::invalid("backoff::host_backoff", "release_spread", "in [0, 1]", o_.release_spread);
    if (o_.entry_ttl.count() <= 0) detail::invalid("backoff::host_backoff", "entry_ttl", "> 0", o_.entry_ttl);
    if (o_.max_entries == 0) detail::invalid("backoff::host_backoff", "max_entries", ">= 1", o_.max_entries);
    if (o_.probe.recheck.count() <= 0) detail::invalid("backoff::host_backoff", "probe.recheck", "> 0", o_.probe.recheck);
    if (o_.probe.probe_timeout.count() <= 0)
      detail::invalid("backoff::host_backoff", "probe.probe_timeout", "> 0", o_.probe.probe_timeout);
    if (o_.probe.ramp_step.count() <= 0) detail::invalid("backoff::host_backoff", "probe.ramp_step", "> 0", o_.probe.ramp_step);
    for (std::size_t i = 0; i < shards; ++i) shard_[i].rng.seed(0x9e3779b97f4a7c15ULL * (i + 1));
  }

  // When a request to `key` asked at `now` may go: the release time, plus its
  // share of options::release_spread when it is held back.
  time_point admit_time(std::string_view key, time_point now) {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    sweep_locked(s, now, false);
    auto it = live_locked(s, key, now);
    if (it == s.map.end()) return time_point{};
    const time_point release = it->second.release;
    if (release <= now || o_.release_spread <= 0) return release;
    const auto wait = std::chrono::duration_cast<duration>(release - now);
    const auto spread = std::chrono::duration_cast<duration>(wait * o_.release_spread);
    return detail::add(release, uniform_duration(s.rng, duration{0}, spread));
  }

  // What the key's gate answers a request asked at `now` (`again`: it asks
  // again after a recheck): admit_time(), or with options::probe, the probe,
  // a recheck, or a place in the ramp.
  gate_decision admit(std::string_view key, time_point now, bool again) {
    if (!o_.probe.enabled) return {true, stop_reason::success, admit_time(key, now), false};
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    sweep_locked(s, now, false);
    auto it = live_locked(s, key, now);
    if (it == s.map.end()) return {};
    entry& e = it->second;
    e.last_used = now;
    if (e.closed) {
      if (!again) ++e.arrivals;
      if (e.release > now) return gate_decision::ask_again(e.release);
      const bool probe_free = e.probe_at == time_point{} || now - e.probe_at >= o_.probe.probe_timeout;
      if (probe_free && (!o_.probe.may_probe || o_.probe.may_probe(key, now))) {
        e.probe_at = now;
        return {};
      }
      // Spread the asking (half to one and a half recheck periods).
      const duration r = o_.probe.recheck;
      return gate_decision::ask_again(detail::add(now, r / 2 + uniform_duration(s.rng, duration{0}, r)));
    }
    if (e.release > now) return {true, stop_reason::success, e.release, false};
    if (!e.ramping) return {};
    pace(e, now);
    if (e.ramping && e.tokens < 1) {
      ++e.waited;
      const duration r = o_.probe.recheck;
      return gate_decision::ask_again(detail::add(now, r / 2 + uniform_duration(s.rng, duration{0}, r)));
    }
    if (e.ramping) e.tokens -= 1;
    return {};
  }

  // The key is open again (its probe, here or in another process, succeeded):
  // held requests leave by the ramp. Ignored when a hint newer than `release`
  // (the release the probe went after) holds the key.
  void open(std::string_view key, time_point now, time_point release) {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(std::string(key));
    if (it == s.map.end()) return;
    open_locked(s, it->second, now, release);
  }

  // True while the key waits for a probe's success.
  bool closed(std::string_view key) {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(std::string(key));
    return it != s.map.end() && it->second.closed;
  }

  // When requests to `key` may go out again (time_point{} for an unknown key).
  time_point release_time(std::string_view key, time_point now) {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    sweep_locked(s, now, false);
    auto it = live_locked(s, key, now);
    return it == s.map.end() ? time_point{} : it->second.release;
  }

  std::uint32_t failures(std::string_view key) {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(std::string(key));
    return it == s.map.end() ? 0 : it->second.failures;
  }

  void on_failure(std::string_view key, time_point now, std::optional<duration> hint = std::nullopt) {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    sweep_locked(s, now, live_locked(s, key, now) == s.map.end());
    entry& e = s.map[std::string(key)];
    if (e.failures < 1'000'000) ++e.failures;
    e.last_used = now;
    schedule_state st;
    duration d{0};
    for (std::uint32_t i = 0; i < std::min<std::uint32_t>(e.failures, 64); ++i) d = o_.schedule.next(st, s.rng);
    d = o_.jitter.apply(d, o_.schedule.cap(), s.rng);
    const time_point before = e.release;
    e.release = std::max(e.release, detail::add(now, d));
    if (hint) {
      e.release = std::max(e.release, detail::add(now, std::clamp(*hint, duration{0}, o_.max_hint)));
      close_locked(e, now);
    }
    e.probe_at = time_point{};  // a probe that failed: the next one goes after the new release
    if (e.ramping) ++e.step_failures;
    raised(key, before, e.release, now);
  }

  // A server hint (Retry-After) for the key: a floor under its release time,
  // without counting a failure.
  void hold(std::string_view key, time_point now, duration hint) {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    sweep_locked(s, now, live_locked(s, key, now) == s.map.end());
    entry& e = s.map[std::string(key)];
    e.last_used = now;
    const time_point before = e.release;
    e.release = std::max(e.release, detail::add(now, std::clamp(hint, duration{0}, o_.max_hint)));
    close_locked(e, now);
    raised(key, before, e.release, now);
  }

  void on_success(std::string_view key, time_point now) {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    auto it = live_locked(s, key, now);
    if (it == s.map.end()) return;
    if (it->second.failures > 0) --it->second.failures;
    it->second.last_used = now;
    if (it->second.ramping) ++it->second.step_successes;
    if (it->second.closed && open_locked(s, it->second, now, it->second.release) && o_.probe.on_open)
      o_.probe.on_open(key, now, it->second.release);
  }

  std::size_t size() {
    std::size_t n = 0;
    for (auto& s : shard_) {
      std::lock_guard lock(s.mutex);
      n += s.map.size();
    }
    return n;
  }

  // A gate for one key: acquire() allows, not before the key's release time;
  // record() reports failures and successes for the key.
  class key_gate final : public gate {
   public:
    key_gate(host_backoff& owner, std::string key) : owner_(&owner), key_(std::move(key)) {}
    gate_decision acquire(const gate_request& r) noexcept override { return owner_->admit(key_, r.now, r.recheck); }
    void record(const gate_outcome& o) noexcept override {
      if (o.outcome == attempt_outcome::retryable) owner_->on_failure(key_, o.now);
      else if (o.outcome == attempt_outcome::success) owner_->on_success(key_, o.now);
    }

   private:
    friend class host_backoff;
    host_backoff* owner_;
    std::string key_;
  };
  key_gate for_key(std::string key) { return key_gate(*this, std::move(key)); }

 private:
  static constexpr std::size_t shards = 16;
  void raised(std::string_view key, time_point before, time_point after, time_point now) const {
    if (o_.on_raise && after > before && after > now) o_.on_raise(key, after);
  }
  struct entry {
    std::uint32_t failures = 0;
    time_point release{};
    time_point last_used{};
    // options::probe
    bool closed = false;           // a hint held the key; a probe's success opens it
    bool ramping = false;          // opened: held requests leave by the ramp
    time_point closed_since{};
    time_point probe_at{};         // the probe that went (none: {})
    std::uint32_t arrivals = 0;    // requests that came while closed
    double came = 0;               // requests per second while closed (≥ 1): the ramp's unit
    double rate = 0;               // the pace now (requests per second)
    double tokens = 0;             // requests that may go now
    bool slow_start = true;
    time_point paced{};            // tokens counted until here
    time_point step_end{};         // the current ramp step ends
    std::uint32_t step_failures = 0, step_successes = 0, waited = 0;
  };

  struct shard {
    std::mutex mutex;
    std::unordered_map<std::string, entry> map;
    std::uint32_t ops = 0;
    fast_rng rng;
  };

  void close_locked(entry& e, time_point now) {
    if (!o_.probe.enabled || e.closed) return;
    e.closed = true;
    e.ramping = false;
    e.closed_since = now;
    e.arrivals = 0;
    e.probe_at = time_point{};
  }

  // Opens a closed key: the requests that came while it was closed (at
  // `arrivals` per closed second) leave by the ramp. False when it stays closed.
  bool open_locked(shard& s, entry& e, time_point now, time_point release) {
    if (!e.closed || e.release > detail::add(release, std::chrono::milliseconds{5})) return false;
    e.closed = false;
    e.probe_at = time_point{};
    const double held = std::max(1.0, std::chrono::duration<double>(now - e.closed_since).count());
    e.came = std::max(1.0, e.arrivals / held);
    e.rate = e.came / 4;
    e.slow_start = true;
    e.ramping = e.arrivals > 0;
    e.paced = now;
    e.step_end = detail::add(now, o_.probe.ramp_step);
    e.step_failures = e.step_successes = e.waited = 0;
    // A random phase, so that many processes' ramps add up to a smooth one.
    e.tokens = static_cast<double>(s.rng() >> 11) * 0x1p-53;  // [0, 1)
    e.arrivals = 0;
    return true;
  }

  // The ramp's pace at `now`: tokens at `rate`, which each ramp step
  // doubles (slow start) or, after a step with more than 5 % failures, cuts
  // by 30 % and then raises by 5 % of `came` (AIMD); between a quarter and
  // 1.5 times `came`. A step at the full rate that kept no one waiting ends it.
  void pace(entry& e, time_point now) {
    while (e.ramping && now >= e.step_end) {
      if (now - e.step_end > 10 * o_.probe.ramp_step && e.waited == 0) {
        e.ramping = false;  // nobody asked for a whole second: the backlog is gone
        break;
      }
      add_tokens(e, e.step_end);
      const std::uint32_t outcomes = e.step_failures + e.step_successes;
      if (outcomes > 0 && e.step_failures * 20 > outcomes) {
        e.rate = std::max(e.came / 4, e.rate * 0.7);
        e.slow_start = false;
      } else {
        const bool full = e.rate >= e.came;
        if (full && e.waited == 0) e.ramping = false;
        e.rate = std::min(1.5 * e.came, e.slow_start ? e.rate * 2 : e.rate + 0.05 * e.came);
      }
      e.step_failures = e.step_successes = e.waited = 0;
      e.step_end = detail::add(e.step_end, o_.probe.ramp_step);
    }
    add_tokens(e, now);
  }
  void add_tokens(entry& e, time_point t) {
    if (t <= e.paced) return;
    e.tokens += e.rate * std::chrono::duration<double>(t - e.paced).count();
    // Not banked beyond one step's worth (at least one request).
    e.tokens = std::min(e.tokens, std::max(1.0, e.rate * std::chrono::duration<double>(o_.probe.ramp_step).count()));
    e.paced = t;
  }

  // Fewer entries than four per shard fit in one shard, so that the bound holds exactly.
  bool single_shard() const noexcept { return o_.max_entries < 4 * shards; }
  shard& shard_for(std::string_view key) {
    return single_shard() ? shard_[0] : shard_[std::hash<std::string_view>{}(key) % shards];
  }

  // Idle: unused for entry_ttl, with its release time passed. Such a key
  // starts over, whenever the sweep comes.
  bool idle(const entry& e, time_point now) const noexcept {
    return e.release <= now && now - e.last_used >= o_.entry_ttl;
  }
  // The key's entry, or end() when it has none or an idle one (dropped now).
  std::unordered_map<std::string, entry>::iterator live_locked(shard& s, std::string_view key, time_point now) {
    auto it = s.map.find(std::string(key));
    if (it == s.map.end() || !idle(it->second, now)) return it;
    s.map.erase(it);
    return s.map.end();
  }

  // Drops idle entries every 64 operations. When a new key comes to a shard
  // that holds its share of max_entries, the least recently used quarter (at
  // least one) goes at once, so that a full shard costs one scan per many
  // insertions rather than one per insertion. Keys already present are never
  // evicted to answer for themselves.
  void sweep_locked(shard& s, time_point now, bool inserting) {
    const std::size_t limit = single_shard() ? o_.max_entries : o_.max_entries / shards;
    const bool full = inserting && s.map.size() >= limit;
    if (++s.ops % 64 != 0 && !full) return;
    for (auto it = s.map.begin(); it != s.map.end();) {
      if (idle(it->second, now)) it = s.map.erase(it);
      else ++it;
    }
    if (!inserting || s.map.size() < limit) return;
    std::vector<std::pair<time_point, const std::string*>> by_age;
    by_age.reserve(s.map.size());
    for (const auto& [k, e] : s.map) by_age.emplace_back(e.last_used, &k);
    const std::size_t drop = std::max<std::size_t>(1, s.map.size() - limit * 3 / 4);
    std::nth_element(by_age.begin(), by_age.begin() + static_cast<std::ptrdiff_t>(drop - 1), by_age.end());
    std::vector<std::string> victims;
    victims.reserve(drop);
    for (std::size_t i = 0; i < drop; ++i) victims.push_back(*by_age[i].second);
    for (const auto& k : victims) s.map.erase(k);
  }

  options o_;
  std::array<shard, shards> shard_;
};

}  // namespace backoff
