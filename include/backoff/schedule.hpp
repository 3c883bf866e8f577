// SPDX-License-Identifier: BSL-1.0
// backoff/schedule.hpp — how long to wait before each retry.
//
//   using namespace std::chrono_literals;
//   backoff::schedule s = backoff::exponential{.initial = 1s, .multiplier = 2.0, .max_delay = 64s};
//   backoff::schedule_state st;             // a new operation starts here
//   backoff::fast_rng rng{7};
//   s.next(st, rng);                        // 1 s, then 2 s, 4 s, … 64 s, 64 s
//
// A schedule is a small copyable value holding only configuration; the per-operation
// progress lives in schedule_state, so one schedule serves any number of loops.
// Schedules return delays (std::chrono::nanoseconds), never deadlines.
// Retry n counts from 0: the wait after the first failed attempt uses n = 0.
// All arithmetic saturates at max_delay: no overflow for any n or multiplier.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "backoff/detail/saturate.hpp"
#include "backoff/detail/validate.hpp"
#include "backoff/random.hpp"

namespace backoff {

// Progress of one operation through a schedule.
struct schedule_state {
  std::uint32_t retry = 0;   // retries already scheduled (n for the next one)
  double base_ns = 0.0;      // exponential/linear: the last nominal delay
  double previous_ns = 0.0;  // decorrelated: the last delay drawn
};

namespace detail {
constexpr void count_retry(schedule_state& s) noexcept {
  if (s.retry != std::numeric_limits<std::uint32_t>::max()) ++s.retry;
}
inline double as_double(std::chrono::nanoseconds d) noexcept { return static_cast<double>(d.count()); }
}  // namespace detail

// d(n) = delay
struct constant {
  std::chrono::nanoseconds delay = std::chrono::seconds{1};

  void validate() const {
    if (delay.count() < 0) detail::invalid("backoff::constant", "delay", ">= 0", delay);
  }
  std::chrono::nanoseconds cap() const noexcept { return delay; }
  template <class G>
  std::chrono::nanoseconds next(schedule_state& s, G&) const noexcept {
    detail::count_retry(s);
    return delay;
  }
  friend bool operator==(const constant&, const constant&) = default;
};

// d(n) = min(max_delay, initial + n × increment)
struct linear {
  std::chrono::nanoseconds initial = std::chrono::seconds{1};
  std::chrono::nanoseconds increment = std::chrono::seconds{1};
  std::chrono::nanoseconds max_delay = std::chrono::seconds{32};

  void validate() const {
    if (initial.count() < 0) detail::invalid("backoff::linear", "initial", ">= 0", initial);
    if (increment.count() < 0) detail::invalid("backoff::linear", "increment", ">= 0", increment);
    if (max_delay < initial) detail::invalid("backoff::linear", "max_delay", ">= initial", max_delay);
  }
  std::chrono::nanoseconds cap() const noexcept { return max_delay; }
  template <class G>
  std::chrono::nanoseconds next(schedule_state& s, G&) const noexcept {
    const double d = detail::as_double(initial) + static_cast<double>(s.retry) * detail::as_double(increment);
    detail::count_retry(s);
    return std::min(detail::from_double_ns(d), max_delay);
  }
  friend bool operator==(const linear&, const linear&) = default;
};

// d(n) = min(max_delay, initial × multiplier^n)   — "truncated exponential backoff"
struct exponential {
  std::chrono::nanoseconds initial = std::chrono::seconds{1};
  double multiplier = 2.0;
  std::chrono::nanoseconds max_delay = std::chrono::seconds{32};

  void validate() const {
    if (initial.count() <= 0) detail::invalid("backoff::exponential", "initial", "> 0", initial);
    if (!(multiplier >= 1.0) || !std::isfinite(multiplier))
      detail::invalid("backoff::exponential", "multiplier", ">= 1 and finite", multiplier);
    if (max_delay < initial) detail::invalid("backoff::exponential", "max_delay", ">= initial", max_delay);
  }
  std::chrono::nanoseconds cap() const noexcept { return max_delay; }
  template <class G>
  std::chrono::nanoseconds next(schedule_state& s, G&) const noexcept {
    const double cap_ns = detail::as_double(max_delay);
    // Multiply the previous nominal delay rather than calling pow(): exact for
    // powers of two, O(1), and it stops growing once it reaches the cap.
    if (s.retry == 0) {
      s.base_ns = detail::as_double(initial);
    } else if (s.base_ns < cap_ns) {
      s.base_ns *= multiplier;
    }
    detail::count_retry(s);
    return std::min(detail::from_double_ns(std::min(s.base_ns, cap_ns)), max_delay);
  }
  friend bool operator==(const exponential&, const exponential&) = default;
};

// d(n) = min(max_delay, U(base, 3 × d(n−1))), d(−1) = base   — "decorrelated jitter"
// (Brooker, AWS Architecture Blog 2015). Random by itself: combine with jitter::none().
struct decorrelated {
  std::chrono::nanoseconds base = std::chrono::seconds{1};
  std::chrono::nanoseconds max_delay = std::chrono::seconds{32};

