// SPDX-License-Identifier: BSL-1.0
// The download rules of backoff/http/content_range.hpp and resume.hpp, with no network.
#include <gtest/gtest.h>

#include "backoff/http/content_range.hpp"
#include "backoff/http/resume.hpp"

using namespace backoff::http;

namespace {
using headers = std::vector<header>;
}

TEST(ContentRange, ParsesTheThreeParts) {
  const auto r = parse_content_range("bytes 100-199/1000");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 100u);
  EXPECT_EQ(r->last, 199u);
  EXPECT_EQ(r->complete, 1000u);
  EXPECT_EQ(r->length(), 100u);
  const auto star = parse_content_range("BYTES 0-0/*");
  ASSERT_TRUE(star);
  EXPECT_EQ(star->length(), 1u);
  EXPECT_FALSE(star->complete);
  const auto big = parse_content_range("bytes 0-18446744073709551614/18446744073709551615");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->last, 18446744073709551614u);
}

TEST(ContentRange, RejectsEverythingElse) {
  for (const char* bad : {"bytes 5garbage-10/20", "bytes 100-199/50", "bytes 100-199/199", "bytes 200-100/1000",
                          "bytes -1-5/9", "bytes +1-5/9", "bytes 1-5/9x", "bytes 1-5/", "bytes 1-/9", "bytes -5/9",
                          "bytes 1 -5/9", "bytes  1-5/9", "items 1-5/9", "bytes1-5/9", "bytes 1-5", "bytes */9",
                          "bytes 0-18446744073709551616/18446744073709551617", "", "bytes ", "bytes 1.0-5/9"}) {
    EXPECT_FALSE(parse_content_range(bad)) << bad;
  }
}

TEST(ContentRange, UnsatisfiedRangeOfA416) {
  EXPECT_EQ(parse_unsatisfied_range("bytes */1000"), 1000u);
  EXPECT_EQ(parse_unsatisfied_range(" bytes */0 "), 0u);
  for (const char* bad : {"bytes */", "bytes */x", "bytes 0-1/2", "bytes */-1", "*/10"})
    EXPECT_FALSE(parse_unsatisfied_range(bad)) << bad;
}

TEST(Validator, StrongETagThenLastModifiedNeverWeak) {
  EXPECT_EQ(if_range_validator({{"ETag", "\"a\""}, {"Last-Modified", "d"}}), "\"a\"");
  EXPECT_EQ(if_range_validator({{"etag", "W/\"a\""}, {"Last-Modified", "d"}}), "d");
  EXPECT_EQ(if_range_validator({{"ETag", "W/\"a\""}}), "");
  EXPECT_EQ(if_range_validator({}), "");
  EXPECT_TRUE(carries_validator({{"ETag", "\"a\""}}, "\"a\""));
  EXPECT_FALSE(carries_validator({{"ETag", "W/\"a\""}}, "\"a\""));
  EXPECT_FALSE(carries_validator({{"ETag", "\"b\""}}, "\"a\""));
  EXPECT_FALSE(carries_validator({{"Last-Modified", "\"a\""}}, "\"a\""));  // an ETag compares with ETag only
  EXPECT_TRUE(carries_validator({{"Last-Modified", "Mon, 02 Nov 2026 10:00:00 GMT"}}, "Mon, 02 Nov 2026 10:00:00 GMT"));
  EXPECT_FALSE(carries_validator({{"ETag", "\"a\""}}, ""));
  // An unquoted ETag (httpbin's "range102400"): the same tag is the same version, another tag is not.
  EXPECT_EQ(if_range_validator({{"ETag", "range102400"}}), "range102400");
  EXPECT_TRUE(carries_validator({{"ETag", "range102400"}}, "range102400"));
  EXPECT_FALSE(carries_validator({{"ETag", "range999"}}, "range102400"));
  EXPECT_FALSE(carries_validator({{"Last-Modified", "Mon, 02 Nov 2026 10:00:00 GMT"}, {"ETag", "x"}}, "y"));
  const range_request sent{.offset = 10, .validator = "range102400", .known_length = 100};
  EXPECT_EQ(decide_body(206, {{"ETag", "range102400"}, {"Content-Range", "bytes 10-99/100"}}, sent).action,
            body_action::append);
  EXPECT_EQ(decide_body(206, {{"ETag", "range7"}, {"Content-Range", "bytes 10-99/100"}}, sent).action,
            body_action::restart);
}

TEST(AnnouncedLength, ContentLengthUnlessChunked) {
  EXPECT_EQ(announced_length({{"Content-Length", "42"}}), 42u);
  EXPECT_FALSE(announced_length({{"Content-Length", "42"}, {"Transfer-Encoding", "chunked"}}));
  EXPECT_FALSE(announced_length({{"Content-Length", "4 2"}}));
  EXPECT_FALSE(announced_length({{"Content-Length", "-1"}}));
  EXPECT_FALSE(announced_length({}));
}

