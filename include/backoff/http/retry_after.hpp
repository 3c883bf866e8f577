// SPDX-License-Identifier: BSL-1.0
// backoff/http/retry_after.hpp — what the server asked for: Retry-After
// (RFC 9110 §10.2.3) and RateLimit-Reset.
//
//   auto now = std::chrono::system_clock::now();
//   backoff::http::parse_retry_after("120", now);                            // 120 s
//   backoff::http::parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now);  // 0 s: in the past
//   backoff::http::parse_retry_after("soon", now);                           // nullopt: ignored
//
// Accepted forms: delta-seconds (1*DIGIT) and HTTP-date in all three forms a
// recipient must accept (RFC 9110 §5.6.7): IMF-fixdate, obsolete RFC 850 and
// asctime. A date in the past means "now" (0 s). Garbage, a sign, a fraction, or a
// number too large to represent is ignored (nullopt) so the caller falls back on
// its own backoff. HTTP dates use the wall clock (system_clock); nothing else in
// backoff does.
#pragma once

#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <optional>
#include <tuple>
#include <string_view>

namespace backoff::http {

using sys_time = std::chrono::system_clock::time_point;

namespace detail {

constexpr std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Parses exactly n digits at s[pos]; -1 on failure.
constexpr int digits(std::string_view s, std::size_t pos, std::size_t n) noexcept {
  if (pos + n > s.size()) return -1;
  int v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = s[pos + i];
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

constexpr int month_index(std::string_view m) noexcept {
  constexpr std::array<std::string_view, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (int i = 0; i < 12; ++i)
    if (months[static_cast<std::size_t>(i)] == m) return i + 1;
  return 0;
}

constexpr bool is_day_name(std::string_view d, bool long_form) noexcept {
  constexpr std::array<std::string_view, 7> short_names{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  constexpr std::array<std::string_view, 7> long_names{"Monday", "Tuesday",  "Wednesday", "Thursday",
                                                       "Friday", "Saturday", "Sunday"};
  for (std::size_t i = 0; i < 7; ++i)
    if ((long_form ? long_names[i] : short_names[i]) == d) return true;
  return false;
}

// "HH:MM:SS" at s[pos]; false when malformed or out of range.
constexpr bool time_of_day(std::string_view s, std::size_t pos, int& h, int& m, int& sec) noexcept {
  if (pos + 8 > s.size() || s[pos + 2] != ':' || s[pos + 5] != ':') return false;
  h = digits(s, pos, 2);
  m = digits(s, pos + 3, 2);
  sec = digits(s, pos + 6, 2);
  return h >= 0 && h <= 23 && m >= 0 && m <= 59 && sec >= 0 && sec <= 60;
}

constexpr bool valid_date(int y, int mon, int d) noexcept {
  constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mon < 1 || mon > 12 || d < 1) return false;
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return d <= days[mon - 1] + (mon == 2 && leap ? 1 : 0);
}

// Seconds precision: year 9999 fits, where system_clock's nanoseconds end in 2262.
inline std::optional<std::chrono::sys_seconds> make_time(int y, int mon, int d, int h, int m, int s) {
  if (!valid_date(y, mon, d)) return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(mon)},
                                        std::chrono::day{static_cast<unsigned>(d)}};
  const auto t = std::chrono::sys_days{ymd} + std::chrono::hours{h} + std::chrono::minutes{m} + std::chrono::seconds{s};
  // A leap second (:60) on the last day of 9999 would land in year 10000, which
  // no HTTP-date can name: the dates end at the last second of 9999.
  const auto last = std::chrono::sys_days{std::chrono::year{9999} / 12 / 31} + std::chrono::seconds{86399};
  return std::min<std::chrono::sys_seconds>(t, last);
}

}  // namespace detail

