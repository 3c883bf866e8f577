// SPDX-License-Identifier: BSL-1.0
// Quota headers and structured fields from hostile servers. The input is one
// field value, tried under every quota header name. Properties: a reset is
// never negative nor above the clamp; a Go duration is never negative nor
// above a day; a structured-field list or dictionary that parsed has no empty
// key and its strings hold only printable ASCII.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "backoff/http/ratelimit.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "property violated: %s\n", what);
  std::abort();
}

void check_member(const backoff::http::sf_member& m) {
  for (const auto& [k, v] : m.params)
    if (k.empty()) fail("a parameter without a key");
  if (const auto s = m.item.as_string())
    for (const char c : *s)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) fail("a string with a control byte");
  for (const auto& x : m.inner) check_member(x);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace std::chrono_literals;
  const std::string value(reinterpret_cast<const char*>(data), size);
  const backoff::http::sys_time now{std::chrono::seconds{1796083200}};
  const auto max = 10min;
  for (const char* name : {"RateLimit", "RateLimit-Policy", "RateLimit-Remaining", "RateLimit-Reset", "X-RateLimit-Reset",
                           "X-RateLimit-Reset-After", "x-ratelimit-reset-requests"}) {
    const std::vector<backoff::http::header> h{{name, value}, {"RateLimit-Remaining", "1"}, {"X-RateLimit-Remaining", "1"},
                                               {"x-ratelimit-remaining-requests", "1"}};
    if (const auto q = backoff::http::parse_quota(h, now, max)) {
      if (q->reset && (*q->reset < 0ms || *q->reset > max)) fail("a reset outside [0, max]");
      if (q->window && *q->window <= 0s) fail("a window that is not positive");
      if (!q->remaining) fail("a quota without remaining");
    }
  }
  if (const auto d = backoff::http::parse_go_duration(value); d && (*d < 0ns || *d > 24h)) fail("a Go duration outside [0, 1 day]");
  if (const auto l = backoff::http::parse_sf_list(value))
    for (const auto& m : *l) check_member(m);
  if (const auto d = backoff::http::parse_sf_dictionary(value)) {
    for (const auto& [k, m] : *d) {
      if (k.empty()) fail("a dictionary member without a key");
      check_member(m);
    }
  }
  (void)backoff::http::parse_pushback({{"grpc-retry-pushback-ms", value}, {"x-amz-retry-after", value}});
  return 0;
}
