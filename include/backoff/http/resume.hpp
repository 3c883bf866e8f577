// SPDX-License-Identifier: BSL-1.0
// backoff/http/resume.hpp — what a download may do with a response: the
// 200/206/416 rules of a resumable GET (RFC 9110 §13.1.5, §14, §15.3.7), with no
// HTTP stack attached.
//
//   range_request sent{.offset = 500, .validator = "\"v1\""};   // Range: bytes=500-, If-Range: "v1"
//   auto d = backoff::http::decide_body(206, response_headers, sent);
//   if (d.action == body_action::append) write_at(500, body);      // same version: continue
//   // start_over: a full 200/203: discard the 500 bytes, write from 0
//   // restart: this attempt fails; discard and ask for everything next time
//
// The rules, in order:
//   - A 200 or 203 carries the whole representation: discard what is held and
//     start over, whatever the body's size (an empty body is an empty file).
//   - A 206 is appended only when its Content-Range starts exactly at the bytes
//     held, its length agrees with Content-Length, its complete length agrees with
//     the one learned before, and it carries the very validator that If-Range sent
//     (strong comparison). Otherwise the bytes held are from another version:
//     restart. A multipart 206 is never appended (a single range was asked for).
//   - A 416 to a ranged request means we already hold every byte when the
//     server's "bytes */N" (or the length learned before) equals the bytes held
//     and the 416 carries the validator that was sent; otherwise the
//     representation changed: restart. A 416 without Range is permanent.
//   - Any other 1xx, 2xx or 3xx is not a download (201, 204, 226, an unfollowed
//     redirect, 304): permanent. 4xx and 5xx are left to the status classifier.
// A weak ETag (W/"…") never goes into If-Range; Last-Modified does when there is
// no strong ETag.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backoff/http/content_range.hpp"
#include "backoff/http/hint.hpp"

