// SPDX-License-Identifier: BSL-1.0
// backoff/http/segments.hpp — the rules of a segmented download, as values
// and pure functions: which extents of a file are done, where the next
// connection starts (work stealing), whether a first response allows
// splitting at all, and whether a segment's response may be written.
// No network, no files: the transfer code asks these what to fetch and tells
// them what arrived (see docs/downloads.md, "Segmented downloads").
//
//   backoff::http::extent_map done(1000);
//   done.add({0, 250});
//   done.missing();                                  // {{250, 1000}}
//   auto next = backoff::http::next_range(done, {{250, 1000}}, 100);
//   // next->range == {625, 1000}, next->steal_from == 0: the busy connection stops at 625
//   backoff::http::extent_map::parse(done.to_string(), 1000);   // what the metadata file keeps
//
// Extents are half-open byte ranges [begin, end). An extent_map never holds
// an extent past its length: add() clamps nothing and refuses such input, and
// parse() rejects a list that is unsorted, overlapping or too long (a stale
// state file must start over, never resume into nonsense: axel#380).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "backoff/http/content_range.hpp"
#include "backoff/http/header.hpp"
#include "backoff/http/resume.hpp"

namespace backoff::http {

struct extent {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;  // exclusive

  std::uint64_t size() const noexcept { return end > begin ? end - begin : 0; }
  bool empty() const noexcept { return end <= begin; }
  friend bool operator==(const extent&, const extent&) = default;
};

// Which bytes of a file of known length are written: sorted, disjoint,
// non-adjacent extents (adjacent ones are merged).
class extent_map {
 public:
  explicit extent_map(std::uint64_t length) : length_(length) {}

  std::uint64_t length() const noexcept { return length_; }
  const std::vector<extent>& done() const noexcept { return done_; }

  // Marks [e.begin, e.end) as written. Throws std::out_of_range when the
  // extent reaches past the length (a caller's bug: nothing from a server may
  // get here unchecked). An empty extent is ignored.
  void add(extent e) {
    if (e.end > length_ || e.begin > e.end) throw std::out_of_range("extent_map::add: extent past the file's length");
    if (e.empty()) return;
    auto it = std::lower_bound(done_.begin(), done_.end(), e.begin,
                               [](const extent& x, std::uint64_t b) { return x.end < b; });
    // `it` is the first extent that ends at or after e.begin: it and the ones
    // after it that start at or before e.end merge with e.
    auto last = it;
    while (last != done_.end() && last->begin <= e.end) {
      e.begin = std::min(e.begin, last->begin);
      e.end = std::max(e.end, last->end);
      ++last;
    }
    it = done_.erase(it, last);
    done_.insert(it, e);
  }

  std::uint64_t done_bytes() const noexcept {
    std::uint64_t n = 0;
    for (const auto& e : done_) n += e.size();
    return n;
  }
  bool complete() const noexcept { return done_bytes() == length_; }
  bool contains(std::uint64_t offset) const noexcept {
    for (const auto& e : done_)
      if (offset >= e.begin && offset < e.end) return true;
    return false;
  }

  // The gaps, in order.
  std::vector<extent> missing() const {
    std::vector<extent> out;
    std::uint64_t at = 0;
    for (const auto& e : done_) {
      if (e.begin > at) out.push_back({at, e.begin});
      at = e.end;
    }
    if (at < length_) out.push_back({at, length_});
    return out;
  }

  // "0-1048576,2097152-3000000" (half-open), "" when nothing is done.
  std::string to_string() const {
    std::string s;
    for (const auto& e : done_) {
      if (!s.empty()) s += ',';
      s += std::to_string(e.begin) + '-' + std::to_string(e.end);
    }
    return s;
  }

