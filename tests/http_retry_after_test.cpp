// SPDX-License-Identifier: BSL-1.0
#include "backoff/http/retry_after.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "backoff/http/hint.hpp"

using namespace std::chrono_literals;
using backoff::http::parse_retry_after;
using backoff::http::sys_time;

namespace {
// 1994-11-06 08:49:37 UTC, the RFC's example instant.
const sys_time rfc_instant = std::chrono::sys_days{std::chrono::year{1994} / 11 / 6} + 8h + 49min + 37s;

struct row {
  const char* value;
  std::optional<std::chrono::nanoseconds> want;  // relative to `now`
  sys_time now;
};
}  // namespace

TEST(RetryAfter, Table) {
  const sys_time before = rfc_instant - 100s;
  const row rows[] = {
      // The RFC's own examples (RFC 9110 §10.2.3 and §5.6.7).
      {"120", 120s, before},
      {"Fri, 31 Dec 1999 23:59:59 GMT", 0s, std::chrono::sys_days{std::chrono::year{2026} / 1 / 1}},
      {"Sun, 06 Nov 1994 08:49:37 GMT", 100s, before},
      {"Sunday, 06-Nov-94 08:49:37 GMT", 100s, before},
      {"Sun Nov  6 08:49:37 1994", 100s, before},
      // delta-seconds edge cases
      {"0", 0s, before},
      {"  7 ", 7s, before},
      {"007", 7s, before},
      {"-5", std::nullopt, before},
      {"+5", std::nullopt, before},
      {"1.5", std::nullopt, before},
      {"5s", std::nullopt, before},
      {"", std::nullopt, before},
      {"   ", std::nullopt, before},
      {"99999999999999999999999", std::nullopt, before},  // overflows: ignored
      {"9000000000", 9000000000s, before},                  // huge but representable; callers clamp
      {"9999999999", std::nullopt, before},                 // past what nanoseconds can hold
      // past and far-future dates
      {"Sun, 06 Nov 1994 08:49:36 GMT", 0s, rfc_instant},
      {"Thu, 01 Jan 1970 00:00:00 GMT", 0s, rfc_instant},
      {"Fri, 31 Dec 9999 23:59:59 GMT", std::nullopt, rfc_instant},  // checked separately below
      // garbage and near-misses
      {"soon", std::nullopt, before},
      {"Sun, 06 Nov 1994 08:49:37 UTC", std::nullopt, before},
      {"Sun, 32 Nov 1994 08:49:37 GMT", std::nullopt, before},
      {"Sun, 29 Feb 1994 08:49:37 GMT", std::nullopt, before},
      {"Sun, 06 Nov 1994 24:00:00 GMT", std::nullopt, before},
      {"Sun, 06 Foo 1994 08:49:37 GMT", std::nullopt, before},
      {"Xyz, 06 Nov 1994 08:49:37 GMT", std::nullopt, before},
      {"Sun, 6 Nov 1994 08:49:37 GMT", std::nullopt, before},
      {"Sun Nov 6 08:49:37 1994", std::nullopt, before},
      {"Funday, 06-Nov-94 08:49:37 GMT", std::nullopt, before},
      // a character that is not a digit where digits must be, in each field
      {"Sun, 0x Nov 1994 08:49:37 GMT", std::nullopt, before},
      {"Sun, 06 Nov 19:4 08:49:37 GMT", std::nullopt, before},
      {"Sun, 06 Nov 1994 08:4/:37 GMT", std::nullopt, before},
      {"Sun, 06 Nov 1994 08:49:3a GMT", std::nullopt, before},
      {"Sunday, 06-Nov-9/ 08:49:37 GMT", std::nullopt, before},
  };
  for (const auto& r : rows) {
    if (std::string(r.value).starts_with("Fri, 31 Dec 9999")) continue;
    EXPECT_EQ(parse_retry_after(r.value, r.now), r.want) << "value: '" << r.value << "'";
  }
}

TEST(RetryAfter, FarFutureDateSaturatesInsteadOfOverflowing) {
  // 8000 years do not fit in nanoseconds: the wait saturates (callers clamp it).
  const auto d = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", rfc_instant);
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, std::chrono::nanoseconds::max());
  EXPECT_EQ(backoff::http::server_hint({{"Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"}}, {}, rfc_instant), 1h);
  // A leap second on the last day of 9999 (found by fuzz_retry_after) stays in
  // year 9999 instead of naming a year no HTTP-date can hold.
  EXPECT_EQ(backoff::http::parse_http_date("Fri, 31 Dec 9999 23:59:60 GMT", rfc_instant),
            backoff::http::parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT", rfc_instant));
  // A date 100 years ahead still fits exactly.
  const auto century = parse_retry_after("Sun, 06 Nov 2094 08:49:37 GMT", rfc_instant);
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::hours>(*century).count() / 24 / 365, 100);
}

