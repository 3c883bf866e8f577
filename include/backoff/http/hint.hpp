// SPDX-License-Identifier: BSL-1.0
// backoff/http/hint.hpp — turn response headers into the wait the server asked for.
//
//   backoff::http::hint_options o{.max_hint = 1h};
//   auto wait = backoff::http::server_hint(headers, o);   // from Retry-After or RateLimit-Reset
//
// Headers read, in this order (the first valid one wins):
//   Retry-After       RFC 9110 §10.2.3: delta-seconds or HTTP-date
//   RateLimit-Reset   draft-ietf-httpapi-ratelimit-headers: delta-seconds
// Header names match case-insensitively. The hint is clamped to max_hint (default
// 1 h; curl uses 6 h), so a server cannot park a client for days.
#pragma once

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "backoff/http/header.hpp"
#include "backoff/http/retry_after.hpp"

namespace backoff::http {

struct hint_options {
  std::chrono::nanoseconds max_hint = std::chrono::hours{1};
  bool read_ratelimit_reset = true;
};

inline std::optional<std::chrono::nanoseconds> server_hint(const std::vector<header>& headers, const hint_options& o = {},
                                                           sys_time now = std::chrono::system_clock::now()) {
  std::optional<std::chrono::nanoseconds> hint;
  if (const auto v = find_header(headers, "Retry-After")) hint = parse_retry_after(*v, now);
  if (!hint && o.read_ratelimit_reset) {
    if (const auto v = find_header(headers, "RateLimit-Reset")) {
      if (const auto d = parse_delta_seconds(*v)) hint = std::chrono::nanoseconds{*d};
    }
  }
  if (hint) hint = std::min(*hint, o.max_hint);
  return hint;
}

}  // namespace backoff::http
