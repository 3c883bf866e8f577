// SPDX-License-Identifier: BSL-1.0
// backoff/http/digest.hpp — integrity fields a server sends with a body:
// RFC 9530's Repr-Digest (the whole representation, the same on a 200 and
// every 206) and Content-Digest (the bytes of this one message), and the
// obsolete RFC 3230 Digest that servers still send. Pure parsing, no hashing.
//
//   auto d = backoff::http::parse_digest_field("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:");
//   d->front().algorithm == "sha-256";  d->front().hex == "5f8f04f6a3a892aaabbddb6cf273894493773960d4a325b105fee46eef4304f1"
//   auto best = backoff::http::strongest(*d);               // sha-512 before sha-256; others ignored
//   backoff::http::want_repr_digest == "sha-256=10, sha-512=3"   // what a client asks for
//   backoff::http::base64_encode("foob") == "Zm9vYg=="
//
// Repr-Digest and Content-Digest are RFC 9651 dictionaries whose values are
// byte sequences (":base64:"); parameters are allowed and ignored. Following
// RFC 9651, a field that does not parse is ignored as a whole (nullopt), so
// that a garbled header never fails a download by itself; but a field that
// parses and disagrees with the bytes does. Digest (RFC 3230) is
// "ALGORITHM=base64" members, algorithm names in any case.
//
// Only sha-256 and sha-512 are used: RFC 9530 lists md5, sha, unixsum,
// unixcksum, adler and crc32c as insecure. Their members are parsed (a field
// carrying them is valid) but strongest() never picks them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace backoff::http {

struct digest {
  std::string algorithm{};  // lower case as sent: "sha-256", "sha-512", "md5", …
  std::string hex{};        // the digest's bytes in lower-case hex
};

// What a client sends to ask for Repr-Digest (RFC 9530 §4): SHA-256
// preferred, SHA-512 accepted.
inline constexpr std::string_view want_repr_digest = "sha-256=10, sha-512=3";

// Standard base64 (RFC 4648 §4) with its padding: how digest fields carry
// their bytes, and how Basic credentials are sent (RFC 7617).
inline std::string base64_encode(std::string_view bytes) {
  static constexpr char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t n = bytes.size() - i < 3 ? bytes.size() - i : 3;  // bytes in this group
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 3; ++k) v = v << 8 | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    for (std::size_t k = 0; k < 4; ++k) out += k <= n ? digits[(v >> (18 - 6 * k)) & 63] : '=';
  }
  return out;
}

namespace detail {

// Standard base64 (RFC 4648 §4) with its padding, to lower-case hex; nullopt
// for any other character, a wrong length or bits left over.
inline std::optional<std::string> base64_to_hex(std::string_view b64) {
  if (b64.empty() || b64.size() % 4 != 0) return std::nullopt;
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::size_t pad = 0;
  while (pad < 2 && b64[b64.size() - 1 - pad] == '=') ++pad;
  std::string bytes;
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < b64.size() - pad; ++i) {
    const int v = value(b64[i]);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;  // non-canonical: bits past the last byte
  static constexpr char hexdigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    hex.push_back(hexdigits[(static_cast<unsigned char>(c) >> 4) & 0xF]);
    hex.push_back(hexdigits[static_cast<unsigned char>(c) & 0xF]);
  }
  return hex;
}

inline void skip_ows(std::string_view& v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
}

// An RFC 9651 key: lcalpha or "*", then lcalpha, digits, "_", "-", ".", "*".
inline std::optional<std::string> take_key(std::string_view& v) {
  if (v.empty() || !((v.front() >= 'a' && v.front() <= 'z') || v.front() == '*')) return std::nullopt;
  std::size_t n = 0;
  while (n < v.size() && ((v[n] >= 'a' && v[n] <= 'z') || (v[n] >= '0' && v[n] <= '9') || v[n] == '_' ||
                          v[n] == '-' || v[n] == '.' || v[n] == '*'))
    ++n;
  std::string key(v.substr(0, n));
  v.remove_prefix(n);
  return key;
}

