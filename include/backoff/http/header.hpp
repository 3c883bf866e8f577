// SPDX-License-Identifier: BSL-1.0
// backoff/http/header.hpp — response headers as name/value pairs, for the pure
// HTTP rules in this directory.
//
//   auto h = backoff::http::parse_header_line("Retry-After: 120\r\n");   // {"Retry-After", "120"}
//   backoff::http::find_header(headers, "retry-after");                    // names match in any case
//
// A header line is "name: value" (RFC 9110 §5): the name is a token (no blanks,
// no control characters), whitespace around the value is dropped. Anything else
// (a status line, a blank line, an obsolete folded continuation) is not a header.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace backoff::http {

using header = std::pair<std::string, std::string>;

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

// The value of the first header named `name`, if any.
inline std::optional<std::string_view> find_header(const std::vector<header>& headers, std::string_view name) {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return std::string_view{v};
  return std::nullopt;
}

// Every value of a field that may come in several lines, joined with ", "
// (RFC 9110 §5.3); empty when there is none.
inline std::string joined_header(const std::vector<header>& headers, std::string_view name) {
  std::string out;
  for (const auto& [k, v] : headers) {
    if (!iequals(k, name)) continue;
    if (!out.empty()) out += ", ";
    out += v;
  }
  return out;
}

// RFC 9110 §5.6.2 tchar.
constexpr bool is_token_char(char c) noexcept {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  for (const char t : std::string_view("!#$%&'*+-.^_`|~"))
    if (c == t) return true;
  return false;
}

// One header line as a stack hands it over, with or without its CRLF.
inline std::optional<header> parse_header_line(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  const std::string_view name = line.substr(0, colon);
  for (const char c : name)
    if (!is_token_char(c)) return std::nullopt;
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  return header{std::string(name), std::string(value)};
}

}  // namespace backoff::http
