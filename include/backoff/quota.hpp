// SPDX-License-Identifier: BSL-1.0
// backoff/quota.hpp — pacing from the quota a server announces: hold new
// requests once the window's quota is spent, until the window resets, before
// the server has to answer 429.
//
//   static backoff::quota_pacer quotas;                          // one per process
//   auto gate = quotas.for_key("api.example.com:443");           // one per request (its reservations)
//   backoff::retry(policy, call, {.gate = &gate, .gate_first_attempt = true});
//   gate.answered(now, backoff::quota_notice{.remaining = 0, .reset = 30s});  // what the response said
//
// Per key, the pacer keeps the current window: what the server said is left
// (`remaining`, the least any answer of the window announced), when the window
// ends (`reset`), the window's `limit` (announced, else the most ever announced
// as remaining, plus one), and the requests sent against this window (`sent`)
// and not yet answered (in flight). A request may go at once while
//     limit − sent > 0          when the server's count is ours: limit − remaining ≤ sent
//     remaining − in flight > 0  otherwise (someone else spends the quota too)
// so concurrent requests never overrun the last few tokens, yet a lone client
// uses its whole quota. Otherwise it reserves a place in the next window that
// has room (`limit` places each) and may go when that window begins:
//     not_before = reset + k × window      (k = 0 for the next window, 1 for the one after, …)
// so held requests leave one quota per window, not all at once.
//
// A quota shared by `parties` processes (set_parties(); backoff::redis counts
// the fleet's) gives each an equal share: limit ÷ parties (at least 1) is the
// most it sends in a window, and the places it holds in each later one.
//
// What the pacer reads from answers:
//   - a reset is an upper bound on the window's end (servers round delta
//     seconds up, as the IETF draft's "t" requires): within a window the
//     earliest reset announced wins, and so does the least remaining;
//   - an answer to a request sent in an earlier window says nothing of this one;
//   - a request answered without a notice still used one of the quota;
//   - requests still in flight when a window ends count against the next one;
//   - a refusal for quota (429) empties the window; its Retry-After, when the
//     answer announces no reset, is the reset.
// With no reset ever announced the pacer cannot know when the quota comes back
// and holds nothing: the server's 429 and its Retry-After decide. Before the
// first answer for a key nothing is known and nothing is held.
//
// Thread-safe (one mutex). Idle keys (nothing in flight or held, window over,
// unused for `entry_ttl`) are dropped, and at most `max_entries` are kept, the
// least recently used going first.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
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

namespace backoff {

// What one answer said about its key's quota (backoff::http::parse_quota
// reads it from the headers of every dialect).
struct quota_notice {
  std::optional<std::uint64_t> remaining{};  // left in the current window
  std::optional<std::uint64_t> limit{};      // per window
  std::optional<duration> reset{};           // until the current window ends
  std::optional<duration> window{};          // the policy's window length
  bool exhausted = false;                    // refused for quota (429): nothing left until the reset
};

class quota_pacer {
 public:
  // A snapshot of one key, for tests, logs and metrics.
  struct state {
    bool paced = false;  // a notice was learnt: requests may be held
    std::uint64_t remaining = 0;
    std::uint64_t sent = 0;  // against the current window
    std::uint64_t in_flight = 0;
    std::uint64_t held = 0;  // reservations in later windows
    std::uint64_t limit = 0;
    std::optional<time_point> reset{};
    duration window{0};
    std::uint64_t window_number = 0;
    std::uint32_t parties = 1;
  };

  struct options {
    duration entry_ttl = std::chrono::minutes{10};
    std::size_t max_entries = 10'000;
    duration max_reset = std::chrono::hours{1};  // longer announced resets are cut to this
    // The window length assumed when none was announced and the resets seen are
    // shorter (a reset of 0 s): held requests are spread one window apart.
    duration min_window = std::chrono::seconds{1};
    // Called with the key's state when an answer's notice was learnt, under
    // the pacer's lock: it must not call back into the pacer. backoff::redis
    // uses it to share the quota with the fleet.
    std::function<void(std::string_view key, const state&)> on_learn = {};
  };

