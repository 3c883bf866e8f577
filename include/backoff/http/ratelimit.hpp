// SPDX-License-Identifier: BSL-1.0
// backoff/http/ratelimit.hpp — the quota a response announces, in every header
// dialect in use, as one value: how many requests are left and when the window
// resets. Pure functions; the quota gate paces with them.
//
//   auto q = backoff::http::parse_quota(headers, std::chrono::system_clock::now());
//   if (q && q->remaining == 0) wait(*q->reset);           // spent: the window resets in *reset
//   backoff::http::parse_go_duration("6m0s");              // 360 s (OpenAI's x-ratelimit-reset-*)
//   backoff::http::parse_pushback(headers);                 // x-amz-retry-after, grpc-retry-pushback-ms
//
// Dialects, the first one present wins:
//   1. IETF draft-ietf-httpapi-ratelimit-headers-11 (structured fields, RFC 9651):
//        RateLimit: "default";r=50;t=30          remaining r, reset in t seconds
//        RateLimit-Policy: "default";q=100;w=60  quota q per window of w seconds (the
//                                                policy of the same name, else the first)
//   2. the draft's earlier dictionary: RateLimit: limit=10, remaining=5, reset=3
//   3. RateLimit-Limit / RateLimit-Remaining / RateLimit-Reset (drafts -00 to -06;
//      Reset in delta seconds; "100, 100;w=60" takes the first number)
//   4. X-RateLimit-Limit / -Remaining / -Reset / -Used / -Reset-After (GitHub, GitLab,
//      Twitter, many others). X-RateLimit-Reset is an epoch timestamp for some
//      (GitHub, GitLab) and delta seconds for others: a value of at least 10^9
//      (2001-09-09 as a timestamp; 31 years as a delay) is a timestamp, anything
//      smaller a delay. -Reset-After (delta seconds) wins over -Reset. Remaining
//      absent but Limit and Used present: Limit − Used.
//   5. OpenAI: x-ratelimit-limit-requests / -remaining-requests / -reset-requests,
//      the reset as a Go duration ("1s", "6m0s", "12ms").
// Malformed values are ignored, field by field (a header that does not parse
// counts as absent). Resets in the past are 0; every reset is clamped to
// `max_reset` (default 1 h), as hints are. Retry-After keeps precedence over
// all of these (backoff/http/hint.hpp); these say what is left, it says when to come back.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backoff/quota.hpp"
#include "backoff/http/header.hpp"
#include "backoff/http/retry_after.hpp"
#include "backoff/http/structured_field.hpp"

namespace backoff::http {

struct quota {
  std::optional<std::uint64_t> limit{};      // per window
  std::optional<std::uint64_t> remaining{};  // left in this window
  std::optional<std::chrono::milliseconds> reset{};   // until this window ends
  std::optional<std::chrono::seconds> window{};       // the policy's window
  std::string dialect{};  // "ietf", "ietf-dictionary", "ratelimit", "x-ratelimit", "openai"
};

// A Go duration: a sequence of decimal numbers, each with a unit (h, m, s, ms,
// us or µs, ns), as in "1h2m3.5s"; "0" alone is zero. nullopt for anything
// else: a sign, no unit, an unknown unit, or more than a day in total.
inline std::optional<std::chrono::nanoseconds> parse_go_duration(std::string_view v) {
  v = detail::trim(v);
  if (v == "0") return std::chrono::nanoseconds{0};
  if (v.empty()) return std::nullopt;
  long double total = 0;  // nanoseconds
  std::size_t i = 0;
  while (i < v.size()) {
    const std::size_t start = i;
    long double number = 0;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') number = number * 10 + (v[i++] - '0');
    if (i < v.size() && v[i] == '.') {
      ++i;
      long double scale = 0.1L;
      const std::size_t frac_start = i;
      while (i < v.size() && v[i] >= '0' && v[i] <= '9') {
        number += (v[i++] - '0') * scale;
        scale /= 10;
      }
      if (i == frac_start && i - 1 == start) return std::nullopt;  // "." alone
    }
    if (i == start) return std::nullopt;  // no number
    long double unit = 0;
    if (v.substr(i).starts_with("ns")) unit = 1, i += 2;
    else if (v.substr(i).starts_with("us")) unit = 1e3L, i += 2;
    else if (v.substr(i).starts_with("\xC2\xB5s")) unit = 1e3L, i += 3;  // µs
    else if (v.substr(i).starts_with("ms")) unit = 1e6L, i += 2;
    else if (v.substr(i).starts_with("s")) unit = 1e9L, i += 1;
    else if (v.substr(i).starts_with("m")) unit = 60e9L, i += 1;
    else if (v.substr(i).starts_with("h")) unit = 3600e9L, i += 1;
    else return std::nullopt;
    total += number * unit;
    if (total > 86400e9L) return std::nullopt;
  }
  return std::chrono::nanoseconds{static_cast<std::int64_t>(total)};
}

// What AWS and gRPC servers ask of a retry: x-amz-retry-after (milliseconds)
// and grpc-retry-pushback-ms (milliseconds; a negative value means "do not
// retry", gRPC A6).
struct pushback {
  std::optional<std::chrono::milliseconds> wait{};
  bool do_not_retry = false;
};

inline std::optional<pushback> parse_pushback(const std::vector<header>& headers) {
  auto integer = [](std::string_view v) -> std::optional<std::int64_t> {
    v = detail::trim(v);
    bool negative = false;
    if (!v.empty() && v.front() == '-') {
      negative = true;
      v.remove_prefix(1);
    }
    if (v.empty() || v.size() > 15) return std::nullopt;
    std::int64_t n = 0;
    for (char c : v) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + (c - '0');
    }
    return negative ? -n : n;
  };
  if (const auto g = find_header(headers, "grpc-retry-pushback-ms")) {
    if (const auto n = integer(*g)) {
      pushback p;
      if (*n < 0) p.do_not_retry = true;
      else p.wait = std::chrono::milliseconds{*n};
      return p;
    }
  }
  if (const auto a = find_header(headers, "x-amz-retry-after")) {
    if (const auto n = integer(*a); n && *n >= 0) return pushback{std::chrono::milliseconds{*n}, false};
  }
  return std::nullopt;
}

