// SPDX-License-Identifier: BSL-1.0
#include "backoff/http/segments.hpp"

#include <gtest/gtest.h>

#include <random>

using namespace backoff::http;

TEST(ExtentMap, AddMergesOverlappingAndAdjacentExtents) {
  extent_map m(100);
  m.add({10, 20});
  m.add({30, 40});
  EXPECT_EQ(m.done(), (std::vector<extent>{{10, 20}, {30, 40}}));
  m.add({20, 30});  // adjacent on both sides: one extent
  EXPECT_EQ(m.done(), (std::vector<extent>{{10, 40}}));
  m.add({0, 5});
  m.add({3, 12});
  EXPECT_EQ(m.done(), (std::vector<extent>{{0, 40}}));
  m.add({50, 50});  // empty: nothing
  EXPECT_EQ(m.done_bytes(), 40u);
  EXPECT_EQ(m.missing(), (std::vector<extent>{{40, 100}}));
  EXPECT_FALSE(m.complete());
  m.add({40, 100});
  EXPECT_TRUE(m.complete());
  EXPECT_TRUE(m.missing().empty());
}

TEST(ExtentMap, AddRefusesAnExtentPastTheLength) {
  extent_map m(100);
  EXPECT_THROW(m.add({90, 101}), std::out_of_range);
  EXPECT_THROW(m.add({20, 10}), std::out_of_range);
  EXPECT_NO_THROW(m.add({90, 100}));
}

TEST(ExtentMap, AgreesWithAByteBitmapUnderRandomAdds) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    const std::uint64_t length = 1 + rng() % 300;
    extent_map m(length);
    std::vector<bool> bits(length);
    for (int k = 0; k < 12; ++k) {
      const std::uint64_t a = rng() % (length + 1), b = rng() % (length + 1);
      const extent e{std::min(a, b), std::max(a, b)};
      m.add(e);
      for (auto i = e.begin; i < e.end; ++i) bits[i] = true;
    }
    std::uint64_t count = 0;
    for (std::uint64_t i = 0; i < length; ++i) {
      count += bits[i];
      ASSERT_EQ(m.contains(i), bits[i]) << "round " << round << " byte " << i;
    }
    EXPECT_EQ(m.done_bytes(), count);
    for (std::size_t i = 1; i < m.done().size(); ++i) ASSERT_LT(m.done()[i - 1].end, m.done()[i].begin);
    std::uint64_t gaps = 0;
    for (const auto& g : m.missing()) gaps += g.size();
    EXPECT_EQ(gaps + count, length);
    const auto back = extent_map::parse(m.to_string(), length);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->done(), m.done());
  }
}

TEST(ExtentMap, ParseRejectsWhatAStaleOrForgedStateFileMightHold) {
  EXPECT_TRUE(extent_map::parse("", 10));
  EXPECT_TRUE(extent_map::parse("0-5,7-10", 10));
  for (const char* bad : {"0-11", "5-5", "6-5", "0-5,3-8", "7-10,0-5", "0-5,5-8", "0-5,", ",0-5", "a-5", "0-5x",
                          "-1-5", "0-18446744073709551616", "0:5", " 0-5"})
    EXPECT_FALSE(extent_map::parse(bad, 10)) << bad;
}

TEST(NextRange, TakesTheLargestFreeGapWhole) {
  extent_map m(1000);
  m.add({100, 200});
  m.add({600, 700});
  // Gaps: [0,100), [200,600), [700,1000). A connection is on [200,300).
  const std::vector<extent> busy{{200, 300}};
  const auto a = next_range(m, busy, 50);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->range, (extent{300, 600}));
  EXPECT_FALSE(a->steal_from);
}

TEST(NextRange, StealsTheSecondHalfOfTheLargestBusyRange) {
  extent_map m(1000);
  // Two connections busy, the bytes between them done: nothing is free, so steal.
  const std::vector<extent> busy{{0, 400}, {500, 1000}};
  m.add({400, 500});
  const auto a = next_range(m, busy, 100);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->steal_from, 1u);
  EXPECT_EQ(a->range, (extent{750, 1000}));
}

TEST(NextRange, LeavesRangesSmallerThanTwoMinimumSegments) {
  extent_map m(1000);
  const std::vector<extent> busy{{0, 199}};
  m.add({199, 1000});
  EXPECT_FALSE(next_range(m, busy, 100));
  const std::vector<extent> enough{{0, 200}};
  const auto a = next_range(m, enough, 100);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->range, (extent{100, 200}));
  EXPECT_FALSE(next_range(m, enough, 0)) << "a minimum of 0 never splits";
}

