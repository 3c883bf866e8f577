// SPDX-License-Identifier: BSL-1.0
// backoff/stop.hpp — when to give up.
//
//   namespace stop = backoff::stop;
//   auto rule = stop::after_attempts(5) | stop::after_elapsed(30s);   // whichever comes first
//   auto both = stop::after_attempts(3) & stop::after_elapsed(10s);   // only when both hold
//   auto hard = stop::before_deadline(steady_clock::now() + 2s);      // never sleep past it
//
// A stop_rule is a value: an expression of up to 15 rules joined by | (either)
// and & (both), stored inline without allocation.
//
// Semantics, checked after each failed attempt, with the wait the schedule chose:
//   after_attempts(n)   stop once n attempts have been made (never more than n).
//   after_elapsed(d)    stop once d has elapsed since the loop began; a wait that
//                       would end later is shortened to end exactly at d, and one
//                       last attempt is made then (curl's --retry-max-time behaves alike).
//   at_deadline(t)      the same, with an absolute steady-clock deadline.
//   before_elapsed(d)   stop instead of starting a wait that would end past d.
//   before_deadline(t)  stop instead of starting a wait that would end past t.
// With any of them, no wait ever ends past the limit.
#pragma once

#include <array>
#include <concepts>
#include <chrono>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include "backoff/clock.hpp"
#include "backoff/detail/saturate.hpp"
#include "backoff/detail/validate.hpp"
#include "backoff/history.hpp"

namespace backoff {

class stop_rule {
 public:
  // What the loop knows after a failed attempt.
  struct context {
    std::uint32_t attempts;  // attempts that count: made so far, or since the last one that made progress
    duration elapsed;        // since the loop began
    time_point now;
    duration next_delay;     // the wait the schedule chose before the next attempt
  };
  struct decision {
    bool stop;
    stop_reason reason;
    duration max_wait;  // the longest wait allowed when not stopping
  };

  // Never stops by itself: combine with something that does.
  constexpr stop_rule() noexcept = default;

  static stop_rule after_attempts(std::uint32_t n) {
    if (n == 0) detail::invalid("backoff::stop::after_attempts", "n", ">= 1", n);
    return leaf(kind::attempts, n);
  }
  // A signed count is checked before it is narrowed: -1 is an error, not 4294967295 attempts.
  template <std::signed_integral T>
  static stop_rule after_attempts(T n) {
    if (n < 1) detail::invalid("backoff::stop::after_attempts", "n", ">= 1", static_cast<std::int64_t>(n));
    if (static_cast<std::uint64_t>(n) > std::numeric_limits<std::uint32_t>::max())
      detail::invalid("backoff::stop::after_attempts", "n", "<= 4294967295", static_cast<std::int64_t>(n));
    return after_attempts(static_cast<std::uint32_t>(n));
  }
  static stop_rule after_elapsed(duration d) {
    if (d.count() < 0) detail::invalid("backoff::stop::after_elapsed", "limit", ">= 0", d);
    return leaf(kind::elapsed, d.count());
  }
  static stop_rule before_elapsed(duration d) {
    if (d.count() < 0) detail::invalid("backoff::stop::before_elapsed", "limit", ">= 0", d);
    return leaf(kind::before_elapsed, d.count());
  }
  static stop_rule at_deadline(time_point t) noexcept { return leaf(kind::deadline, ns_since_epoch(t)); }
  static stop_rule before_deadline(time_point t) noexcept { return leaf(kind::before_deadline, ns_since_epoch(t)); }

  // Stop when either rule says so.
  friend stop_rule operator|(const stop_rule& a, const stop_rule& b) { return join(kind::any, a, b); }
  // Stop only when both rules say so.
  friend stop_rule operator&(const stop_rule& a, const stop_rule& b) { return join(kind::all, a, b); }

  decision decide(const context& c) const noexcept {
    if (count_ == 0) return {false, stop_reason::exhausted, duration::max()};
    return eval(static_cast<std::uint8_t>(count_ - 1), c);
  }

  // True when some part of the rule reads the clock (elapsed time or a deadline).
  bool uses_clock() const noexcept { return uses_clock_; }

  // The attempt limit if the rule is a plain after_attempts (or contains one under |), else 0.
  std::uint32_t max_attempts() const noexcept {
    return count_ == 0 ? 0 : attempts_bound(static_cast<std::uint8_t>(count_ - 1));
  }

  static constexpr std::size_t max_rules = 15;

 private:
  enum class kind : std::uint8_t { attempts, elapsed, before_elapsed, deadline, before_deadline, any, all };
  struct node {
    kind k;
    std::uint8_t lhs, rhs;
    std::int64_t value;
  };

