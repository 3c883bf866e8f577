// SPDX-License-Identifier: BSL-1.0
// Quota headers in every dialect (backoff/http/ratelimit.hpp) and the RFC 9651
// structured fields under the IETF one (backoff/http/structured_field.hpp).
#include "backoff/http/ratelimit.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using namespace backoff::http;

namespace {

// 2026-12-01T00:00:00Z
const sys_time now{std::chrono::seconds{1796083200}};

}  // namespace

TEST(StructuredField, ListsOfItemsWithParameters) {
  const auto l = parse_sf_list(R"("default";r=50;t=30, tok;q=1.5, ?1, :aGk=:, @1700000000, -12, ("a" b);x)");
  ASSERT_TRUE(l);
  ASSERT_EQ(l->size(), 7u);
  EXPECT_EQ(l->at(0).item.as_string(), "default");
  EXPECT_EQ(l->at(0).param("r")->as_integer(), 50);
  EXPECT_EQ(l->at(0).param("t")->as_integer(), 30);
  EXPECT_EQ(l->at(1).item.as_string(), "tok");
  EXPECT_DOUBLE_EQ(*l->at(1).param("q")->as_number(), 1.5);
  EXPECT_EQ(std::get<bool>(l->at(2).item.value), true);
  EXPECT_EQ(std::get<sf_bytes>(l->at(3).item.value).base64, "aGk=");
  EXPECT_EQ(std::get<sf_date>(l->at(4).item.value).seconds, 1700000000);
  EXPECT_EQ(l->at(5).item.as_integer(), -12);
  EXPECT_TRUE(l->at(6).is_inner);
  ASSERT_EQ(l->at(6).inner.size(), 2u);
  EXPECT_EQ(l->at(6).inner[1].item.as_string(), "b");
  EXPECT_TRUE(l->at(6).param("x"));
  EXPECT_EQ(parse_sf_list("")->size(), 0u);
}

TEST(StructuredField, MalformedFieldsFailWhole) {
  for (const char* bad : {"1,", ",1", "1,,2", "\"open", "\"bad\\x\"", "1234567890123456", "1.2345", "1234567890123.5",
                          "a;B=1", "?2", ":not base64!:", "%\"display\"", "(1 2", "1 2", "\"\x01\""}) {
    EXPECT_FALSE(parse_sf_list(bad)) << bad;
  }
  EXPECT_TRUE(parse_sf_list("123456789012345"));   // 15 digits: the most
  EXPECT_TRUE(parse_sf_list("123456789012.123"));  // 12 + 3
}

TEST(StructuredField, DictionariesAndRepeatedKeys) {
  const auto d = parse_sf_dictionary("limit=10, remaining=5, reset=3, flag, limit=11");
  ASSERT_TRUE(d);
  ASSERT_EQ(d->size(), 4u);
  EXPECT_EQ(d->at(0).first, "limit");
  EXPECT_EQ(d->at(0).second.item.as_integer(), 11);  // the last value wins, in the first place
  EXPECT_EQ(std::get<bool>(d->at(3).second.item.value), true);
  EXPECT_FALSE(parse_sf_dictionary("Limit=10"));
  EXPECT_FALSE(parse_sf_dictionary("limit=10,"));
}

TEST(Quota, IetfDraftElevenWithItsPolicy) {
  const auto q = parse_quota({{"RateLimit", R"("burst";r=0;t=12)"},
                              {"RateLimit-Policy", R"("day";q=1000;w=86400, "burst";q=100;w=60)"}},
                             now);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->dialect, "ietf");
  EXPECT_EQ(q->remaining, 0u);
  EXPECT_EQ(q->reset, 12s);
  EXPECT_EQ(q->limit, 100u);  // the policy of the same name, not the first
  EXPECT_EQ(q->window, 60s);
}

TEST(Quota, TheEarlierDictionaryAndTheSeparateFields) {
  const auto d = parse_quota({{"RateLimit", "limit=10, remaining=5, reset=3"}}, now);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->dialect, "ietf-dictionary");
  EXPECT_EQ(d->limit, 10u);
  EXPECT_EQ(d->remaining, 5u);
  EXPECT_EQ(d->reset, 3s);
  const auto s = parse_quota({{"RateLimit-Limit", "100, 100;w=60"}, {"RateLimit-Remaining", "7"}, {"RateLimit-Reset", "20"}}, now);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->dialect, "ratelimit");
  EXPECT_EQ(s->limit, 100u);
  EXPECT_EQ(s->remaining, 7u);
  EXPECT_EQ(s->reset, 20s);
}