  // Where a request's reservation was made: the window it counts against.
  struct reservation {
    std::uint64_t window = 0;
  };

  quota_pacer() : quota_pacer(options{}) {}
  explicit quota_pacer(options o) : o_(o) {
    if (o_.entry_ttl.count() <= 0) detail::invalid("backoff::quota_pacer", "entry_ttl", "> 0", o_.entry_ttl);
    if (o_.max_entries == 0) detail::invalid("backoff::quota_pacer", "max_entries", ">= 1", o_.max_entries);
    if (o_.max_reset.count() <= 0) detail::invalid("backoff::quota_pacer", "max_reset", "> 0", o_.max_reset);
    if (o_.min_window.count() <= 0) detail::invalid("backoff::quota_pacer", "min_window", "> 0", o_.min_window);
  }

  // Reserves a place for one request to `key` asked at `now`; it may go at
  // `not_before` (time_point{}: at once).
  reservation reserve(std::string_view key, time_point now, time_point& not_before) {
    std::lock_guard lock(mutex_);
    entry& e = find_or_add(key, now);
    roll(e, now);
    not_before = time_point{};
    if (!e.paced || !e.reset || room(e) > 0) {
      ++e.in_flight;
      ++e.sent;
      return {e.number};
    }
    const std::uint64_t per_window = std::max<std::uint64_t>(share(e), 1);
    std::size_t k = 0;
    while (k < e.held.size() && e.held[k] >= per_window) ++k;
    if (k == e.held.size()) e.held.push_back(0);
    ++e.held[k];
    not_before = detail::add(*e.reset, step_of(e) * static_cast<std::int64_t>(k));
    return {e.number + 1 + k};
  }

  // A reservation whose request will not be sent.
  void cancel(std::string_view key, reservation r, time_point now) {
    std::lock_guard lock(mutex_);
    auto it = map_.find(std::string(key));
    if (it == map_.end()) return;
    entry& e = it->second;
    roll(e, now);
    if (r.window > e.number) {
      const std::size_t k = static_cast<std::size_t>(r.window - e.number - 1);
      if (k < e.held.size() && e.held[k] > 0) --e.held[k];
      while (!e.held.empty() && e.held.back() == 0) e.held.pop_back();
    } else {
      if (e.in_flight > 0) --e.in_flight;
      if (r.window == e.number && e.sent > 0) --e.sent;
    }
  }

  // The request made under `r` (null: one that reserved nothing, as a
  // download's extra connections) was answered at `now`, with `notice` when
  // the answer announced its quota.
  void answered(std::string_view key, const reservation* r, time_point now, const quota_notice* notice) {
    answer(key, r, now, notice, true);
  }

  // What the fleet knows of the key's current window, for a process that joins
  // it (backoff::redis): taken like an answer's notice, and of what is left this
  // process takes only its share (remaining ÷ parties); the rest belongs to
  // those already spending it.
  void learn(std::string_view key, const quota_notice& notice, time_point now) { answer(key, nullptr, now, &notice, false); }

