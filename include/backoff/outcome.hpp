// SPDX-License-Identifier: BSL-1.0
// backoff/outcome.hpp — how an attempt ended and why a retry loop stopped.
//
//   auto r = backoff::try_retry(policy, fn);
//   if (r.reason == backoff::stop_reason::budget_exhausted) shed_load();
//   log(backoff::to_string(r.reason));             // "exhausted", "deadline", …
#pragma once

#include <cstdint>
#include <string_view>

namespace backoff {

// Why a retry loop ended.
enum class stop_reason : std::uint8_t {
  success,           // an attempt succeeded
  fallback,          // a permanent failure was turned into a result by the fallback
  exhausted,         // the attempt limit was reached
  deadline,          // a time limit or deadline was reached, or the next wait would cross it
  permanent,         // the failure was classified as not worth retrying
  cancelled,         // the stop_token was triggered
  budget_exhausted,  // a retry budget denied the retry
  circuit_open,      // a circuit breaker denied the attempt
  throttled,         // adaptive throttling rejected the attempt locally
  not_idempotent,    // the request may have had effects and must not be re-sent
};

constexpr std::string_view to_string(stop_reason r) noexcept {
  switch (r) {
    case stop_reason::success: return "success";
    case stop_reason::fallback: return "fallback";
    case stop_reason::exhausted: return "exhausted";
    case stop_reason::deadline: return "deadline";
    case stop_reason::permanent: return "permanent";
    case stop_reason::cancelled: return "cancelled";
    case stop_reason::budget_exhausted: return "budget_exhausted";
    case stop_reason::circuit_open: return "circuit_open";
    case stop_reason::throttled: return "throttled";
    case stop_reason::not_idempotent: return "not_idempotent";
  }
  return "unknown";
}

// How one attempt ended.
enum class attempt_outcome : std::uint8_t { success, retryable, permanent };

constexpr std::string_view to_string(attempt_outcome o) noexcept {
  switch (o) {
    case attempt_outcome::success: return "success";
    case attempt_outcome::retryable: return "retryable";
    case attempt_outcome::permanent: return "permanent";
  }
  return "unknown";
}

}  // namespace backoff