TEST(DecideBody, FullResponsesStartOverWhateverTheirSize) {
  for (int status : {200, 203}) {
    const auto d = decide_body(status, {{"Content-Length", "0"}}, {.offset = 500, .validator = "\"v1\""});
    EXPECT_EQ(d.action, body_action::start_over) << status;
    EXPECT_EQ(d.body_end, 0u);
  }
}

TEST(DecideBody, A206IsAppendedOnlyUnderTheSameValidatorAtTheSameOffset) {
  const range_request sent{.offset = 500, .validator = "\"v1\"", .known_length = 1000};
  const headers good{{"ETag", "\"v1\""}, {"Content-Range", "bytes 500-999/1000"}, {"Content-Length", "500"}};
  auto d = decide_body(206, good, sent);
  EXPECT_EQ(d.action, body_action::append);
  EXPECT_EQ(d.body_end, 1000u);
  EXPECT_EQ(d.complete, 1000u);

  const std::vector<headers> bad{
      {{"ETag", "\"v2\""}, {"Content-Range", "bytes 500-999/1000"}},                  // another version
      {{"Content-Range", "bytes 500-999/1000"}},                                    // no validator at all
      {{"ETag", "\"v1\""}, {"Content-Range", "bytes 400-999/1000"}},                  // wrong offset
      {{"ETag", "\"v1\""}, {"Content-Range", "bytes 500-1199/1200"}},                 // the length changed
      {{"ETag", "\"v1\""}, {"Content-Range", "bytes 500-999/1000"}, {"Content-Length", "499"}},
      {{"ETag", "\"v1\""}},                                                         // no Content-Range
      {{"ETag", "\"v1\""}, {"Content-Range", "bytes 500-999/1000"}, {"Content-Type", "multipart/byteranges; boundary=x"}},
      {{"ETag", "\"v1\""}, {"Content-Range", "bytes 500-999/1000"}, {"Content-Type", "multipart/byteranges"}},
      {{"ETag", "\"v1\""}, {"Content-Range", "bytes 500-999/1000"}, {"Content-Type", "Multipart/ByteRanges; boundary=x"}},
  };
  for (const auto& h : bad) {
    d = decide_body(206, h, sent);
    EXPECT_EQ(d.action, body_action::restart) << h.back().second;
    EXPECT_FALSE(d.why.empty());
  }
}

TEST(DecideBody, A206ThatStopsShortLeavesTheRestForLater) {
  const auto d = decide_body(206, {{"ETag", "\"v1\""}, {"Content-Range", "bytes 500-599/1000"}},
                             {.offset = 500, .validator = "\"v1\""});
  EXPECT_EQ(d.action, body_action::append);
  EXPECT_EQ(d.body_end, 600u);
  EXPECT_EQ(d.complete, 1000u);
}

TEST(DecideBody, A416CompletesOnlyWhatIsProvenComplete) {
  const range_request sent{.offset = 1000, .validator = "\"v1\""};
  EXPECT_EQ(decide_body(416, {{"ETag", "\"v1\""}, {"Content-Range", "bytes */1000"}}, sent).action, body_action::complete);
  EXPECT_EQ(decide_body(416, {{"ETag", "\"v2\""}, {"Content-Range", "bytes */1000"}}, sent).action, body_action::restart);
  EXPECT_EQ(decide_body(416, {{"Content-Range", "bytes */1000"}}, sent).action, body_action::restart);
  EXPECT_EQ(decide_body(416, {{"ETag", "\"v1\""}, {"Content-Range", "bytes */900"}}, sent).action, body_action::restart);
  EXPECT_EQ(decide_body(416, {{"ETag", "\"v1\""}}, {.offset = 1000, .validator = "\"v1\"", .known_length = 1000}).action,
            body_action::complete);
  EXPECT_EQ(decide_body(416, {{"Content-Range", "bytes */0"}}, {}).action, body_action::not_a_download);
}

TEST(DecideBody, OtherStatusesAreNotDownloads) {
  for (int status : {201, 202, 204, 205, 207, 226, 300, 301, 302, 304, 100}) {
    const auto d = decide_body(status, {}, {});
    EXPECT_EQ(d.action, body_action::not_a_download) << status;
    EXPECT_NE(d.why.find("HTTP " + std::to_string(status)), std::string::npos) << d.why;
  }
  for (int status : {400, 404, 429, 500, 503}) EXPECT_EQ(decide_body(status, {}, {}).action, body_action::classify);
}