namespace detail {

inline std::optional<std::uint64_t> quota_count(std::string_view v) {
  // A plain number, or the first member of a list ("100, 100;w=60").
  if (const auto l = parse_sf_list(v); l && !l->empty() && !l->front().is_inner) {
    if (const auto n = l->front().item.as_integer(); n && *n >= 0) return static_cast<std::uint64_t>(*n);
  }
  return std::nullopt;
}

inline std::optional<std::chrono::milliseconds> seconds_value(std::string_view v) {
  v = trim(v);
  if (v.empty() || v.size() > 20) return std::nullopt;
  std::int64_t whole = 0;
  std::size_t i = 0;
  for (; i < v.size() && v[i] >= '0' && v[i] <= '9'; ++i) whole = whole * 10 + (v[i] - '0');
  if (i == 0) return std::nullopt;
  std::int64_t ms = 0;
  if (i < v.size()) {  // a fraction: "1.25"
    if (v[i] != '.' || i + 1 == v.size()) return std::nullopt;
    std::int64_t scale = 100;
    for (++i; i < v.size(); ++i) {
      if (v[i] < '0' || v[i] > '9') return std::nullopt;
      ms += (v[i] - '0') * scale;
      scale /= 10;
    }
  }
  if (whole > 1'000'000'000'000LL) return std::nullopt;
  return std::chrono::milliseconds{whole * 1000 + ms};
}

inline std::chrono::milliseconds clamp_reset(std::chrono::milliseconds d, std::chrono::milliseconds max) {
  return std::clamp(d, std::chrono::milliseconds{0}, max);
}

}  // namespace detail

// Epoch values from here on are timestamps (see the top of this header).
inline constexpr std::int64_t epoch_threshold_seconds = 1'000'000'000;

