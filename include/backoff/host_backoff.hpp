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
// `entry_ttl` with their release time passed are dropped, and at most
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
    for (std::size_t i = 0; i < shards; ++i) shard_[i].rng.seed(0x9e3779b97f4a7c15ULL * (i + 1));
  }

  // When a request to `key` asked at `now` may go: the release time, plus its
  // share of options::release_spread when it is held back.
  time_point admit_time(std::string_view key, time_point now) {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    sweep_locked(s, now, false);
    auto it = s.map.find(std::string(key));
    if (it == s.map.end()) return time_point{};
    const time_point release = it->second.release;
    if (release <= now || o_.release_spread <= 0) return release;
    const auto wait = std::chrono::duration_cast<duration>(release - now);
    const auto spread = std::chrono::duration_cast<duration>(wait * o_.release_spread);
    return detail::add(release, uniform_duration(s.rng, duration{0}, spread));
  }

  // When requests to `key` may go out again (time_point{} for an unknown key).
  time_point release_time(std::string_view key, time_point now) {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    sweep_locked(s, now, false);
    auto it = s.map.find(std::string(key));
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
    sweep_locked(s, now, !s.map.count(std::string(key)));
    entry& e = s.map[std::string(key)];
    if (e.failures < 1'000'000) ++e.failures;
    e.last_used = now;
    schedule_state st;
    duration d{0};
    for (std::uint32_t i = 0; i < std::min<std::uint32_t>(e.failures, 64); ++i) d = o_.schedule.next(st, s.rng);
    d = o_.jitter.apply(d, o_.schedule.cap(), s.rng);
    const time_point before = e.release;
    e.release = std::max(e.release, detail::add(now, d));
    if (hint) e.release = std::max(e.release, detail::add(now, std::clamp(*hint, duration{0}, o_.max_hint)));
    raised(key, before, e.release, now);
  }

  // A server hint (Retry-After) for the key: a floor under its release time,
  // without counting a failure.
  void hold(std::string_view key, time_point now, duration hint) {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    sweep_locked(s, now, !s.map.count(std::string(key)));
    entry& e = s.map[std::string(key)];
    e.last_used = now;
    const time_point before = e.release;
    e.release = std::max(e.release, detail::add(now, std::clamp(hint, duration{0}, o_.max_hint)));
    raised(key, before, e.release, now);
  }

  void on_success(std::string_view key, time_point now) {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(std::string(key));
    if (it == s.map.end()) return;
    if (it->second.failures > 0) --it->second.failures;
    it->second.last_used = now;
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
    gate_decision acquire(const gate_request& r) noexcept override {
      gate_decision d;
      d.not_before = owner_->admit_time(key_, r.now);
      return d;
    }
    void record(const gate_outcome& o) noexcept override {
      if (o.outcome == attempt_outcome::retryable) owner_->on_failure(key_, o.now);
      else if (o.outcome == attempt_outcome::success) owner_->on_success(key_, o.now);
    }

   private:
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
  };
  struct shard {
    std::mutex mutex;
    std::unordered_map<std::string, entry> map;
    std::uint32_t ops = 0;
    fast_rng rng;
  };

  // Fewer entries than four per shard fit in one shard, so that the bound holds exactly.
  bool single_shard() const noexcept { return o_.max_entries < 4 * shards; }
  shard& shard_for(std::string_view key) {
    return single_shard() ? shard_[0] : shard_[std::hash<std::string_view>{}(key) % shards];
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
      if (it->second.release <= now && now - it->second.last_used >= o_.entry_ttl) it = s.map.erase(it);
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
