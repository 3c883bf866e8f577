// SPDX-License-Identifier: BSL-1.0
// backoff/http/structured_field.hpp — the parts of RFC 9651 (Structured Field
// Values for HTTP) that quota headers use: lists and dictionaries of items
// with parameters, where an item is an integer, decimal, string, token, byte
// sequence, boolean or date. Strict, as the RFC asks: anything malformed
// makes the whole field fail (nullopt), and the caller ignores the field.
//
//   auto l = backoff::http::parse_sf_list(R"("default";r=50;t=30)");
//   l->at(0).item.as_string();        // "default"
//   l->at(0).param("r")->as_integer(); // 50
//   auto d = backoff::http::parse_sf_dictionary("limit=10, remaining=5, reset=3");
//
// Not supported (the field fails): display strings (%"…"). Inner lists parse;
// their items are in `inner`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace backoff::http {

struct sf_token {
  std::string text;
  friend bool operator==(const sf_token&, const sf_token&) = default;
};
struct sf_bytes {
  std::string base64;  // as sent, not decoded
  friend bool operator==(const sf_bytes&, const sf_bytes&) = default;
};
struct sf_date {
  std::int64_t seconds = 0;  // since the epoch
  friend bool operator==(const sf_date&, const sf_date&) = default;
};

struct sf_bare {
  std::variant<std::int64_t, double, std::string, sf_token, sf_bytes, bool, sf_date> value;

  std::optional<std::int64_t> as_integer() const {
    if (const auto* i = std::get_if<std::int64_t>(&value)) return *i;
    return std::nullopt;
  }
  std::optional<double> as_number() const {
    if (const auto* i = std::get_if<std::int64_t>(&value)) return static_cast<double>(*i);
    if (const auto* d = std::get_if<double>(&value)) return *d;
    return std::nullopt;
  }
  // A string's or a token's text.
  std::optional<std::string> as_string() const {
    if (const auto* s = std::get_if<std::string>(&value)) return *s;
    if (const auto* t = std::get_if<sf_token>(&value)) return t->text;
    return std::nullopt;
  }
};

struct sf_member {
  sf_bare item{};                                        // for an inner list: unused (false)
  std::vector<std::pair<std::string, sf_bare>> params{};
  bool is_inner = false;
  std::vector<sf_member> inner{};                        // an inner list's items

  const sf_bare* param(std::string_view key) const {
    for (const auto& [k, v] : params)
      if (k == key) return &v;
    return nullptr;
  }
};

namespace detail::sf {

struct parser {
  std::string_view s;
  std::size_t i = 0;

  bool done() const { return i >= s.size(); }
  char peek() const { return done() ? '\0' : s[i]; }
  void skip_sp() {
    while (!done() && s[i] == ' ') ++i;
  }
  void skip_ows() {
    while (!done() && (s[i] == ' ' || s[i] == '\t')) ++i;
  }
  static bool lcalpha(char c) { return c >= 'a' && c <= 'z'; }
  static bool alpha(char c) { return lcalpha(c) || (c >= 'A' && c <= 'Z'); }
  static bool digit(char c) { return c >= '0' && c <= '9'; }
  static bool tchar(char c) {
    return alpha(c) || digit(c) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  }

  std::optional<std::string> key() {
    if (!(lcalpha(peek()) || peek() == '*')) return std::nullopt;
    std::string k;
    while (!done() && (lcalpha(s[i]) || digit(s[i]) || s[i] == '_' || s[i] == '-' || s[i] == '.' || s[i] == '*'))
      k += s[i++];
    return k;
  }

  // RFC 9651 §4.2.4: at most 15 integer digits; a decimal has at most 12
  // before the point and 1–3 after it.
  std::optional<sf_bare> number() {
    bool negative = false;
    if (peek() == '-') {
      negative = true;
      ++i;
    }
    if (!digit(peek())) return std::nullopt;
    std::string digits;
    bool decimal = false;
    std::size_t point = 0;
    while (!done()) {
      const char c = s[i];
      if (digit(c)) {
        digits += c;
      } else if (c == '.' && !decimal) {
        if (digits.size() > 12) return std::nullopt;
        decimal = true;
        point = digits.size();
      } else {
        break;
      }
      ++i;
      if (!decimal && digits.size() > 15) return std::nullopt;
      if (decimal && digits.size() > 15) return std::nullopt;
    }
    if (decimal) {
      const std::size_t frac = digits.size() - point;
      if (frac == 0 || frac > 3) return std::nullopt;
      double v = 0;
      for (char c : digits) v = v * 10 + (c - '0');
      for (std::size_t k = 0; k < frac; ++k) v /= 10;
      return sf_bare{negative ? -v : v};
    }
    std::int64_t v = 0;
    for (char c : digits) v = v * 10 + (c - '0');
    return sf_bare{negative ? -v : v};
  }