TEST(NextRange, AnEmptyFileOrADoneOneNeedsNothing) {
  EXPECT_FALSE(next_range(extent_map(0), {}, 1));
  extent_map m(10);
  m.add({0, 10});
  EXPECT_FALSE(next_range(m, {}, 1));
  const auto first = next_range(extent_map(10), {}, 1);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->range, (extent{0, 10}));
}

TEST(NextRange, ConnectionsThatKeepStealingCoverEveryByteOnce) {
  // Four connections fetch a file by repeated work stealing, each moving a
  // random number of bytes per step: every byte is written exactly once.
  std::mt19937_64 rng(11);
  const std::uint64_t length = 1'000'003;
  extent_map done(length);
  std::vector<int> written(length, 0);
  std::vector<extent> busy;
  for (int step = 0; step < 100000 && !done.complete(); ++step) {
    while (busy.size() < 4) {
      const auto a = next_range(done, busy, 1000);
      if (!a) break;
      if (a->steal_from) busy[*a->steal_from].end = a->range.begin;
      busy.push_back(a->range);
    }
    if (busy.empty()) break;
    const std::size_t i = rng() % busy.size();
    const std::uint64_t n = std::min<std::uint64_t>(busy[i].size(), 1 + rng() % 20000);
    for (auto b = busy[i].begin; b < busy[i].begin + n; ++b) ++written[b];
    done.add({busy[i].begin, busy[i].begin + n});
    busy[i].begin += n;
    if (busy[i].empty()) busy.erase(busy.begin() + static_cast<std::ptrdiff_t>(i));
  }
  // What is left below two minimum segments is finished by the connections that hold it.
  for (auto& b : busy) {
    for (auto x = b.begin; x < b.end; ++x) ++written[x];
    done.add(b);
  }
  EXPECT_TRUE(done.complete());
  for (std::uint64_t b = 0; b < length; ++b) ASSERT_EQ(written[b], 1) << "byte " << b;
}

TEST(MaySplit, NeedsRangesALengthAStrongValidatorAndSize) {
  const std::uint64_t min = 1 << 20;
  const std::string len = std::to_string(8u << 20);
  const auto yes = may_split(206, {{"Content-Range", "bytes 0-" + std::to_string((8u << 20) - 1) + "/" + len}, {"ETag", "\"v1\""}}, min);
  EXPECT_TRUE(yes.split) << yes.why_not;
  EXPECT_EQ(yes.length, 8u << 20);
  EXPECT_EQ(yes.validator, "\"v1\"");
  EXPECT_TRUE(may_split(200, {{"Accept-Ranges", "bytes"}, {"Content-Length", len}, {"Last-Modified", "Tue, 01 Dec 2026 00:00:00 GMT"}}, min).split);

  struct no_case {
    int status;
    std::vector<header> headers;
    const char* why;
  };
  const std::vector<no_case> cases{
      {200, {{"Content-Length", len}, {"ETag", "\"v1\""}}, "does not announce byte ranges"},
      {200, {{"Accept-Ranges", "none"}, {"Content-Length", len}, {"ETag", "\"v1\""}}, "does not announce byte ranges"},
      {200, {{"Accept-Ranges", "bytes"}, {"Transfer-Encoding", "chunked"}, {"ETag", "\"v1\""}}, "length is unknown"},
      {200, {{"Accept-Ranges", "bytes"}, {"Content-Length", len}, {"ETag", "W/\"v1\""}}, "no strong validator"},
      {200, {{"Accept-Ranges", "bytes"}, {"Content-Length", len}, {"ETag", "\"v1\""}, {"Content-Encoding", "gzip"}}, "content coding"},
      {200, {{"Accept-Ranges", "bytes"}, {"Content-Length", "2097151"}, {"ETag", "\"v1\""}}, "smaller than two segments"},
      {206, {{"Content-Range", "bytes 0-9/*"}, {"ETag", "\"v1\""}}, "no valid Content-Range"},
      {203, {{"Accept-Ranges", "bytes"}, {"Content-Length", len}, {"ETag", "\"v1\""}}, "is not a file"},
  };
  for (const auto& c : cases) {
    const auto d = may_split(c.status, c.headers, min);
    EXPECT_FALSE(d.split) << c.why;
    EXPECT_NE(d.why_not.find(c.why), std::string::npos) << d.why_not;
  }
  EXPECT_TRUE(may_split(200, {{"Accept-Ranges", "bytes"}, {"Content-Length", "2097152"}, {"ETag", "\"v1\""}}, min).split);
}

