// SPDX-License-Identifier: BSL-1.0
// backoff/presets.hpp — the documented retry policies of well-known clients, with
// their numbers, so code can say "do what Google Cloud says" and mean it exactly.
//
//   auto p = backoff::presets::google_cloud();               // 1 s, 2 s, 4 s … +U(0,1 s), cap 64 s
//   auto q = backoff::presets::google_cloud({.maximum_backoff = 32s, .max_attempts = 8});
//   auto a = backoff::presets::aws_standard();               // 3 attempts, full jitter, cap 20 s
//
// docs/algorithm.md discusses each one's weaknesses.
#pragma once

#include <chrono>
#include <cstdint>

#include "backoff/detail/validate.hpp"
#include "backoff/policy.hpp"

namespace backoff::presets {

struct google_cloud_options {
  std::chrono::nanoseconds maximum_backoff = std::chrono::seconds{64};  // the doc says "typically 32 or 64 seconds"
  std::uint32_t max_attempts = 10;
};

// Google Cloud's "truncated exponential backoff" (Cloud Storage and IoT Core docs,
// "Exponential backoff"): before retry n = 0, 1, 2, … wait
//   min(2^n s + random_number_milliseconds, maximum_backoff)
// with random_number_milliseconds uniform in [0, 1000] ms, drawn afresh for each
// retry; once at maximum_backoff the wait stays there while retries continue.
// Note: once 2^n s reaches the cap, this formula has no jitter left.
inline policy google_cloud(google_cloud_options o = {}) {
  if (o.maximum_backoff < std::chrono::seconds{1})
    detail::invalid("backoff::presets::google_cloud", "maximum_backoff", ">= 1s (the first wait)", o.maximum_backoff);
  if (o.max_attempts == 0) detail::invalid("backoff::presets::google_cloud", "max_attempts", ">= 1", o.max_attempts);
  return {
      .schedule = exponential{.initial = std::chrono::seconds{1}, .multiplier = 2.0, .max_delay = o.maximum_backoff},
      .jitter = jitter::additive(std::chrono::milliseconds{1000}),
      .stop = stop_rule::after_attempts(o.max_attempts),
  };
}

// AWS SDKs "standard" retry mode (AWS SDKs and Tools Reference Guide, "Retry
// behavior"): 3 attempts; wait min(b × r^i, MAX_BACKOFF) with b uniform in [0, 1],
// r = 2 and MAX_BACKOFF = 20 s, i.e. full jitter over 1 s × 2^i capped at 20 s.
// (Its retry quota is retry_budget::aws_standard() in backoff/budget.hpp.)
inline policy aws_standard(std::uint32_t max_attempts = 3) {
  return {
      .schedule = exponential{.initial = std::chrono::seconds{1}, .multiplier = 2.0, .max_delay = std::chrono::seconds{20}},
      .jitter = jitter::full(),
      .stop = stop_rule::after_attempts(max_attempts),
  };
}

// gRPC connection backoff (grpc/grpc doc/connection-backoff.md): INITIAL_BACKOFF
// 1 s, MULTIPLIER 1.6, JITTER 0.2 (proportional, ±20 %), MAX_BACKOFF 120 s. gRPC
// reconnects without an attempt limit; max_attempts = 0 keeps that (never stops),
// any other value adds a limit. MIN_CONNECT_TIMEOUT (20 s) is a per-attempt
// timeout, not part of the schedule.
inline policy grpc_connection(std::uint32_t max_attempts = 0) {
  return {
      .schedule = exponential{.initial = std::chrono::seconds{1}, .multiplier = 1.6, .max_delay = std::chrono::seconds{120}},
      .jitter = jitter::proportional(0.2),
      .stop = max_attempts == 0 ? stop_rule{} : stop_rule::after_attempts(max_attempts),
  };
}

// curl --retry N (curl's manual, --retry): wait 1 s before the first retry, then
// double the wait for each retry until it reaches 10 minutes, which then stays;
// no jitter. N retries means N + 1 attempts. curl's default N is 0 (no retries).
inline policy curl_retry(std::uint32_t retries = 3) {
  return {
      .schedule = exponential{.initial = std::chrono::seconds{1}, .multiplier = 2.0, .max_delay = std::chrono::minutes{10}},
      .jitter = jitter::none(),
      .stop = stop_rule::after_attempts(retries + 1),
  };
}

}  // namespace backoff::presets