TEST(Quota, XRateLimitResetIsATimestampFromTenToTheNinth) {
  // GitHub: an epoch timestamp, 42 s from now.
  const auto g = parse_quota({{"X-RateLimit-Limit", "5000"}, {"X-RateLimit-Remaining", "0"},
                              {"X-RateLimit-Reset", std::to_string(1796083200 + 42)}},
                             now);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->dialect, "x-ratelimit");
  EXPECT_EQ(g->remaining, 0u);
  EXPECT_EQ(g->reset, 42s);
  // The boundary: 10^9 - 1 is a delay (clamped to an hour), 10^9 a timestamp (long past: 0).
  const auto delay = parse_quota({{"X-RateLimit-Remaining", "1"}, {"X-RateLimit-Reset", "999999999"}}, now);
  EXPECT_EQ(delay->reset, 1h);
  const auto past = parse_quota({{"X-RateLimit-Remaining", "1"}, {"X-RateLimit-Reset", "1000000000"}}, now);
  EXPECT_EQ(past->reset, 0ms);
  const auto small = parse_quota({{"X-RateLimit-Remaining", "1"}, {"X-RateLimit-Reset", "30"}}, now);
  EXPECT_EQ(small->reset, 30s);
  // Reset-After wins, with a fraction; Used gives Remaining.
  const auto after = parse_quota({{"X-RateLimit-Limit", "60"}, {"X-RateLimit-Used", "61"},
                                  {"X-RateLimit-Reset", "30"}, {"X-RateLimit-Reset-After", "1.25"}},
                                 now);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->remaining, 0u);
  EXPECT_EQ(after->reset, 1250ms);
}

TEST(Quota, OpenAiDurations) {
  const auto q = parse_quota({{"x-ratelimit-limit-requests", "60"}, {"x-ratelimit-remaining-requests", "59"},
                              {"x-ratelimit-reset-requests", "6m0s"}},
                             now);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->dialect, "openai");
  EXPECT_EQ(q->remaining, 59u);
  EXPECT_EQ(q->reset, 360s);
  EXPECT_EQ(parse_go_duration("1s"), 1s);
  EXPECT_EQ(parse_go_duration("12ms"), 12ms);
  EXPECT_EQ(parse_go_duration("1h2m3.5s"), 3723500ms);
  EXPECT_EQ(parse_go_duration("0"), 0ns);
  EXPECT_EQ(parse_go_duration("20\xC2\xB5s"), 20us);
  for (const char* bad : {"", "5", "-1s", "1x", "s", "1.5", "25h", "1m-1s"}) EXPECT_FALSE(parse_go_duration(bad)) << bad;
}

TEST(Quota, MalformedOrMissingIsIgnoredAndResetsAreClamped) {
  EXPECT_FALSE(parse_quota({}, now));
  EXPECT_FALSE(parse_quota({{"RateLimit", "garbage;;"}}, now));
  EXPECT_FALSE(parse_quota({{"X-RateLimit-Remaining", "-3"}}, now));
  EXPECT_FALSE(parse_quota({{"X-RateLimit-Remaining", "lots"}}, now));
  // A broken IETF field falls through to a dialect that parses.
  const auto q = parse_quota({{"RateLimit", "\"open"}, {"X-RateLimit-Remaining", "3"}}, now);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->dialect, "x-ratelimit");
  const auto far = parse_quota({{"RateLimit", R"("d";r=1;t=999999)"}}, now, 10min);
  EXPECT_EQ(far->reset, 10min);
}

TEST(Pushback, AwsAndGrpc) {
  EXPECT_EQ(parse_pushback({{"x-amz-retry-after", "1500"}})->wait, 1500ms);
  const auto stop = parse_pushback({{"grpc-retry-pushback-ms", "-1"}});
  ASSERT_TRUE(stop);
  EXPECT_TRUE(stop->do_not_retry);
  EXPECT_FALSE(stop->wait);
  EXPECT_EQ(parse_pushback({{"grpc-retry-pushback-ms", "250"}, {"x-amz-retry-after", "9"}})->wait, 250ms);
  EXPECT_FALSE(parse_pushback({{"x-amz-retry-after", "-5"}}));
  EXPECT_FALSE(parse_pushback({{"x-amz-retry-after", "soon"}}));
  EXPECT_FALSE(parse_pushback({}));
}
