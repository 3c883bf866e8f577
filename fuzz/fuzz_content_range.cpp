// SPDX-License-Identifier: BSL-1.0
// Content-Range of 206 and 416 replies, and the whole resume decision, from
// hostile servers. Properties: a parsed range is ordered and inside its
// complete length and survives being written back; an append never moves
// backwards, never past the complete length, and only under the validator sent.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "backoff/http/content_range.hpp"
#include "backoff/http/header.hpp"
#include "backoff/http/resume.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "property violated: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace backoff::http;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (const auto r = parse_content_range(text)) {
    if (r->first > r->last) fail("first > last");
    if (r->complete && r->last >= *r->complete) fail("last >= complete");
    const std::string back = "bytes " + std::to_string(r->first) + "-" + std::to_string(r->last) + "/" +
                             (r->complete ? std::to_string(*r->complete) : std::string("*"));
    const auto again = parse_content_range(back);
    if (!again || again->first != r->first || again->last != r->last || again->complete != r->complete)
      fail("a Content-Range does not survive being written back");
  }
  (void)parse_unsatisfied_range(text);

  // The input as a response: the first two bytes pick the status and the
  // offset held; the rest are header lines.
  if (size < 2) return 0;
  const int statuses[] = {200, 203, 206, 416, 204, 304, 404, 503};
  const int status = statuses[data[0] % 8];
  std::vector<header> headers;
  std::string_view rest = text.substr(2);
  while (!rest.empty()) {
    const auto nl = rest.find('\n');
    if (auto h = parse_header_line(rest.substr(0, nl))) {
      if (h->first.empty() || h->first.find_first_of(" \t:") != std::string::npos) fail("a header name with a blank or colon");
      headers.push_back(std::move(*h));
    }
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  const std::uint64_t offset = data[1] % 4 == 0 ? 0 : std::uint64_t{data[1]} * 3;
  const range_request sent{offset, offset ? std::string_view("\"v1\"") : std::string_view(), std::nullopt};
  const auto d = decide_body(status, headers, sent);
  if (d.action == body_action::append) {
    if (status != 206) fail("append without a 206");
    if (!d.body_end || *d.body_end <= offset) fail("an append that does not move forward");
    if (d.complete && *d.body_end > *d.complete) fail("an append past the complete length");
    if (offset > 0 && !carries_validator(headers, "\"v1\"")) fail("an append under another validator");
  }
  if (d.action == body_action::complete && (status != 416 || offset == 0)) fail("complete without a ranged 416");
  if ((d.action == body_action::restart || d.action == body_action::not_a_download) && d.why.empty())
    fail("a refusal without a reason");
  return 0;
}