  std::optional<sf_bare> bare() {
    const char c = peek();
    if (c == '-' || digit(c)) return number();
    if (c == '"') {
      ++i;
      std::string out;
      while (!done()) {
        const char ch = s[i++];
        if (ch == '\\') {
          if (done() || (s[i] != '"' && s[i] != '\\')) return std::nullopt;
          out += s[i++];
        } else if (ch == '"') {
          return sf_bare{std::move(out)};
        } else if (static_cast<unsigned char>(ch) < 0x20 || static_cast<unsigned char>(ch) > 0x7e) {
          return std::nullopt;
        } else {
          out += ch;
        }
      }
      return std::nullopt;  // no closing quote
    }
    if (alpha(c) || c == '*') {
      std::string t;
      while (!done() && (tchar(s[i]) || s[i] == ':' || s[i] == '/')) t += s[i++];
      return sf_bare{sf_token{std::move(t)}};
    }
    if (c == ':') {
      ++i;
      std::string b;
      while (!done() && s[i] != ':') {
        const char ch = s[i++];
        if (!(alpha(ch) || digit(ch) || ch == '+' || ch == '/' || ch == '=')) return std::nullopt;
        b += ch;
      }
      if (done()) return std::nullopt;
      ++i;
      return sf_bare{sf_bytes{std::move(b)}};
    }
    if (c == '?') {
      ++i;
      if (peek() == '1' || peek() == '0') return sf_bare{s[i++] == '1'};
      return std::nullopt;
    }
    if (c == '@') {
      ++i;
      const auto n = number();
      if (!n || !n->as_integer()) return std::nullopt;
      return sf_bare{sf_date{*n->as_integer()}};
    }
    return std::nullopt;
  }

  bool params(std::vector<std::pair<std::string, sf_bare>>& out) {
    while (peek() == ';') {
      ++i;
      skip_sp();
      auto k = key();
      if (!k) return false;
      sf_bare v{true};
      if (peek() == '=') {
        ++i;
        auto b = bare();
        if (!b) return false;
        v = std::move(*b);
      }
      bool replaced = false;
      for (auto& [pk, pv] : out)
        if (pk == *k) {
          pv = v;  // a repeated key: the last value wins (RFC 9651 §4.2.3.2)
          replaced = true;
        }
      if (!replaced) out.emplace_back(std::move(*k), std::move(v));
    }
    return true;
  }

  std::optional<sf_member> item_or_inner() {
    sf_member m;
    if (peek() == '(') {
      ++i;
      m.is_inner = true;
      m.item = sf_bare{false};
      for (;;) {
        skip_sp();
        if (peek() == ')') {
          ++i;
          break;
        }
        sf_member x;
        auto b = bare();
        if (!b) return std::nullopt;
        x.item = std::move(*b);
        if (!params(x.params)) return std::nullopt;
        m.inner.push_back(std::move(x));
        if (peek() != ' ' && peek() != ')') return std::nullopt;
      }
    } else {
      auto b = bare();
      if (!b) return std::nullopt;
      m.item = std::move(*b);
    }
    if (!params(m.params)) return std::nullopt;
    return m;
  }

  // After a member: end, or a comma and another member.
  std::optional<bool> next() {
    skip_ows();
    if (done()) return false;
    if (peek() != ',') return std::nullopt;
    ++i;
    skip_ows();
    if (done()) return std::nullopt;  // a trailing comma
    return true;
  }
};

}  // namespace detail::sf

inline std::optional<std::vector<sf_member>> parse_sf_list(std::string_view field) {
  detail::sf::parser p{field};
  p.skip_sp();
  std::vector<sf_member> out;
  if (p.done()) return out;
  for (;;) {
    auto m = p.item_or_inner();
    if (!m) return std::nullopt;
    out.push_back(std::move(*m));
    const auto more = p.next();
    if (!more) return std::nullopt;
    if (!*more) return out;
  }
}

inline std::optional<std::vector<std::pair<std::string, sf_member>>> parse_sf_dictionary(std::string_view field) {
  detail::sf::parser p{field};
  p.skip_sp();
  std::vector<std::pair<std::string, sf_member>> out;
  if (p.done()) return out;
  for (;;) {
    auto k = p.key();
    if (!k) return std::nullopt;
    sf_member m;
    if (p.peek() == '=') {
      ++p.i;
      auto v = p.item_or_inner();
      if (!v) return std::nullopt;
      m = std::move(*v);
    } else {
      m.item = sf_bare{true};
      if (!p.params(m.params)) return std::nullopt;
    }
    bool replaced = false;
    for (auto& [dk, dv] : out)
      if (dk == *k) {
        dv = m;
        replaced = true;
      }
    if (!replaced) out.emplace_back(std::move(*k), std::move(m));
    const auto more = p.next();
    if (!more) return std::nullopt;
    if (!*more) return out;
  }
}

}  // namespace backoff::http