TEST(RetryAfter, Rfc850TwoDigitYearsFollowTheFiftyYearRule) {
  const sys_time now = std::chrono::sys_days{std::chrono::year{2026} / 6 / 1};
  // "30" is 2030 (4 years ahead, not more than 50): in the future.
  EXPECT_GT(*parse_retry_after("Monday, 01-Jan-30 00:00:00 GMT", now), 24h * 365 * 3);
  // "94" would be 2094, more than 50 years ahead: it means 1994, in the past.
  EXPECT_EQ(*parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), 0s);
}

TEST(RetryAfter, HintReadsRetryAfterThenRateLimitResetAndClamps) {
  using backoff::http::server_hint;
  const sys_time now = rfc_instant;
  EXPECT_EQ(server_hint({{"retry-after", "30"}}, {}, now), 30s);
  EXPECT_EQ(server_hint({{"RateLimit-Reset", "12"}}, {}, now), 12s);
  EXPECT_EQ(server_hint({{"Retry-After", "garbage"}, {"RateLimit-Reset", "12"}}, {}, now), 12s);
  EXPECT_EQ(server_hint({{"Retry-After", "999999"}}, {}, now), 1h);  // clamped to the 1 h default
  EXPECT_EQ(server_hint({{"Retry-After", "999999"}}, {.max_hint = 6h}, now), 6h);
  EXPECT_EQ(server_hint({{"Content-Type", "text/plain"}}, {}, now), std::nullopt);
  EXPECT_EQ(server_hint({{"RateLimit-Reset", "12"}}, {.read_ratelimit_reset = false}, now), std::nullopt);
}

// RFC 9110 §5.6.7 compares dates, not years: a date in the 50th year ahead but
// past today's month and day is more than 50 years in the future.
TEST(RetryAfter, Rfc850FiftyYearWindowComparesWholeDates) {
  using std::chrono::days, std::chrono::floor, std::chrono::year, std::chrono::year_month_day;
  const auto now = std::chrono::sys_days{year{2026} / 6 / 1} + std::chrono::hours{12};
  const auto july = backoff::http::parse_http_date("Wednesday, 01-Jul-76 00:00:00 GMT", now);
  const auto may = backoff::http::parse_http_date("Friday, 01-May-76 00:00:00 GMT", now);
  ASSERT_TRUE(july && may);
  EXPECT_EQ(year_month_day{floor<days>(*july)}.year(), year{1976});
  EXPECT_EQ(year_month_day{floor<days>(*may)}.year(), year{2076});
  // The same day, an hour later than now: past the limit.
  const auto later = backoff::http::parse_http_date("Monday, 01-Jun-76 13:00:00 GMT", now);
  EXPECT_EQ(year_month_day{floor<days>(*later)}.year(), year{1976});
}

// The window's edge, to the second (issue 25): exactly 50 years ahead is not
// "more than 50 years in the future" and stays ahead; one second more is.
TEST(RetryAfter, Rfc850ExactlyFiftyYearsAheadStaysInTheFuture) {
  using std::chrono::days, std::chrono::floor, std::chrono::year, std::chrono::year_month_day;
  const auto now = std::chrono::sys_days{year{2026} / 6 / 1} + std::chrono::hours{12};
  const auto edge = backoff::http::parse_http_date("Monday, 01-Jun-76 12:00:00 GMT", now);
  const auto past = backoff::http::parse_http_date("Monday, 01-Jun-76 12:00:01 GMT", now);
  ASSERT_TRUE(edge && past);
  EXPECT_EQ(year_month_day{floor<days>(*edge)}.year(), year{2076});
  EXPECT_EQ(year_month_day{floor<days>(*past)}.year(), year{1976});
}

// Each month's last day parses and the day after it does not, in every form
// (a date past a month's end is a malformed header, not a date in the next
// month); 29 February only in a leap year (2000 yes, 2100 no, 2028 yes).
TEST(RetryAfter, EveryMonthEndsOnItsLastDay) {
  const char* names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const int last[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  for (int m = 0; m < 12; ++m) {
    for (const int d : {last[m], last[m] + 1}) {
      char imf[40], asc[40];
      std::snprintf(imf, sizeof imf, "Sun, %02d %s 2027 10:00:00 GMT", d, names[m]);
      std::snprintf(asc, sizeof asc, "Sun %s %2d 10:00:00 2027", names[m], d);
      const bool valid = d == last[m];
      EXPECT_EQ(backoff::http::parse_http_date(imf).has_value(), valid) << imf;
      EXPECT_EQ(backoff::http::parse_http_date(asc).has_value(), valid) << asc;
    }
  }
  EXPECT_TRUE(backoff::http::parse_http_date("Tue, 29 Feb 2000 10:00:00 GMT"));
  EXPECT_TRUE(backoff::http::parse_http_date("Tue, 29 Feb 2028 10:00:00 GMT"));
  EXPECT_FALSE(backoff::http::parse_http_date("Mon, 29 Feb 2100 10:00:00 GMT"));
  EXPECT_FALSE(backoff::http::parse_http_date("Sun, 29 Feb 2027 10:00:00 GMT"));
  EXPECT_FALSE(backoff::http::parse_http_date("Sun, 00 Jan 2027 10:00:00 GMT"));
}