  // The inverse of to_string for a file of `length`; nullopt for anything that
  // is not sorted, disjoint, non-empty extents inside the length.
  static std::optional<extent_map> parse(std::string_view text, std::uint64_t length) {
    extent_map m(length);
    std::uint64_t previous_end = 0;
    bool first = true;
    while (!text.empty()) {
      const auto comma = text.find(',');
      const std::string_view item = text.substr(0, comma);
      text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
      if (comma != std::string_view::npos && text.empty()) return std::nullopt;
      const auto dash = item.find('-');
      if (dash == std::string_view::npos) return std::nullopt;
      const auto b = detail::whole_number(item.substr(0, dash));
      const auto e = detail::whole_number(item.substr(dash + 1));
      if (!b || !e || *b >= *e || *e > length) return std::nullopt;
      if (!first && *b <= previous_end) return std::nullopt;  // unsorted, overlapping or unmerged
      m.done_.push_back({*b, *e});
      previous_end = *e;
      first = false;
    }
    return m;
  }

 private:
  std::uint64_t length_;
  std::vector<extent> done_;
};

// Where a connection that is new or has finished its range goes next.
struct assignment {
  extent range{};                           // what to request
  std::optional<std::size_t> steal_from{};  // index into in_flight whose end becomes range.begin
};

// Picks the next range for a free connection, given what is done and what
// the busy connections are fetching (in_flight[i] = [its next byte, its end)):
//   1. the largest gap that no connection is fetching, whole;
//   2. else, work stealing: the busy range with the most bytes left, split at
//      its midpoint (its connection keeps the first half and stops at the
//      split), when that leaves both halves at least min_split bytes;
//   3. else nothing (nullopt): the rest is too small to be worth a connection.
// Ties go to the lowest offset, so that a file tends to fill from the front.
inline std::optional<assignment> next_range(const extent_map& done, std::span<const extent> in_flight,
                                            std::uint64_t min_split) {
  // The gaps minus what is being fetched.
  std::vector<extent> free = done.missing();
  for (const auto& busy : in_flight) {
    std::vector<extent> rest;
    for (const auto& g : free) {
      if (busy.end <= g.begin || busy.begin >= g.end) {
        rest.push_back(g);
        continue;
      }
      if (g.begin < busy.begin) rest.push_back({g.begin, busy.begin});
      if (busy.end < g.end) rest.push_back({busy.end, g.end});
    }
    free = std::move(rest);
  }
  const extent* best = nullptr;
  for (const auto& g : free)
    if (!g.empty() && (!best || g.size() > best->size())) best = &g;
  if (best) return assignment{*best, std::nullopt};

  std::optional<std::size_t> victim;
  for (std::size_t i = 0; i < in_flight.size(); ++i)
    if (!victim || in_flight[i].size() > in_flight[*victim].size()) victim = i;
  if (!victim) return std::nullopt;
  const extent v = in_flight[*victim];
  if (v.size() < 2 * min_split || min_split == 0) return std::nullopt;
  const std::uint64_t mid = v.begin + v.size() / 2;
  return assignment{{mid, v.end}, victim};
}

// Whether the connections a ramp-up round added paid off: `before`
// connections moved `rate_before` bytes/s, and with `added` more the total is
// `rate_after`. They did when the total rose by at least a quarter of what
// they would add at the old per-connection rate (doubling 4 → 8 must gain
// 25 %). RFC 6249 §7: add connections one step at a time and keep them only if
// the aggregate throughput rises.
inline bool connections_paid_off(double rate_before, double rate_after, unsigned before, unsigned added) {
  if (before == 0 || added == 0) return false;
  return rate_after >= rate_before * (1.0 + 0.25 * static_cast<double>(added) / static_cast<double>(before));
}

// Whether a free connection whose source moves `thief_rate` bytes/s per
// connection should take half of a busy range that moves at `victim_rate`: a
// connection less than half as fast would finish its half later than the busy
// one finishes the whole, so it waits instead. An unmeasured thief (0) may.
inline bool worth_stealing(double thief_rate, double victim_rate) {
  return thief_rate <= 0 || thief_rate * 2 >= victim_rate;
}

// Whether a first response lets the download split into ranges, and what a
// segment must then match. RFC 6249 §7 and Chromium's parallel download ask
// the same: ranges proven (a 206, or Accept-Ranges: bytes), a known length, a
// strong validator for If-Range, no content coding (ranges would address the
// coded bytes), and a file of at least two minimum segments.
struct split_decision {
  bool split = false;
  std::uint64_t length = 0;   // the representation's length
  std::string validator{};    // for If-Range on every segment
  std::string why_not{};      // when !split, for --report and tests
};

inline split_decision may_split(int status, const std::vector<header>& headers, std::uint64_t min_split) {
  split_decision d;
  std::optional<std::uint64_t> length;
  if (status == 206) {
    const auto cr = find_header(headers, "Content-Range");
    const auto r = cr ? parse_content_range(*cr) : std::nullopt;
    if (!r || !r->complete) {
      d.why_not = "the 206 has no valid Content-Range with a complete length";
      return d;
    }
    length = r->complete;
  } else if (status == 200) {
    const auto ar = find_header(headers, "Accept-Ranges");
    if (!ar || !iequals(detail::trim_ows(*ar), "bytes")) {
      d.why_not = "the server does not announce byte ranges";
      return d;
    }
    length = announced_length(headers);
  } else {
    d.why_not = "HTTP " + std::to_string(status) + " is not a file";
    return d;
  }
  if (!length) {
    d.why_not = "the length is unknown";
    return d;
  }
  if (const auto ce = find_header(headers, "Content-Encoding");
      ce && !ce->empty() && !iequals(detail::trim_ows(*ce), "identity")) {
    d.why_not = "the body has a content coding";
    return d;
  }
  d.length = *length;
  d.validator = if_range_validator(headers);
  if (d.validator.empty()) {
    d.why_not = "there is no strong validator for If-Range";
    return d;
  }
  if (min_split == 0 || d.length / 2 < min_split) {
    d.why_not = "the file is smaller than two segments";
    return d;
  }
  d.split = true;
  return d;
}

// What a segment's response means, for a request of `asked` under If-Range
// `validator` of a file of `length`.
enum class segment_verdict : std::uint8_t {
  write,           // 206 with exactly the range asked, the same validator and length: write at asked.begin
  changed,         // another validator (or a 200 with another one): the file changed; start over on one stream
  ranges_refused,  // a 200 under the same validator: this server ignores Range; continue on one stream
  lies,            // a wrong Content-Range, length or Content-Length: never write it; drop this source
  not_a_body,      // any other status: the retry step classifies it
};

inline segment_verdict check_segment(int status, const std::vector<header>& headers, extent asked,
                                     std::string_view validator, std::uint64_t length) {
  if (status == 200) return carries_validator(headers, validator) ? segment_verdict::ranges_refused : segment_verdict::changed;
  if (status != 206) return segment_verdict::not_a_body;
  if (!carries_validator(headers, validator)) return segment_verdict::changed;
  if (find_header(headers, "Content-Encoding")) return segment_verdict::lies;
  const auto cr = find_header(headers, "Content-Range");
  const auto r = cr ? parse_content_range(*cr) : std::nullopt;
  if (!r || r->first != asked.begin || r->last + 1 != asked.end || r->complete != length) return segment_verdict::lies;
  if (const auto n = announced_length(headers); n && *n != asked.size()) return segment_verdict::lies;
  return segment_verdict::write;
}

// What a mirror's reply to a range means. A mirror (RFC 6249: another
// location of the same file) has validators of its own, so its first range is
// asked without If-Range and its validator is learnt from that reply; later
// ranges carry it. Agreement is on the length (and, in the caller, on any
// digest): anything else means this mirror serves something else.
struct mirror_reply {
  segment_verdict verdict = segment_verdict::not_a_body;  // write, lies (drop the mirror), changed, not_a_body
  std::string validator{};  // the mirror's, for its next ranges
  std::string why{};        // when not write: why the mirror is dropped, for people
};

inline mirror_reply check_mirror_segment(int status, const std::vector<header>& headers, extent asked,
                                         std::string_view validator, std::uint64_t length) {
  mirror_reply m;
  if (status == 200) {
    m.verdict = segment_verdict::lies;
    m.why = "it answered a range with the whole file";
    return m;
  }
  if (status != 206) {
    m.why = "HTTP " + std::to_string(status);
    return m;
  }
  m.validator = validator.empty() ? if_range_validator(headers) : std::string(validator);
  if (!validator.empty() && !carries_validator(headers, validator)) {
    m.verdict = segment_verdict::changed;
    m.why = "its file changed (another validator)";
    return m;
  }
  m.verdict = segment_verdict::lies;
  if (find_header(headers, "Content-Encoding")) {
    m.why = "it applies a content coding";
    return m;
  }
  const auto cr = find_header(headers, "Content-Range");
  const auto r = cr ? parse_content_range(*cr) : std::nullopt;
  if (r && r->complete && *r->complete != length) {
    m.why = "its length is " + std::to_string(*r->complete) + " bytes, not " + std::to_string(length);
    return m;
  }
  if (!r || r->first != asked.begin || r->last + 1 != asked.end || r->complete != length) {
    m.why = "its Content-Range is not the range asked";
    return m;
  }
  if (const auto n = announced_length(headers); n && *n != asked.size()) {
    m.why = "its Content-Length is not the range's";
    return m;
  }
  m.verdict = segment_verdict::write;
  m.why.clear();
  return m;
}

// The mirrors a response names in `Link: <URI>; rel=duplicate` (RFC 6249
// §3), absolute http(s) URIs only, by their `pri` (lower first; none: last),
// in the order given among equals. Malformed members are skipped.
inline std::vector<std::string> duplicate_links(const std::vector<header>& headers) {
  struct found {
    std::string uri;
    std::uint64_t pri;
  };
  std::vector<found> out;
  for (const auto& h : headers) {
    if (!iequals(h.first, "Link")) continue;
    std::string_view v = h.second;
    while (true) {
      const auto open = v.find('<');
      if (open == std::string_view::npos) break;
      const auto close = v.find('>', open);
      if (close == std::string_view::npos) break;
      const std::string_view uri = v.substr(open + 1, close - open - 1);
      // The parameters run to the next comma outside quotes.
      std::size_t i = close + 1;
      bool quoted = false;
      while (i < v.size() && (quoted || v[i] != ',')) {
        if (v[i] == '"') quoted = !quoted;
        ++i;
      }
      const std::string_view params = v.substr(close + 1, i - close - 1);
      v = i < v.size() ? v.substr(i + 1) : std::string_view{};
      bool duplicate = false;
      std::uint64_t pri = UINT64_MAX;
      std::size_t p = 0;
      while (p < params.size()) {
        std::size_t semi = params.find(';', p);
        if (semi == std::string_view::npos) semi = params.size();
        std::string_view param = detail::trim_ows(params.substr(p, semi - p));
        p = semi + 1;
        const auto eq = param.find('=');
        if (eq == std::string_view::npos) continue;
        const std::string_view name = detail::trim_ows(param.substr(0, eq));
        std::string_view value = detail::trim_ows(param.substr(eq + 1));
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
        if (iequals(name, "rel")) {
          // rel may list several relation types, separated by spaces.
          std::size_t at = 0;
          while (at <= value.size()) {
            std::size_t sp = value.find(' ', at);
            if (sp == std::string_view::npos) sp = value.size();
            duplicate |= iequals(value.substr(at, sp - at), "duplicate");
            at = sp + 1;
          }
        } else if (iequals(name, "pri")) {
          if (const auto n = detail::whole_number(value)) pri = *n;
        }
      }
      const bool absolute = uri.starts_with("http://") || uri.starts_with("https://");
      const bool clean = uri.find_first_of(" \t\r\n\"") == std::string_view::npos;
      if (duplicate && absolute && clean) out.push_back({std::string(uri), pri});
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const found& a, const found& b) { return a.pri < b.pri; });
  std::vector<std::string> uris;
  for (auto& f : out) uris.push_back(std::move(f.uri));
  return uris;
}

}  // namespace backoff::http
