// SPDX-License-Identifier: BSL-1.0
// backoff/policy.hpp — how long to wait and when to stop, as one value.
//
//   backoff::policy p{
//       .schedule = backoff::exponential{.initial = 1s, .multiplier = 2.0, .max_delay = 32s},
//       .jitter = backoff::jitter::full(),
//       .stop = backoff::stop::after_attempts(5) | backoff::stop::after_elapsed(60s),
//   };
//   std::vector<backoff::duration> waits = p.preview(4, rng);   // the first 4 waits
//
// A default policy waits U(0, min(32 s, 1 s × 2^n)) ("full jitter") and makes at
// most 4 attempts — the setup docs/simulations.md chose by measurement; pair it
// with retry_budget::recommended() shared per upstream. backoff/presets.hpp has
// the documented policies of Google
// Cloud, the AWS SDKs, gRPC and curl.
#pragma once

#include <cstdint>
#include <vector>

#include "backoff/clock.hpp"
#include "backoff/jitter.hpp"
#include "backoff/schedule.hpp"
#include "backoff/stop.hpp"

namespace backoff {

struct policy {
  backoff::schedule schedule{};
  backoff::jitter jitter = backoff::jitter::full();
  backoff::stop_rule stop = backoff::stop_rule::after_attempts(4);

  void validate() const { jitter.validate(); }

  // The wait before the next retry: the schedule's delay with jitter applied,
  // never above the schedule's cap. Advances `s`.
  template <class G>
  duration next_delay(schedule_state& s, G& rng) const {
    const duration d = schedule.next(s, rng);
    return jitter.apply(d, schedule.cap(), rng);
  }

  // The first `retries` waits of a fresh operation, as a loop would draw them.
  template <class G>
  std::vector<duration> preview(std::uint32_t retries, G& rng) const {
    validate();
    std::vector<duration> out;
    out.reserve(retries);
    schedule_state s;
    for (std::uint32_t i = 0; i < retries; ++i) out.push_back(next_delay(s, rng));
    return out;
  }
};

}  // namespace backoff
