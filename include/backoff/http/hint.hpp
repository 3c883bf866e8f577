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

#include "backoff/http/retry_after.hpp"

namespace backoff::http {

using header = std::pair<std::string, std::string>;

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (std::tolower(x) != std::tolower(y)) return false;
  }
  return true;
}

// The value of the first header named `name`, if any.
inline std::optional<std::string_view> find_header(const std::vector<header>& headers, std::string_view name) {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return std::string_view{v};
  return std::nullopt;
}

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