TEST(CheckSegment, WritesOnlyTheExactRangeUnderTheSameValidator) {
  const extent asked{100, 200};
  auto reply = [](std::string range, std::string etag, std::string length = "100") {
    return std::vector<header>{{"Content-Range", std::move(range)}, {"ETag", std::move(etag)}, {"Content-Length", std::move(length)}};
  };
  EXPECT_EQ(check_segment(206, reply("bytes 100-199/1000", "\"v1\""), asked, "\"v1\"", 1000), segment_verdict::write);
  EXPECT_EQ(check_segment(206, reply("bytes 100-199/1000", "\"v2\""), asked, "\"v1\"", 1000), segment_verdict::changed);
  EXPECT_EQ(check_segment(206, reply("bytes 100-198/1000", "\"v1\"", "99"), asked, "\"v1\"", 1000), segment_verdict::lies);
  EXPECT_EQ(check_segment(206, reply("bytes 0-99/1000", "\"v1\""), asked, "\"v1\"", 1000), segment_verdict::lies);
  EXPECT_EQ(check_segment(206, reply("bytes 100-199/1001", "\"v1\""), asked, "\"v1\"", 1000), segment_verdict::lies);
  EXPECT_EQ(check_segment(206, reply("bytes 100-199/1000", "\"v1\"", "150"), asked, "\"v1\"", 1000), segment_verdict::lies);
  EXPECT_EQ(check_segment(206, {{"ETag", "\"v1\""}}, asked, "\"v1\"", 1000), segment_verdict::lies);
  // Chunked, so no Content-Length to catch it: the range alone must be exact.
  EXPECT_EQ(check_segment(206, {{"Content-Range", "bytes 100-149/1000"}, {"ETag", "\"v1\""}, {"Transfer-Encoding", "chunked"}},
                          asked, "\"v1\"", 1000),
            segment_verdict::lies);
  EXPECT_EQ(check_segment(200, {{"ETag", "\"v1\""}}, asked, "\"v1\"", 1000), segment_verdict::ranges_refused);
  EXPECT_EQ(check_segment(200, {{"ETag", "\"v2\""}}, asked, "\"v1\"", 1000), segment_verdict::changed);
  EXPECT_EQ(check_segment(200, {}, asked, "\"v1\"", 1000), segment_verdict::changed);
  EXPECT_EQ(check_segment(503, {}, asked, "\"v1\"", 1000), segment_verdict::not_a_body);
  EXPECT_EQ(check_segment(416, {}, asked, "\"v1\"", 1000), segment_verdict::not_a_body);
}

TEST(Ramp, ConnectionsPayOffOnlyWhenTheTotalRateRisesEnough) {
  using backoff::http::connections_paid_off;
  // Capped at 4 MiB/s per connection: doubling doubles the total.
  EXPECT_TRUE(connections_paid_off(4.0, 8.0, 1, 1));
  EXPECT_TRUE(connections_paid_off(16.0, 32.0, 4, 4));
  // A saturated link: the new ones only share it.
  EXPECT_FALSE(connections_paid_off(100.0, 101.0, 1, 1));
  EXPECT_FALSE(connections_paid_off(32.0, 30.0, 4, 4));
  // The threshold: a quarter of the ideal gain, inclusive.
  EXPECT_TRUE(connections_paid_off(8.0, 10.0, 2, 2));    // ideal +8, needed +2
  EXPECT_FALSE(connections_paid_off(8.0, 9.99, 2, 2));
  EXPECT_TRUE(connections_paid_off(8.0, 9.0, 4, 2));     // ideal +4 (2 at 2 each), needed +1
  EXPECT_FALSE(connections_paid_off(8.0, 8.99, 4, 2));
  // Nothing added, or nothing before: nothing to judge.
  EXPECT_FALSE(connections_paid_off(8.0, 16.0, 2, 0));
  EXPECT_FALSE(connections_paid_off(8.0, 16.0, 0, 2));
}

TEST(Mirrors, AFirstReplyTeachesTheMirrorsOwnValidator) {
  using backoff::http::check_mirror_segment;
  const extent asked{500, 1000};
  const auto m = check_mirror_segment(206, {{"ETag", "\"m7\""}, {"Content-Range", "bytes 500-999/1000"}}, asked, "", 1000);
  EXPECT_EQ(m.verdict, segment_verdict::write);
  EXPECT_EQ(m.validator, "\"m7\"");
  EXPECT_EQ(m.why, "");
  // Later replies must carry it.
  const auto same = check_mirror_segment(206, {{"ETag", "\"m7\""}, {"Content-Range", "bytes 500-999/1000"}}, asked, "\"m7\"", 1000);
  EXPECT_EQ(same.verdict, segment_verdict::write);
  const auto changed = check_mirror_segment(206, {{"ETag", "\"m8\""}, {"Content-Range", "bytes 500-999/1000"}}, asked, "\"m7\"", 1000);
  EXPECT_EQ(changed.verdict, segment_verdict::changed);
  EXPECT_NE(changed.why.find("changed"), std::string::npos);
  // No validator at all: written, with nothing learnt (the caller decides).
  const auto none = check_mirror_segment(206, {{"Content-Range", "bytes 500-999/1000"}}, asked, "", 1000);
  EXPECT_EQ(none.verdict, segment_verdict::write);
  EXPECT_EQ(none.validator, "");
}