 private:
  void answer(std::string_view key, const reservation* r, time_point now, const quota_notice* notice, bool ours) {
    std::lock_guard lock(mutex_);
    entry& e = find_or_add(key, now);
    roll(e, now);
    if (r && e.in_flight > 0) --e.in_flight;
    // It used one of the quota; an answer that says what is left counts itself.
    if (ours && (!notice || (!notice->remaining && !notice->exhausted)) && e.remaining > 0) --e.remaining;
    if (!notice) return;
    if (notice->window && notice->window->count() > 0) e.window = std::min(*notice->window, o_.max_reset);
    if (notice->limit) e.limit = *notice->limit;
    // An answer to a request sent in an earlier window describes that window.
    if (r && r->window < e.number) return;
    std::optional<time_point> reset;
    if (notice->reset) {
      const duration d = std::clamp(*notice->reset, duration{0}, o_.max_reset);
      reset = detail::add(now, d);
      // No window announced: the longest reset seen, rounded up to whole
      // seconds (windows are; a reset seen a little after a window began is
      // shorter than the window, and later windows would begin too early).
      if (!notice->window && d > e.window) e.window = std::chrono::ceil<std::chrono::seconds>(d);
    }
    if (!notice->remaining && !notice->exhausted) return;
    const std::uint64_t left = notice->exhausted ? 0 : *notice->remaining;
    if (!notice->limit && left < UINT64_MAX && left + 1 > e.limit) e.limit = left + 1;
    if (!e.informed) {
      e.remaining = left;
      if (reset) e.reset = reset;
      e.informed = true;
    } else {
      e.remaining = std::min(e.remaining, left);
      if (reset) e.reset = e.reset ? std::min(*e.reset, *reset) : *reset;
    }
    e.paced = true;
    if (!ours && e.reset) {
      // The fleet's notice (learn()): this process's share of what is left,
      // taken under the same lock, so that no request slips in between.
      const std::uint64_t mine = std::min(share(e), e.remaining / std::max<std::uint32_t>(e.parties, 1));
      e.sent = std::max(e.sent, share(e) - mine);
    }
    if (ours && o_.on_learn) o_.on_learn(key, view(e));
  }

 public:
  state snapshot(std::string_view key, time_point now) {
    std::lock_guard lock(mutex_);
    auto it = map_.find(std::string(key));
    if (it == map_.end()) return {};
    entry& e = it->second;
    roll(e, now);
    return view(e);
  }

  // How many processes spend the key's quota (>= 1; 0 counts as 1): each takes
  // an equal share of every window. More parties shrink the share at once;
  // fewer grow it only from the window after the next one: those that left
  // may have spent their share of this window, or of the next one if their
  // clock rolled over before ours.
  void set_parties(std::string_view key, std::uint32_t n, time_point now) {
    std::lock_guard lock(mutex_);
    entry& e = find_or_add(key, now);
    roll(e, now);
    n = std::max<std::uint32_t>(n, 1);
    if (n >= e.parties) {
      e.parties = e.next_parties = n;
      e.fewer_from = 0;
    } else if (n != e.next_parties || e.fewer_from == 0) {
      e.next_parties = n;
      e.fewer_from = e.number + 2;
    }
  }

  std::size_t size() {
    std::lock_guard lock(mutex_);
    return map_.size();
  }

  // A gate for one request to one key: acquire() reserves (allowed, not
  // before the reserved window), release() gives the reservation back, and the
  // caller reports each answer with answered(). Not shared between requests:
  // it remembers its own reservations.
  class key_gate final : public gate {
   public:
    key_gate(quota_pacer& owner, std::string key) : owner_(&owner), key_(std::move(key)) {}
    gate_decision acquire(const gate_request& r) noexcept override {
      gate_decision d;
      pending_.push_back(owner_->reserve(key_, r.now, d.not_before));
      return d;
    }
    void release(const gate_request& r) noexcept override {
      if (pending_.empty()) return;
      owner_->cancel(key_, pending_.back(), r.now);
      pending_.pop_back();
    }
    void record(const gate_outcome&) noexcept override {}
    // The oldest request this gate admitted was answered.
    void answered(time_point now, const std::optional<quota_notice>& notice) {
      const quota_notice* n = notice ? &*notice : nullptr;
      if (pending_.empty()) return owner_->answered(key_, nullptr, now, n);
      const reservation r = pending_.front();
      pending_.erase(pending_.begin());
      owner_->answered(key_, &r, now, n);
    }
    const std::string& key() const noexcept { return key_; }

   private:
    quota_pacer* owner_;
    std::string key_;
    std::vector<reservation> pending_;
  };
  key_gate for_key(std::string key) { return key_gate(*this, std::move(key)); }