  static std::int64_t ns_since_epoch(time_point t) noexcept {
    return std::chrono::duration_cast<duration>(t.time_since_epoch()).count();
  }
  static stop_rule leaf(kind k, std::int64_t value) noexcept {
    stop_rule r;
    r.nodes_[0] = {k, 0, 0, value};
    r.count_ = 1;
    r.uses_clock_ = k != kind::attempts;
    return r;
  }
  static stop_rule join(kind k, const stop_rule& a, const stop_rule& b) {
    if (a.count_ == 0) return b;
    if (b.count_ == 0) return a;
    if (a.count_ + b.count_ + 1u > max_rules)
      detail::invalid("backoff::stop_rule", "size", "at most 15 rules and operators", a.count_ + b.count_ + 1);
    stop_rule r = a;
    r.uses_clock_ = a.uses_clock_ || b.uses_clock_;
    for (std::uint8_t i = 0; i < b.count_; ++i) {
      node n = b.nodes_[i];
      if (n.k == kind::any || n.k == kind::all) {
        n.lhs = static_cast<std::uint8_t>(n.lhs + a.count_);
        n.rhs = static_cast<std::uint8_t>(n.rhs + a.count_);
      }
      r.nodes_[r.count_++] = n;
    }
    r.nodes_[r.count_] = {k, static_cast<std::uint8_t>(a.count_ - 1), static_cast<std::uint8_t>(r.count_ - 1), 0};
    ++r.count_;
    return r;
  }

  decision eval(std::uint8_t i, const context& c) const noexcept {
    const node& n = nodes_[i];
    constexpr duration unlimited = duration::max();
    switch (n.k) {
      case kind::attempts:
        return {c.attempts >= n.value, stop_reason::exhausted, unlimited};
      case kind::elapsed: {
        const duration limit{n.value};
        if (c.elapsed >= limit) return {true, stop_reason::deadline, unlimited};
        return {false, stop_reason::deadline, limit - c.elapsed};
      }
      case kind::before_elapsed:
        return {detail::add(c.elapsed, c.next_delay) > duration{n.value}, stop_reason::deadline, unlimited};
      case kind::deadline: {
        const duration left = detail::sub(duration{n.value}, duration{ns_since_epoch(c.now)});
        if (left.count() <= 0) return {true, stop_reason::deadline, unlimited};
        return {false, stop_reason::deadline, left};
      }
      case kind::before_deadline: {
        const duration left = detail::sub(duration{n.value}, duration{ns_since_epoch(c.now)});
        return {c.next_delay > left, stop_reason::deadline, unlimited};
      }
      case kind::any: {
        const decision a = eval(n.lhs, c);
        if (a.stop) return a;
        const decision b = eval(n.rhs, c);
        if (b.stop) return b;
        return {false, a.reason, std::min(a.max_wait, b.max_wait)};
      }
      case kind::all: {
        const decision a = eval(n.lhs, c);
        const decision b = eval(n.rhs, c);
        if (a.stop && b.stop) return {true, a.reason, unlimited};
        // A rule that is already satisfied no longer limits the wait.
        return {false, a.reason, std::min(a.stop ? unlimited : a.max_wait, b.stop ? unlimited : b.max_wait)};
      }
    }
    return {true, stop_reason::exhausted, unlimited};
  }

  std::uint32_t attempts_bound(std::uint8_t i) const noexcept {
    const node& n = nodes_[i];
    if (n.k == kind::attempts) return static_cast<std::uint32_t>(n.value);
    if (n.k == kind::any) {
      const auto a = attempts_bound(n.lhs), b = attempts_bound(n.rhs);
      if (a == 0) return b;
      if (b == 0) return a;
      return std::min(a, b);
    }
    if (n.k == kind::all) {
      const auto a = attempts_bound(n.lhs), b = attempts_bound(n.rhs);
      return (a == 0 || b == 0) ? 0 : std::max(a, b);
    }
    return 0;
  }

  std::array<node, max_rules> nodes_{};
  std::uint8_t count_ = 0;
  bool uses_clock_ = false;
};

// Factory functions, so that rules read as sentences: stop::after_attempts(5).
namespace stop {
inline stop_rule never() noexcept { return {}; }
inline stop_rule after_attempts(std::uint32_t n) { return stop_rule::after_attempts(n); }
template <std::signed_integral T>
stop_rule after_attempts(T n) {
  return stop_rule::after_attempts(n);
}
inline stop_rule after_elapsed(duration d) { return stop_rule::after_elapsed(d); }
inline stop_rule before_elapsed(duration d) { return stop_rule::before_elapsed(d); }
inline stop_rule at_deadline(time_point t) noexcept { return stop_rule::at_deadline(t); }
inline stop_rule before_deadline(time_point t) noexcept { return stop_rule::before_deadline(t); }
}  // namespace stop

}  // namespace backoff