  void validate() const {
    if (base.count() <= 0) detail::invalid("backoff::decorrelated", "base", "> 0", base);
    if (max_delay < base) detail::invalid("backoff::decorrelated", "max_delay", ">= base", max_delay);
  }
  std::chrono::nanoseconds cap() const noexcept { return max_delay; }
  template <class G>
  std::chrono::nanoseconds next(schedule_state& s, G& rng) const {
    const double prev = s.retry == 0 ? detail::as_double(base) : s.previous_ns;
    const auto hi = std::max(base, detail::from_double_ns(3.0 * prev));
    const auto d = std::min(uniform_duration(rng, base, hi), max_delay);
    s.previous_ns = detail::as_double(d);
    detail::count_retry(s);
    return d;
  }
  friend bool operator==(const decorrelated&, const decorrelated&) = default;
};

// d(n) = delays[min(n, size − 1)]   — the waits spelled out; the last one repeats
// (`backoff run --delays 1s,5s,30s`). Usually with jitter::none().
struct listed {
  std::vector<std::chrono::nanoseconds> delays{std::chrono::seconds{1}};

  void validate() const {
    if (delays.empty()) detail::invalid("backoff::listed", "delays", "not empty", 0);
    for (const auto d : delays)
      if (d.count() < 0) detail::invalid("backoff::listed", "delays", "each >= 0", d);
  }
  std::chrono::nanoseconds cap() const noexcept { return *std::max_element(delays.begin(), delays.end()); }
  template <class G>
  std::chrono::nanoseconds next(schedule_state& s, G&) const noexcept {
    const std::size_t i = std::min<std::size_t>(s.retry, delays.size() - 1);
    detail::count_retry(s);
    return delays[i];
  }
  friend bool operator==(const listed&, const listed&) = default;
};

// Any of the schedules above, chosen at run time (for example from a command line).
// Constructing one validates it and throws std::invalid_argument naming the field.
class schedule {
 public:
  using variant = std::variant<exponential, constant, linear, decorrelated, listed>;

  schedule() = default;  // exponential{} : 1 s, ×2, up to 32 s
  template <class S>
    requires std::is_constructible_v<variant, S> && (!std::is_same_v<std::remove_cvref_t<S>, schedule>)
  schedule(S s)  // NOLINT(google-explicit-constructor): designated-initializer ergonomics
      : v_(std::move(s)) {
    std::visit([](const auto& x) { x.validate(); }, v_);
  }

  std::chrono::nanoseconds cap() const noexcept {
    return std::visit([](const auto& x) { return x.cap(); }, v_);
  }

  // The nominal delay before the next retry (before jitter), advancing `s`.
  template <class G>
  std::chrono::nanoseconds next(schedule_state& s, G& rng) const {
    // A switch on the index lets the compiler inline each case (std::visit may not).
    switch (v_.index()) {
      case 0: return std::get<0>(v_).next(s, rng);
      case 1: return std::get<1>(v_).next(s, rng);
      case 2: return std::get<2>(v_).next(s, rng);
      case 3: return std::get<3>(v_).next(s, rng);
      default: return std::get<4>(v_).next(s, rng);
    }
  }

  const variant& get() const noexcept { return v_; }
  template <class S>
  const S* get_if() const noexcept {
    return std::get_if<S>(&v_);
  }

  std::string name() const {
    static constexpr const char* names[] = {"exponential", "constant", "linear", "decorrelated", "listed"};
    return names[v_.index()];
  }

  friend bool operator==(const schedule&, const schedule&) = default;

 private:
  variant v_{};
};

}  // namespace backoff