 private:
  struct entry {
    std::uint64_t number = 0;         // the current window's
    bool paced = false;
    bool informed = false;            // an answer of this window was learnt
    std::uint64_t remaining = 0;
    std::uint64_t sent = 0;           // requests made against this window
    std::uint64_t in_flight = 0;      // admitted, not answered (from any window)
    std::uint64_t limit = 0;          // places per window
    std::optional<time_point> reset{};
    duration window{0};
    std::deque<std::uint64_t> held{};  // reservations for windows number+1, number+2, …
    std::uint32_t parties = 1;       // this window's
    std::uint32_t next_parties = 1;  // from window fewer_from on (when fewer)
    std::uint64_t fewer_from = 0;
    time_point last_used{};
  };

  static state view(const entry& e) {
    std::uint64_t held = 0;
    for (auto h : e.held) held += h;
    return {e.paced, e.remaining, e.sent, e.in_flight, held, e.limit, e.reset, e.window, e.number, e.parties};
  }

  duration step_of(const entry& e) const noexcept { return std::max(e.window, o_.min_window); }

  // This process's places in a window: the limit, or its share of it.
  static std::uint64_t share(const entry& e) noexcept {
    return e.parties > 1 ? std::max<std::uint64_t>(e.limit / e.parties, 1) : e.limit;
  }
  // How many more requests the current window takes (see the top of this header).
  static std::uint64_t room(const entry& e) noexcept {
    const std::uint64_t mine = share(e) > e.sent ? share(e) - e.sent : 0;
    const std::uint64_t used = e.limit > e.remaining ? e.limit - e.remaining : 0;
    if (used <= e.sent) return mine;
    return std::min(mine, e.remaining > e.in_flight ? e.remaining - e.in_flight : 0);
  }

  // Moves the key into the window that holds `now`: each new window starts
  // with a full quota, and the requests held for it are in flight.
  void roll(entry& e, time_point now) {
    e.last_used = now;
    if (!e.reset) return;
    while (now >= *e.reset) {
      ++e.number;
      e.informed = false;
      if (e.fewer_from != 0 && e.number >= e.fewer_from) {
        e.parties = e.next_parties;
        e.fewer_from = 0;
      }
      e.remaining = std::max<std::uint64_t>(e.limit, 1);
      e.sent = e.in_flight;  // the last window's unanswered requests may count in this one
      if (!e.held.empty()) {
        e.in_flight += e.held.front();
        e.sent += e.held.front();
        e.held.pop_front();
      } else if (now - *e.reset >= step_of(e)) {
        // Idle for whole windows: skip them at once.
        const auto skip = (now - *e.reset) / step_of(e);
        e.number += static_cast<std::uint64_t>(skip);
        e.reset = detail::add(*e.reset, step_of(e) * skip);
      }
      e.reset = detail::add(*e.reset, step_of(e));
    }
  }

  entry& find_or_add(std::string_view key, time_point now) {
    auto it = map_.find(std::string(key));
    if (it != map_.end()) return it->second;
    if (++ops_ % 64 == 0 || map_.size() >= o_.max_entries) sweep(now);
    return map_[std::string(key)];
  }

  // Drops idle keys; when still full, the least recently used quarter.
  void sweep(time_point now) {
    auto idle = [&](const entry& x) {
      return x.in_flight == 0 && x.held.empty() && (!x.reset || *x.reset <= now) && now - x.last_used >= o_.entry_ttl;
    };
    std::erase_if(map_, [&](const auto& kv) { return idle(kv.second); });
    if (map_.size() < o_.max_entries) return;
    std::vector<std::pair<time_point, const std::string*>> by_age;
    by_age.reserve(map_.size());
    for (const auto& [k, x] : map_) by_age.emplace_back(x.last_used, &k);
    const std::size_t drop = std::max<std::size_t>(1, map_.size() - o_.max_entries * 3 / 4);
    std::nth_element(by_age.begin(), by_age.begin() + static_cast<std::ptrdiff_t>(drop - 1), by_age.end());
    std::vector<std::string> victims;
    for (std::size_t i = 0; i < drop; ++i) victims.push_back(*by_age[i].second);
    for (const auto& k : victims) map_.erase(k);
  }

  options o_;
  std::mutex mutex_;
  std::unordered_map<std::string, entry> map_;
  std::uint64_t ops_ = 0;
};

}  // namespace backoff