// Skips one bare item that is not a byte sequence (a parameter's value):
// a token, an integer or decimal, a string or a boolean. False when malformed.
inline bool skip_bare_item(std::string_view& v) {
  if (v.empty()) return false;
  if (v.front() == '"') {
    for (std::size_t i = 1; i < v.size(); ++i) {
      if (v[i] == '\\') {
        if (++i >= v.size() || (v[i] != '"' && v[i] != '\\')) return false;
      } else if (v[i] == '"') {
        v.remove_prefix(i + 1);
        return true;
      } else if (static_cast<unsigned char>(v[i]) < 0x20 || static_cast<unsigned char>(v[i]) > 0x7E) {
        return false;
      }
    }
    return false;
  }
  if (v.front() == '?') {
    if (v.size() < 2 || (v[1] != '0' && v[1] != '1')) return false;
    v.remove_prefix(2);
    return true;
  }
  if (v.front() == ':') {
    const auto end = v.find(':', 1);
    if (end == std::string_view::npos) return false;
    v.remove_prefix(end + 1);
    return true;
  }
  std::size_t n = 0;
  while (n < v.size() && v[n] != ';' && v[n] != ',' && v[n] != ' ' && v[n] != '\t') {
    const unsigned char c = static_cast<unsigned char>(v[n]);
    if (c <= 0x20 || c >= 0x7F || c == '"' || c == '(' || c == ')' || c == '=' || c == '{' || c == '}') return false;
    ++n;
  }
  if (n == 0) return false;
  v.remove_prefix(n);
  return true;
}

// ";key[=item]"…, skipped.
inline bool skip_parameters(std::string_view& v) {
  while (!v.empty() && v.front() == ';') {
    v.remove_prefix(1);
    skip_ows(v);
    if (!take_key(v)) return false;
    if (!v.empty() && v.front() == '=') {
      v.remove_prefix(1);
      if (!skip_bare_item(v)) return false;
    }
  }
  return true;
}

}  // namespace detail

// Repr-Digest or Content-Digest (RFC 9530 §2, §3): every member, in order.
// nullopt when the field is not a valid dictionary of byte sequences, or is
// empty. Several field lines are joined with ", " by the caller.
inline std::optional<std::vector<digest>> parse_digest_field(std::string_view value) {
  std::vector<digest> out;
  detail::skip_ows(value);
  while (!value.empty()) {
    auto key = detail::take_key(value);
    if (!key || value.empty() || value.front() != '=') return std::nullopt;
    value.remove_prefix(1);
    if (value.empty() || value.front() != ':') return std::nullopt;
    const auto end = value.find(':', 1);
    if (end == std::string_view::npos) return std::nullopt;
    auto hex = detail::base64_to_hex(value.substr(1, end - 1));
    if (!hex) return std::nullopt;
    value.remove_prefix(end + 1);
    if (!detail::skip_parameters(value)) return std::nullopt;
    // A later member with the same key replaces the earlier one (RFC 9651 §4.2.2).
    std::erase_if(out, [&](const digest& d) { return d.algorithm == *key; });
    out.push_back({std::move(*key), std::move(*hex)});
    detail::skip_ows(value);
    if (value.empty()) break;
    if (value.front() != ',') return std::nullopt;
    value.remove_prefix(1);
    detail::skip_ows(value);
    if (value.empty()) return std::nullopt;  // a trailing comma
  }
  if (out.empty()) return std::nullopt;
  return out;
}

// Digest (RFC 3230 §4.3.2, obsoleted by RFC 9530): "SHA-256=base64, MD5=…".
// Algorithm names are lowered; members that do not parse are skipped (the
// field has no strict grammar in practice), and nullopt means none did.
inline std::optional<std::vector<digest>> parse_legacy_digest(std::string_view value) {
  std::vector<digest> out;
  while (!value.empty()) {
    const auto comma = value.find(',');
    std::string_view member = value.substr(0, comma);
    value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
    detail::skip_ows(member);
    while (!member.empty() && (member.back() == ' ' || member.back() == '\t')) member.remove_suffix(1);
    const auto eq = member.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    std::string algorithm(member.substr(0, eq));
    for (char& c : algorithm) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    if (auto hex = detail::base64_to_hex(member.substr(eq + 1))) out.push_back({std::move(algorithm), std::move(*hex)});
  }
  if (out.empty()) return std::nullopt;
  return out;
}

// The member to verify: sha-512, else sha-256, with a digest of the right
// length; nullopt when there is none (insecure algorithms never count).
inline std::optional<digest> strongest(const std::vector<digest>& members) {
  for (const auto& [name, hex_size] : {std::pair<std::string_view, std::size_t>{"sha-512", 128}, {"sha-256", 64}})
    for (const auto& d : members)
      if (d.algorithm == name && d.hex.size() == hex_size) return d;
  return std::nullopt;
}

}  // namespace backoff::http