TEST(Mirrors, AMirrorThatDisagreesIsToldApartByWhy) {
  using backoff::http::check_mirror_segment;
  const extent asked{500, 1000};
  const auto longer = check_mirror_segment(206, {{"ETag", "\"m\""}, {"Content-Range", "bytes 500-999/2000"}}, asked, "", 1000);
  EXPECT_EQ(longer.verdict, segment_verdict::lies);
  EXPECT_EQ(longer.why, "its length is 2000 bytes, not 1000");
  const auto other = check_mirror_segment(206, {{"ETag", "\"m\""}, {"Content-Range", "bytes 0-499/1000"}}, asked, "", 1000);
  EXPECT_EQ(other.verdict, segment_verdict::lies);
  EXPECT_EQ(other.why, "its Content-Range is not the range asked");
  const auto unknown = check_mirror_segment(206, {{"ETag", "\"m\""}, {"Content-Range", "bytes 500-999/*"}}, asked, "", 1000);
  EXPECT_EQ(unknown.verdict, segment_verdict::lies);
  const auto cl = check_mirror_segment(206, {{"Content-Range", "bytes 500-999/1000"}, {"Content-Length", "499"}}, asked, "", 1000);
  EXPECT_EQ(cl.verdict, segment_verdict::lies);
  EXPECT_EQ(cl.why, "its Content-Length is not the range's");
  const auto coded = check_mirror_segment(206, {{"Content-Range", "bytes 500-999/1000"}, {"Content-Encoding", "gzip"}}, asked, "", 1000);
  EXPECT_EQ(coded.verdict, segment_verdict::lies);
  const auto whole = check_mirror_segment(200, {{"ETag", "\"m\""}}, asked, "", 1000);
  EXPECT_EQ(whole.verdict, segment_verdict::lies);
  EXPECT_EQ(whole.why, "it answered a range with the whole file");
  const auto error = check_mirror_segment(503, {}, asked, "", 1000);
  EXPECT_EQ(error.verdict, segment_verdict::not_a_body);
  EXPECT_EQ(error.why, "HTTP 503");
}

TEST(Mirrors, DuplicateLinksAreAbsoluteHttpByPriority) {
  using backoff::http::duplicate_links;
  const std::vector<backoff::http::header> h{
      {"Link", "<http://b.example/f>; rel=duplicate; pri=2, <http://a.example/f>; rel=\"duplicate\"; pri=1"},
      {"Link", "<https://c.example/f>; rel=\"describedby duplicate\""},
      {"Link", "<http://d.example/f>; rel=describedby; pri=0"},     // another relation
      {"Link", "</relative/f>; rel=duplicate; pri=0"},               // not absolute
      {"Link", "<ftp://e.example/f>; rel=duplicate"},                // not http
      {"Link", "<http://f.example/a,b>; rel=duplicate; title=\"x, y\"; pri=3"},  // commas inside <> and quotes
      {"Link", "<http://broken.example/f; rel=duplicate"},           // no closing >
  };
  const auto got = duplicate_links(h);
  const std::vector<std::string> want{"http://a.example/f", "http://b.example/f", "http://f.example/a,b",
                                      "https://c.example/f"};
  EXPECT_EQ(got, want);
  EXPECT_TRUE(duplicate_links({{"Content-Type", "text/plain"}}).empty());
}

TEST(Mirrors, ASlowerSourceDoesNotStealFromAFasterConnection) {
  using backoff::http::worth_stealing;
  EXPECT_TRUE(worth_stealing(0, 1e9));      // not measured yet
  EXPECT_TRUE(worth_stealing(5.0, 10.0));   // half as fast: still worth it (inclusive)
  EXPECT_FALSE(worth_stealing(4.99, 10.0));
  EXPECT_TRUE(worth_stealing(10.0, 1.0));
  EXPECT_TRUE(worth_stealing(1.0, 0.0));    // the busy one is stalled
}