// Parses an HTTP-date in any of its three forms. `now` resolves RFC 850's
// two-digit years: a year more than 50 years in the future is taken as the
// most recent past year with the same last two digits (RFC 9110 §5.6.7).
inline std::optional<std::chrono::sys_seconds> parse_http_date(std::string_view v,
                                                                sys_time now = std::chrono::system_clock::now()) {
  using namespace detail;
  v = trim(v);
  int h = 0, m = 0, s = 0;
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (29 characters)
  if (v.size() == 29 && v[3] == ',' && v[4] == ' ' && is_day_name(v.substr(0, 3), false) && v[7] == ' ' &&
      v[11] == ' ' && v[16] == ' ' && v.substr(25) == " GMT") {
    const int d = digits(v, 5, 2), mon = month_index(v.substr(8, 3)), y = digits(v, 12, 4);
    if (d < 0 || mon == 0 || y < 0 || !time_of_day(v, 17, h, m, s)) return std::nullopt;
    return make_time(y, mon, d, h, m, s);
  }
  // asctime: "Sun Nov  6 08:49:37 1994" (24 characters; day padded with a space)
  if (v.size() == 24 && v[3] == ' ' && is_day_name(v.substr(0, 3), false) && v[7] == ' ' && v[10] == ' ' &&
      v[19] == ' ') {
    const int mon = month_index(v.substr(4, 3));
    const int d = v[8] == ' ' ? digits(v, 9, 1) : digits(v, 8, 2);
    const int y = digits(v, 20, 4);
    if (d < 0 || mon == 0 || y < 0 || !time_of_day(v, 11, h, m, s)) return std::nullopt;
    return make_time(y, mon, d, h, m, s);
  }
  // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
  if (const auto comma = v.find(','); comma != std::string_view::npos && comma >= 6 && comma <= 9 &&
                                      is_day_name(v.substr(0, comma), true)) {
    const std::string_view rest = v.substr(comma);
    if (rest.size() != 24 || rest[1] != ' ' || rest[4] != '-' || rest[8] != '-' || rest[11] != ' ' ||
        rest.substr(20) != " GMT")
      return std::nullopt;
    const int d = digits(rest, 2, 2), mon = month_index(rest.substr(5, 3)), yy = digits(rest, 9, 2);
    if (d < 0 || mon == 0 || yy < 0 || !time_of_day(rest, 12, h, m, s)) return std::nullopt;
    // "More than 50 years in the future" compares whole dates, not years: with
    // now = 2026-06-01, "01-Jul-76" is 1976 and "01-May-76" is 2076.
    const auto today = std::chrono::floor<std::chrono::days>(now);
    const std::chrono::year_month_day ymd{today};
    const std::chrono::hh_mm_ss<std::chrono::seconds> clock{std::chrono::floor<std::chrono::seconds>(now - today)};
    const int this_year = static_cast<int>(ymd.year());
    int y = this_year - this_year % 100 + yy;
    const auto as_tuple = [](int a, int b, int c, long e, long f, long g) { return std::tuple{a, b, c, e, f, g}; };
    const auto limit = as_tuple(this_year + 50, static_cast<int>(static_cast<unsigned>(ymd.month())),
                                static_cast<int>(static_cast<unsigned>(ymd.day())), clock.hours().count(),
                                clock.minutes().count(), static_cast<long>(clock.seconds().count()));
    if (as_tuple(y, mon, d, h, m, s) > limit) y -= 100;
    return make_time(y, mon, d, h, m, s);
  }
  return std::nullopt;
}

// delta-seconds: 1*DIGIT, nothing else. nullopt for an empty value, a sign, a
// fraction, trailing garbage, or more seconds than a duration can hold.
constexpr std::optional<std::chrono::seconds> parse_delta_seconds(std::string_view v) noexcept {
  v = detail::trim(v);
  if (v.empty() || v.size() > 18) return std::nullopt;  // 10^18 s overflows nanoseconds anyway
  std::int64_t n = 0;
  for (const char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  if (n > std::chrono::duration_cast<std::chrono::seconds>(std::chrono::nanoseconds::max()).count()) return std::nullopt;
  return std::chrono::seconds{n};
}

// The wait a Retry-After value asks for, relative to `now`: delta-seconds as
// given, an HTTP-date as (date − now), 0 when the date has passed, nullopt when
// the value is not valid.
inline std::optional<std::chrono::nanoseconds> parse_retry_after(std::string_view v,
                                                                 sys_time now = std::chrono::system_clock::now()) {
  if (const auto d = parse_delta_seconds(v)) return std::chrono::nanoseconds{*d};
  if (const auto t = parse_http_date(v, now)) {
    const auto ahead = *t - std::chrono::floor<std::chrono::seconds>(now);
    if (ahead.count() <= 0) return std::chrono::nanoseconds{0};
    // Saturate: a date centuries ahead is "very long", which callers clamp.
    constexpr auto max_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::nanoseconds::max());
    if (ahead >= max_s) return std::chrono::nanoseconds::max();
    return std::chrono::nanoseconds{ahead};
  }
  return std::nullopt;
}

}  // namespace backoff::http