inline std::optional<quota> parse_quota(const std::vector<header>& headers, sys_time now,
                                        std::chrono::milliseconds max_reset = std::chrono::hours{1}) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  const std::string ratelimit = joined_header(headers, "RateLimit");
  // 1. IETF, structured: RateLimit: "name";r=…;t=…
  if (!ratelimit.empty()) {
    if (const auto l = parse_sf_list(ratelimit); l && !l->empty() && !l->front().is_inner &&
                                                 l->front().item.as_string() && l->front().param("r")) {
      const sf_member& m = l->front();
      quota q;
      q.dialect = "ietf";
      if (const auto r = m.param("r")->as_integer(); r && *r >= 0) q.remaining = static_cast<std::uint64_t>(*r);
      if (const auto* t = m.param("t"))
        if (const auto s = t->as_integer(); s && *s >= 0) q.reset = detail::clamp_reset(seconds{*s}, max_reset);
      const std::string name = *m.item.as_string();
      if (const auto p = parse_sf_list(joined_header(headers, "RateLimit-Policy")); p && !p->empty()) {
        const sf_member* policy = &p->front();
        for (const auto& x : *p)
          if (x.item.as_string() == name) policy = &x;
        if (const auto* qv = policy->param("q"))
          if (const auto n = qv->as_integer(); n && *n >= 0) q.limit = static_cast<std::uint64_t>(*n);
        if (const auto* w = policy->param("w"))
          if (const auto n = w->as_integer(); n && *n > 0) q.window = seconds{*n};
      }
      if (q.remaining) return q;
    }
    // 2. The earlier dictionary: RateLimit: limit=…, remaining=…, reset=…
    if (const auto d = parse_sf_dictionary(ratelimit)) {
      quota q;
      q.dialect = "ietf-dictionary";
      for (const auto& [k, v] : *d) {
        const auto n = v.item.as_integer();
        if (!n || *n < 0) continue;
        if (k == "limit") q.limit = static_cast<std::uint64_t>(*n);
        else if (k == "remaining") q.remaining = static_cast<std::uint64_t>(*n);
        else if (k == "reset") q.reset = detail::clamp_reset(seconds{*n}, max_reset);
      }
      if (q.remaining) return q;
    }
  }
  // 3. RateLimit-Limit / -Remaining / -Reset
  if (const auto r = find_header(headers, "RateLimit-Remaining")) {
    if (const auto n = detail::quota_count(*r)) {
      quota q;
      q.dialect = "ratelimit";
      q.remaining = n;
      if (const auto l = find_header(headers, "RateLimit-Limit")) q.limit = detail::quota_count(*l);
      if (const auto t = find_header(headers, "RateLimit-Reset"))
        if (const auto d = parse_delta_seconds(*t)) q.reset = detail::clamp_reset(seconds{*d}, max_reset);
      return q;
    }
  }
  // 4. X-RateLimit-*
  {
    quota q;
    q.dialect = "x-ratelimit";
    if (const auto l = find_header(headers, "X-RateLimit-Limit")) q.limit = detail::quota_count(*l);
    if (const auto r = find_header(headers, "X-RateLimit-Remaining")) q.remaining = detail::quota_count(*r);
    if (!q.remaining && q.limit) {
      if (const auto u = find_header(headers, "X-RateLimit-Used"))
        if (const auto used = detail::quota_count(*u)) q.remaining = *q.limit > *used ? *q.limit - *used : 0;
    }
    if (const auto a = find_header(headers, "X-RateLimit-Reset-After")) {
      if (const auto d = detail::seconds_value(*a)) q.reset = detail::clamp_reset(*d, max_reset);
    }
    if (!q.reset) {
      if (const auto t = find_header(headers, "X-RateLimit-Reset")) {
        if (const auto d = detail::seconds_value(*t)) {
          if (*d >= seconds{epoch_threshold_seconds}) {
            const auto at = sys_time{std::chrono::duration_cast<sys_time::duration>(*d)};
            q.reset = detail::clamp_reset(std::chrono::ceil<milliseconds>(at - now), max_reset);
          } else {
            q.reset = detail::clamp_reset(*d, max_reset);
          }
        }
      }
    }
    if (q.remaining) return q;
  }
  // 5. OpenAI
  if (const auto r = find_header(headers, "x-ratelimit-remaining-requests")) {
    if (const auto n = detail::quota_count(*r)) {
      quota q;
      q.dialect = "openai";
      q.remaining = n;
      if (const auto l = find_header(headers, "x-ratelimit-limit-requests")) q.limit = detail::quota_count(*l);
      if (const auto t = find_header(headers, "x-ratelimit-reset-requests"))
        if (const auto d = parse_go_duration(*t))
          q.reset = detail::clamp_reset(std::chrono::ceil<milliseconds>(*d), max_reset);
      return q;
    }
  }
  return std::nullopt;
}

// What an answer with `status` and these headers tells a quota_pacer
// (backoff/quota.hpp): the quota in any dialect; a 429 empties the window,
// and its `retry_after` (the server's hint) is the reset when the answer
// announces none. nullopt when the answer says nothing of a quota.
inline std::optional<quota_notice> quota_notice_of(long status, const std::vector<header>& headers, sys_time now,
                                                   std::optional<duration> retry_after = std::nullopt,
                                                   std::chrono::milliseconds max_reset = std::chrono::hours{1}) {
  const auto q = parse_quota(headers, now, max_reset);
  if (!q && status != 429) return std::nullopt;
  quota_notice n;
  if (q) {
    n.remaining = q->remaining;
    n.limit = q->limit;
    if (q->reset) n.reset = std::chrono::duration_cast<duration>(*q->reset);
    if (q->window) n.window = std::chrono::duration_cast<duration>(*q->window);
  }
  if (status == 429) {
    n.exhausted = true;
    if (!n.reset && retry_after) n.reset = *retry_after;
  }
  return n;
}

}  // namespace backoff::http
