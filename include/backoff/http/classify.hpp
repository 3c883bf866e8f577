// SPDX-License-Identifier: BSL-1.0
// backoff/http/classify.hpp — is an HTTP outcome worth retrying?
//
//   backoff::http::classifier c;                         // 408, 429, 500, 502, 503, 504
//   c.classify(503) == backoff::http::verdict::retryable;
//   c.classify(429) == backoff::http::verdict::throttled;
//   c.classify(404) == backoff::http::verdict::permanent; // or route it to a fallback
//   c.classify(backoff::http::transport::connect_failed) == verdict::retryable;
//
// The lists are plain vectors: edit them to taste. Transport failures are
// described without naming curl, so the same rules serve any HTTP stack.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

namespace backoff::http {

enum class verdict : std::uint8_t { success, retryable, throttled, permanent };

constexpr std::string_view to_string(verdict v) noexcept {
  switch (v) {
    case verdict::success: return "success";
    case verdict::retryable: return "retryable";
    case verdict::throttled: return "throttled";
    case verdict::permanent: return "permanent";
  }
  return "unknown";
}

// How a request failed below HTTP.
enum class transport : std::uint8_t {
  none,                // a response arrived
  connect_failed,      // refused or unreachable: the request never left the client
  dns_temporary,       // name resolution failed, maybe temporarily (never left the client)
  timeout,             // connect, first byte or transfer took too long
  connection_reset,    // reset or closed before a complete response
  connection_dropped,  // the body stopped short of its Content-Length
  tls,                 // handshake or certificate failure
  other,               // anything else (bad URL, out of memory, …)
};

constexpr std::string_view to_string(transport t) noexcept {
  switch (t) {
    case transport::none: return "none";
    case transport::connect_failed: return "connect_failed";
    case transport::dns_temporary: return "dns_temporary";
    case transport::timeout: return "timeout";
    case transport::connection_reset: return "connection_reset";
    case transport::connection_dropped: return "connection_dropped";
    case transport::tls: return "tls";
    case transport::other: return "other";
  }
  return "unknown";
}

// Whether a request that failed this way may have been seen by the server.
// Only a failure before the connection was established proves it was not.
constexpr bool may_have_reached_server(transport t) noexcept {
  return t != transport::connect_failed && t != transport::dns_temporary;
}

struct classifier {
  std::vector<int> retryable_statuses{408, 500, 502, 503, 504};
  std::vector<int> throttled_statuses{429};
  std::vector<transport> retryable_transport{transport::connect_failed, transport::dns_temporary, transport::timeout,
                                             transport::connection_reset, transport::connection_dropped};

  // 1xx–3xx are successes (redirects are the HTTP stack's business); listed
  // statuses are retryable or throttled; every other status is permanent.
  verdict classify(int status) const {
    if (contains(throttled_statuses, status)) return verdict::throttled;
    if (contains(retryable_statuses, status)) return verdict::retryable;
    if (status >= 100 && status < 400) return verdict::success;
    return verdict::permanent;
  }
  verdict classify(transport t) const {
    if (t == transport::none) return verdict::success;
    return contains(retryable_transport, t) ? verdict::retryable : verdict::permanent;
  }

 private:
  template <class T>
  static bool contains(const std::vector<T>& v, T x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  }
};

}  // namespace backoff::http
