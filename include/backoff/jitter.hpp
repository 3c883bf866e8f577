// SPDX-License-Identifier: BSL-1.0
// backoff/jitter.hpp — randomness added to a schedule's delay so that many
// clients that failed together do not retry together.
//
//   auto j = backoff::jitter::full();                   // U(0, d)
//   auto k = backoff::jitter::proportional(0.2);        // d × U(0.8, 1.2)
//   auto g = backoff::jitter::additive(1000ms);         // d + U(0, 1 s), Google's form
//   duration wait = j.apply(4s, /*cap=*/32s, rng);     // never above the cap
//
// Whatever the kind, apply() returns a value in [0, cap]. docs/algorithm.md
// compares the kinds (Brooker 2015: full jitter does the least work).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

#include "backoff/detail/saturate.hpp"
#include "backoff/detail/validate.hpp"
#include "backoff/random.hpp"

namespace backoff {

struct jitter {
  enum class kind : std::uint8_t {
    none,          // d
    full,          // U(0, d)
    equal,         // d/2 + U(0, d/2)
    proportional,  // d × U(1 − fraction, 1 + fraction)
    additive,      // d + U(0, max_added)
  };

  kind type = kind::none;
  double fraction = 0.0;                   // proportional only, in [0, 1]
  std::chrono::nanoseconds max_added{0};   // additive only, >= 0

  static constexpr jitter none() noexcept { return {}; }
  static constexpr jitter full() noexcept { return {kind::full}; }
  static constexpr jitter equal() noexcept { return {kind::equal}; }
  static jitter proportional(double fraction) {
    jitter j{kind::proportional, fraction};
    j.validate();
    return j;
  }
  static jitter additive(std::chrono::nanoseconds max_added) {
    jitter j{kind::additive, 0.0, max_added};
    j.validate();
    return j;
  }

  void validate() const {
    if (type == kind::proportional && !(fraction >= 0.0 && fraction <= 1.0))
      detail::invalid("backoff::jitter", "fraction", "in [0, 1]", fraction);
    if (type == kind::additive && max_added.count() < 0)
      detail::invalid("backoff::jitter", "max_added", ">= 0", max_added);
  }

  // The jittered delay for a nominal delay `d`, clamped to [0, cap]. Units: ns.
  template <class G>
  std::chrono::nanoseconds apply(std::chrono::nanoseconds d, std::chrono::nanoseconds cap, G& rng) const {
    using std::chrono::nanoseconds;
    d = std::clamp(d, nanoseconds{0}, std::max(cap, nanoseconds{0}));
    switch (type) {
      case kind::none:
        return d;
      case kind::full:
        return uniform_duration(rng, nanoseconds{0}, d);
      case kind::equal: {
        const nanoseconds half = d / 2;
        return half + uniform_duration(rng, nanoseconds{0}, d - half);
      }
      case kind::proportional: {
        const double factor = 1.0 - fraction + 2.0 * fraction * uniform_unit(rng);
        return std::min(detail::from_double_ns(static_cast<double>(d.count()) * factor), cap);
      }
      case kind::additive:
        return std::min(detail::add(d, uniform_duration(rng, nanoseconds{0}, max_added)), cap);
    }
    return d;
  }

  friend bool operator==(const jitter&, const jitter&) = default;
};

inline std::string to_string(jitter::kind k) {
  switch (k) {
    case jitter::kind::none: return "none";
    case jitter::kind::full: return "full";
    case jitter::kind::equal: return "equal";
    case jitter::kind::proportional: return "proportional";
    case jitter::kind::additive: return "additive";
  }
  return "unknown";
}

}  // namespace backoff