namespace backoff::http {

inline bool is_weak_etag(std::string_view etag) noexcept { return etag.starts_with("W/"); }

// The validator to send in If-Range when resuming this response later: its
// strong ETag, else its Last-Modified, else empty (the download cannot resume).
inline std::string if_range_validator(const std::vector<header>& headers) {
  if (const auto etag = find_header(headers, "ETag"); etag && !etag->empty() && !is_weak_etag(*etag))
    return std::string(*etag);
  if (const auto modified = find_header(headers, "Last-Modified"); modified && !modified->empty())
    return std::string(*modified);
  return {};
}

// Whether a response carries `sent` (an If-Range value) as its validator. An
// entity-tag compares with its ETag, a date with its Last-Modified; both exactly.
// An unquoted ETag (`ETag: range102400`, as httpbin sends; not RFC 9110's
// syntax) is accepted when the response repeats it exactly: the server uses it
// consistently, and a different tag still means another version.
inline bool carries_validator(const std::vector<header>& headers, std::string_view sent) noexcept {
  if (sent.empty()) return false;
  if (const auto etag = find_header(headers, "ETag"); etag && !is_weak_etag(*etag) && *etag == sent) return true;
  if (sent.front() == '"') return false;  // an entity-tag, and the ETag is not it
  const auto have = find_header(headers, "Last-Modified");
  return have && *have == sent;
}

// The body length the headers announce: Content-Length, unless the body is
// chunked (Transfer-Encoding) or the value is not one plain number.
inline std::optional<std::uint64_t> announced_length(const std::vector<header>& headers) noexcept {
  if (find_header(headers, "Transfer-Encoding")) return std::nullopt;
  const auto v = find_header(headers, "Content-Length");
  return v ? detail::whole_number(detail::trim_ows(*v)) : std::nullopt;
}

// What the attempt asked for.
struct range_request {
  std::uint64_t offset = 0;                     // bytes held; Range: bytes=offset- was sent when > 0
  std::string_view validator{};                 // what If-Range carried (never empty when offset > 0)
  std::optional<std::uint64_t> known_length{};  // the complete length learned earlier, if any
};

enum class body_action : std::uint8_t {
  append,      // write the body after the bytes held
  start_over,  // discard the bytes held, write the body from offset 0
  complete,    // nothing to write: every byte is already held
  restart,     // fail this attempt; discard the bytes held; the next one asks for everything
  not_a_download,  // permanent: this status carries no representation to save
  classify,    // 4xx/5xx: for the status classifier
};

struct body_decision {
  body_action action = body_action::classify;
  std::optional<std::uint64_t> body_end{};   // the file's size once this body is complete, if known
  std::optional<std::uint64_t> complete{};   // the representation's full length, if known
  std::string why{};                         // for restart and not_a_download
};

inline body_decision decide_body(int status, const std::vector<header>& headers, const range_request& sent) {
  body_decision d;
  const std::string code = "HTTP " + std::to_string(status);
  if (status == 200 || status == 203) {
    d.action = body_action::start_over;
    d.body_end = d.complete = announced_length(headers);
    return d;
  }
  if (status == 206) {
    d.action = body_action::restart;
    const auto cr_text = find_header(headers, "Content-Range");
    const auto cr = cr_text ? parse_content_range(*cr_text) : std::nullopt;
    const auto type = find_header(headers, "Content-Type");
    const auto length = announced_length(headers);
    // A media type's name is case-insensitive (RFC 9110, 8.3.1).
    if (type && type->size() >= 20 && iequals(std::string_view(*type).substr(0, 20), "multipart/byteranges")) {
      d.why = "HTTP 206 with several ranges (multipart/byteranges); a single range was asked for";
    } else if (!cr) {
      d.why = cr_text ? "HTTP 206 with an invalid Content-Range '" + std::string(*cr_text) + "'"
                      : "HTTP 206 without Content-Range";
    } else if (cr->first != sent.offset) {
      d.why = "HTTP 206 starts at byte " + std::to_string(cr->first) + ", not at byte " + std::to_string(sent.offset);
    } else if (length && *length != cr->length()) {
      d.why = "HTTP 206 Content-Length " + std::to_string(*length) + " disagrees with its Content-Range";
    } else if (sent.known_length && cr->complete && *cr->complete != *sent.known_length) {
      d.why = "the file's length changed from " + std::to_string(*sent.known_length) + " to " +
              std::to_string(*cr->complete) + " bytes";
    } else if (sent.offset > 0 && !carries_validator(headers, sent.validator)) {
      d.why = "HTTP 206 for another version of the file (If-Range was " + std::string(sent.validator) + ")";
    } else {
      d.action = body_action::append;
      d.body_end = cr->last + 1;
      d.complete = cr->complete ? cr->complete : sent.known_length;
    }
    return d;
  }
  if (status == 416) {
    if (sent.offset == 0) {
      d.action = body_action::not_a_download;
      d.why = code + " (Range Not Satisfiable) to a request without Range";
      return d;
    }
    const auto cr_text = find_header(headers, "Content-Range");
    std::optional<std::uint64_t> now = cr_text ? parse_unsatisfied_range(*cr_text) : std::nullopt;
    if (!now) now = sent.known_length;
    // Holding every byte is proven only under the same validator: a 416 of
    // another version with the same length must not complete the old one.
    if (now && *now == sent.offset && carries_validator(headers, sent.validator)) {
      d.action = body_action::complete;
      d.body_end = d.complete = now;
      return d;
    }
    d.action = body_action::restart;
    d.why = now ? code + ": the server's file is " + std::to_string(*now) + " bytes, of another or unknown version"
                : code + ": the range no longer fits the file";
    return d;
  }
  if (status >= 400) return d;  // classify
  d.action = body_action::not_a_download;
  if (status == 204 || status == 205) d.why = code + " has no body to save";
  else if (status == 304) d.why = code + " (Not Modified) has no body to save";
  else if (status >= 300) d.why = code + " is a redirect that was not followed";
  else d.why = code + " is not a download (expected 200, 203 or 206)";
  return d;
}

}  // namespace backoff::http
