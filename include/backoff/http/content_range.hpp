// SPDX-License-Identifier: BSL-1.0
// backoff/http/content_range.hpp — the Content-Range header of a 206 or a 416
// (RFC 9110 §14.4), parsed strictly.
//
//   auto r = backoff::http::parse_content_range("bytes 100-199/1000");
//   r->first == 100; r->last == 199; r->complete == 1000; r->length() == 100;
//   backoff::http::parse_unsatisfied_range("bytes */1000") == 1000;    // a 416's
//
// Strict means: the unit is "bytes" (any case), then one space, then digits only
// (no sign, no blanks, no fraction, nothing after), first <= last, and last <
// complete when the complete length is known ("*" when not). Anything else is
// nullopt: "bytes 5garbage-10/20", "bytes 100-199/50" and "bytes -1-5/9" are
// rejected, since a client that trusted them would write at the wrong offset.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string_view>

namespace backoff::http {

struct content_range {
  std::uint64_t first = 0;                  // offset of the first byte sent
  std::uint64_t last = 0;                   // offset of the last byte sent (inclusive)
  std::optional<std::uint64_t> complete{};  // the representation's length, if the server knows it

  std::uint64_t length() const noexcept { return last - first + 1; }
};

namespace detail {

inline std::string_view trim_ows(std::string_view v) noexcept {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// All of `v` as a decimal number: digits only, at least one, no overflow.
inline std::optional<std::uint64_t> whole_number(std::string_view v) noexcept {
  if (v.empty()) return std::nullopt;
  for (const char c : v)
    if (c < '0' || c > '9') return std::nullopt;
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || end != v.data() + v.size()) return std::nullopt;
  return n;
}

// Strips "bytes " (case-insensitive unit) from the front.
inline std::optional<std::string_view> after_bytes_unit(std::string_view v) noexcept {
  v = trim_ows(v);
  constexpr std::string_view unit = "bytes ";
  if (v.size() <= unit.size()) return std::nullopt;
  for (std::size_t i = 0; i + 1 < unit.size(); ++i) {
    const char c = v[i];
    if ((c | 0x20) != unit[i]) return std::nullopt;
  }
  if (v[unit.size() - 1] != ' ') return std::nullopt;
  return v.substr(unit.size());
}

}  // namespace detail

// "bytes FIRST-LAST/COMPLETE" or "bytes FIRST-LAST/*".
inline std::optional<content_range> parse_content_range(std::string_view v) noexcept {
  const auto rest = detail::after_bytes_unit(v);
  if (!rest) return std::nullopt;
  const auto dash = rest->find('-');
  const auto slash = rest->find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) return std::nullopt;
  const auto first = detail::whole_number(rest->substr(0, dash));
  const auto last = detail::whole_number(rest->substr(dash + 1, slash - dash - 1));
  if (!first || !last || *first > *last) return std::nullopt;
  content_range out{*first, *last, std::nullopt};
  const auto total = rest->substr(slash + 1);
  if (total == "*") return out;
  const auto complete = detail::whole_number(total);
  if (!complete || *last >= *complete) return std::nullopt;
  out.complete = *complete;
  return out;
}

// A 416's "bytes */COMPLETE": the representation's current length.
inline std::optional<std::uint64_t> parse_unsatisfied_range(std::string_view v) noexcept {
  const auto rest = detail::after_bytes_unit(v);
  if (!rest || !rest->starts_with("*/")) return std::nullopt;
  return detail::whole_number(rest->substr(2));
}

}  // namespace backoff::http
