// SPDX-License-Identifier: BSL-1.0
// backoff/http/idempotency.hpp — may this request be sent again?
//
//   backoff::http::may_resend({.method = "GET"}, transport::timeout);            // true
//   backoff::http::may_resend({.method = "POST"}, transport::timeout);           // false: it may have run
//   backoff::http::may_resend({.method = "POST"}, transport::connect_failed);    // true: it never left
//   backoff::http::may_resend({.method = "POST", .idempotency_key = true}, transport::timeout);  // true
//
// RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT and DELETE are idempotent.
// POST and PATCH are re-sent only when the connection was never established,
// when the caller vouches for them, or when they carry an Idempotency-Key
// (draft-ietf-httpapi-idempotency-key-header), which must then be the same on
// every attempt: make_idempotency_key() once per logical request.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "backoff/http/classify.hpp"
#include "backoff/random.hpp"

namespace backoff::http {

// Method names are case-sensitive (RFC 9110 §9.1): "get" is not GET.
constexpr bool is_idempotent_method(std::string_view method) noexcept {
  constexpr std::array<std::string_view, 6> safe{"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
  for (auto m : safe)
    if (m == method) return true;
  return false;
}

struct request_traits {
  std::string_view method = "GET";
  bool marked_idempotent = false;  // the caller knows the operation is safe to repeat
  bool idempotency_key = false;    // the request carries an Idempotency-Key header
};

// Whether a request that failed with `failure` (or got a retryable status,
// failure == transport::none) may be sent again.
constexpr bool may_resend(const request_traits& r, transport failure) noexcept {
  if (is_idempotent_method(r.method) || r.marked_idempotent || r.idempotency_key) return true;
  // A response means the server processed (or refused) the request: re-sending
  // a non-idempotent one could apply it twice, 503 or not.
  if (failure == transport::none) return false;
  return !may_have_reached_server(failure);
}

// A random UUID (version 4) for an Idempotency-Key header.
template <class G>
std::string make_idempotency_key(G& rng) {
  const std::uint64_t hi = (backoff::detail::bits64(rng) & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  const std::uint64_t lo = (backoff::detail::bits64(rng) & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  auto put = [&](std::uint64_t v, int nibbles) {
    for (int i = nibbles - 1; i >= 0; --i) out += hex[(v >> (4 * i)) & 0xf];
  };
  put(hi >> 32, 8);
  out += '-';
  put((hi >> 16) & 0xffff, 4);
  out += '-';
  put(hi & 0xffff, 4);
  out += '-';
  put(lo >> 48, 4);
  out += '-';
  put(lo & 0xffffffffffffULL, 12);
  return out;
}

}  // namespace backoff::http
