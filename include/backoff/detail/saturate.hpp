// SPDX-License-Identifier: BSL-1.0
// backoff/detail/saturate.hpp — duration arithmetic that saturates instead of
// wrapping. Every delay the library computes goes through these helpers, so a
// multiplier of 1e6 or a millionth retry yields the cap, never a negative wait.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>

namespace backoff::detail {

using ns = std::chrono::nanoseconds;
inline constexpr ns max_ns = ns::max();

// Converts a non-negative count of nanoseconds held in a double to a duration,
// saturating at ns::max() (NaN and negative values become zero).
constexpr ns from_double_ns(double v) noexcept {
  if (!(v > 0.0)) return ns{0};
  // 2^63 is the first double above INT64_MAX.
  if (v >= 9223372036854775808.0) return max_ns;
  return ns{static_cast<std::int64_t>(v)};
}

constexpr ns add(ns a, ns b) noexcept {
  std::int64_t out = 0;
  if (__builtin_add_overflow(a.count(), b.count(), &out)) return b.count() > 0 ? ns::max() : ns::min();
  return ns{out};
}

constexpr ns sub(ns a, ns b) noexcept {
  std::int64_t out = 0;
  if (__builtin_sub_overflow(a.count(), b.count(), &out)) return b.count() < 0 ? ns::max() : ns::min();
  return ns{out};
}

template <class TimePoint>
constexpr TimePoint add(TimePoint t, ns d) noexcept {
  return TimePoint{std::chrono::duration_cast<typename TimePoint::duration>(add(ns{t.time_since_epoch()}, d))};
}

// a - b for time points, saturating.
template <class TimePoint>
constexpr ns diff(TimePoint a, TimePoint b) noexcept {
  return sub(ns{a.time_since_epoch()}, ns{b.time_since_epoch()});
}

}  // namespace backoff::detail
