// SPDX-License-Identifier: BSL-1.0
// Retry-After, RateLimit-Reset and HTTP dates from hostile servers. Properties:
// a hint is never negative and never above max_hint; a date that parses,
// written back as an IMF-fixdate, parses to the same instant.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string_view>

#include "backoff/http/hint.hpp"
#include "backoff/http/retry_after.hpp"

using namespace std::chrono;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "property violated: %s\n", what);
  std::abort();
}

std::string imf(sys_seconds t) {
  static const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const auto day = floor<std::chrono::days>(t);
  const year_month_day ymd{day};
  const weekday wd{day};
  const hh_mm_ss hms{t - day};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02u %s %04d %02ld:%02ld:%02lld GMT", days[wd.c_encoding()],
                static_cast<unsigned>(ymd.day()), months[static_cast<unsigned>(ymd.month()) - 1],
                static_cast<int>(ymd.year()), static_cast<long>(hms.hours().count()),
                static_cast<long>(hms.minutes().count()), static_cast<long long>(hms.seconds().count()));
  return buf;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const sys_time<nanoseconds> now = sys_days{year{2026} / 11 / 29} + hours{18};
  if (const auto d = backoff::http::parse_retry_after(text, now); d && d->count() < 0) fail("negative Retry-After");
  if (const auto s = backoff::http::parse_delta_seconds(text); s && s->count() < 0) fail("negative delta-seconds");
  if (const auto t = backoff::http::parse_http_date(text, now)) {
    const auto again = backoff::http::parse_http_date(imf(*t), now);
    if (!again || *again != *t) fail("an HTTP-date does not survive being written as IMF-fixdate");
  }
  const backoff::http::hint_options o{.max_hint = minutes{10}};
  const std::vector<backoff::http::header> h{{"Retry-After", std::string(text)}, {"RateLimit-Reset", std::string(text)}};
  if (const auto hint = backoff::http::server_hint(h, o, now); hint && (hint->count() < 0 || *hint > o.max_hint))
    fail("server_hint outside [0, max_hint]");
  return 0;
}
