// SPDX-License-Identifier: BSL-1.0
// Segmented `backoff get` against a hostile scripted server: every segment
// reply that must never reach the file, each with what the download does next.
//
// Every script starts the same way, so that the order of requests is fixed:
// the first reply is a 200 of a 1 MiB file (ETag "v1", Accept-Ranges: bytes)
// that sends one byte and then stalls. The download splits at that first byte,
// so the second connection asks for the second half, bytes=524288-1048575,
// and its reply is the hostile one. The stalled first connection ends on
// --stall-timeout and is resumed from byte 1. The stall timeout (1.5 s) is
// far longer than the second connection needs to start (about 120 ms: the
// first connection is measured alone for 100 ms), so that a busy machine
// keeps the order.
#include <nlohmann/json.hpp>

#include "backoff/http/digest.hpp"
#include "cli_support.hpp"
#include "raw_server.hpp"
#include "sha256.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using backoff::testing::raw_reply;
using backoff::testing::raw_server;
using namespace cli_test;

namespace {

constexpr std::size_t L = 1u << 20;
const std::string second_half = "bytes=524288-1048575";

std::string content(char seed) {
  std::string s(L, '\0');
  std::uint64_t x = 0x9E3779B97F4A7C15ULL ^ static_cast<unsigned char>(seed);
  for (auto& c : s) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  return s;
}

// A structured-field sha-256 digest of `bytes` (RFC 9530).
std::string sha256_field(const std::string& bytes) {
  return "sha-256=:" + backoff::http::base64_encode(backoff::testing::sha256_bytes(bytes)) + ":";
}

// `r` with one more header line.
raw_reply with_header(raw_reply r, const std::string& name, const std::string& value) {
  r.bytes.insert(r.bytes.find("\r\n") + 2, name + ": " + value + "\r\n");
  return r;
}

std::string range_header(std::size_t first, std::size_t last, std::size_t total = L) {
  return "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" + std::to_string(total);
}

// The first reply: one byte of a 200 that may split, then a stall.
raw_reply opening(const std::string& body, const std::string& etag = "\"v1\"") {
  raw_reply r = raw_reply::http(200, {{"ETag", etag}, {"Accept-Ranges", "bytes"}}, body.substr(0, 1),
                                static_cast<long long>(body.size()));
  r.stall = 10s;
  return r;
}

raw_reply segment(const std::string& body, std::size_t first, std::size_t last, const std::string& etag = "\"v1\"") {
  return raw_reply::http(206, {{"ETag", etag}, {"Content-Range", range_header(first, last)}},
                         body.substr(first, last - first + 1));
}


class Segments : public Cli {
 protected:
  raw_server server{true};

  cli_result get(std::vector<std::string> extra = {}, const std::string& connections = "2",
                 const std::string& min_split = "256K") {
    std::vector<std::string> all{"get",          server.url("/f"), "-o",        "out.bin", "--connections",
                                 connections,    "--min-split-size", min_split,    "--stall-timeout", "1500ms",
                                 "--initial",    "1ms",            "--max-delay", "5ms",    "--report",
                                 "r.json",       "--max-attempts", "8"};
    all.insert(all.end(), extra.begin(), extra.end());
    return cli(all);
  }
  nlohmann::json report() const { return nlohmann::json::parse(slurp(dir / "r.json")); }
  std::vector<std::string> ranges() const {
    std::vector<std::string> out;
    for (const auto& head : server.requests()) out.push_back(header_in(head, "range"));
    return out;
  }
};

}  // namespace

TEST_F(Segments, ARangeAnsweredWithTheWholeFileContinuesOnOneStream) {
  const std::string body = content('a');
  // The server ignores Range for the second connection: a 200 of the whole file, same ETag.
  server.script({opening(body), raw_reply::http(200, {{"ETag", "\"v1\""}}, body), segment(body, 1, L - 1)});
  const auto r = get();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  const auto rs = ranges();
  ASSERT_GE(rs.size(), 3u);
  EXPECT_EQ(rs[0], "");
  EXPECT_EQ(rs[1], second_half);
  EXPECT_EQ(header_in(server.requests()[1], "if-range"), "\"v1\"");
  EXPECT_EQ(rs[2], "bytes=1-");  // one stream again, from where it stood
  EXPECT_NE(report()["single_stream_why"].get<std::string>().find("whole file"), std::string::npos) << report();
}

// The URL redirects (a download link that points at a CDN path): every
// range request follows the redirect too, with its Range and If-Range, and
// the file assembles from the ranges the target sent. (The ranges are those
// of AShort206…: the second half, two steals, the first connection's gap.)
TEST_F(Segments, RangesFollowTheUrlsRedirect) {
  const std::string body = content('r');
  const raw_reply moved = raw_reply::http(302, {{"Location", "/g"}}, "");
  server.script({moved, opening(body), moved, segment(body, L / 2, L - 1), moved, segment(body, 262144, 524287), moved,
                 segment(body, 131072, 262143), moved, segment(body, 1, 131071)});
  const auto r = get();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  const auto heads = server.requests();
  ASSERT_EQ(heads.size(), 10u) << r.err;
  for (std::size_t i = 0; i < heads.size(); ++i) {
    EXPECT_EQ(heads[i].rfind(i % 2 == 0 ? "GET /f " : "GET /g ", 0), 0u) << i << ": " << heads[i];
    if (i >= 2) {
      EXPECT_EQ(header_in(heads[i], "if-range"), "\"v1\"") << i;
    }
    if (i % 2 == 1) {
      EXPECT_EQ(header_in(heads[i], "range"), header_in(heads[i - 1], "range")) << i;
    }
  }
  EXPECT_EQ(header_in(heads[3], "range"), second_half);
  EXPECT_EQ(header_in(heads[9], "range"), "bytes=1-131071");
}

// The target became a directory while a segment came: the assembled file
// cannot be moved there, which is a file error (exit 5), never a success.
TEST_F(Segments, ATargetThatBecameADirectoryIsAFileError) {
  const std::string body = content('k');
  // Resumed from metadata: only the gap 1000-524287 is missing. Its first
  // reply sends 100000 bytes and stalls; the target is made a directory then.
  std::string part = body.substr(0, 1000) + std::string(L / 2 - 1000, '\0') + body.substr(L / 2);
  std::ofstream(dir / ".out.bin.backoff-part", std::ios::binary) << part;
  std::ofstream(dir / ".out.bin.backoff-part.meta")
      << "backoff-part 1\nurl " << server.url("/f") << "\nvalidator \"v1\"\nlength " << L
      << "\nextents 0-1000,524288-1048576\n";
  raw_reply stalled = raw_reply::http(206, {{"ETag", "\"v1\""}, {"Content-Range", range_header(1000, L / 2 - 1)}},
                                      body.substr(1000, 100000), static_cast<long long>(L / 2 - 1000));
  stalled.stall = 10s;
  server.script({stalled, segment(body, 101000, L / 2 - 1)});
  const auto r = cli({"get", server.url("/f"), "-o", "out.bin", "--connections", "2", "--min-split-size", "256K",
                      "--stall-timeout", "1500ms", "--initial", "1ms", "--max-attempts", "8"},
                     "", [&](pid_t) {
                       for (int i = 0; i < 5000 && server.bytes_sent() < 100000; ++i) std::this_thread::sleep_for(1ms);
                       fs::create_directories(dir / "out.bin" / "inside");
                     });
  EXPECT_EQ(r.status, 5) << r.err;
  EXPECT_NE(r.err.find("cannot move the download to 'out.bin': "), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_directory(dir / "out.bin" / "inside"));
  EXPECT_EQ(ranges(), (std::vector<std::string>{"bytes=1000-524287", "bytes=101000-524287"}));
}

TEST_F(Segments, AChangedValidatorOnOneSegmentStartsOverAndSavesOneVersion) {
  const std::string v1 = content('b'), v2 = content('c');
  // The second half comes from a new version; then the server serves v2 whole.
  server.script({opening(v1), segment(v2, L / 2, L - 1, "\"v2\""), raw_reply::http(200, {{"ETag", "\"v2\""}}, v2)});
  const auto r = get();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == v2) << "saved neither version whole";
  EXPECT_EQ(ranges()[2], "");  // started over, with no Range
  EXPECT_EQ(report()["restarts"], 1) << report();
  EXPECT_NE(r.err.find("the file changed on the server"), std::string::npos) << r.err;
}

TEST_F(Segments, AWrongContentRangeIsNeverWrittenAndThreeOfThemEndSplitting) {
  const std::string body = content('d');
  // Three replies that name another range (the first half, with its bytes).
  const raw_reply wrong = segment(content('x'), 0, L / 2 - 1);
  server.script({opening(body), wrong, wrong, wrong, segment(body, 1, L - 1)});
  const auto r = get();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body) << "bytes of a wrong range reached the file";
  const auto rs = ranges();
  ASSERT_EQ(rs.size(), 5u);
  EXPECT_EQ(rs[1], second_half);
  EXPECT_EQ(rs[2], second_half);
  EXPECT_EQ(rs[3], second_half);
  EXPECT_EQ(rs[4], "bytes=1-");
  EXPECT_NE(r.err.find("is not that range (Content-Range: bytes 0-524287/1048576)"), std::string::npos) << r.err;
  EXPECT_NE(report()["single_stream_why"].get<std::string>().find("continuing on one stream"), std::string::npos);
}

TEST_F(Segments, AShort206KeepsWhatCameAndAsksForTheRest) {
  const std::string body = content('e');
  // The second half announces 512 KiB but sends 100000 bytes and closes.
  raw_reply short206 = raw_reply::http(206, {{"ETag", "\"v1\""}, {"Content-Range", range_header(L / 2, L - 1)}},
                                       body.substr(L / 2, 100000), static_cast<long long>(L / 2));
  const std::size_t rest = L / 2 + 100000;
  // Then: the rest of that half; three steals from the stalled first
  // connection, each half of what it has left (the end game stops at 128 KiB);
  // and the first connection's gap once it stalls out.
  server.script({opening(body), short206, segment(body, rest, L - 1), segment(body, 262144, 524287),
                 segment(body, 131072, 262143), segment(body, 1, 131071)});
  const auto r = get();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  const auto rs = ranges();
  ASSERT_EQ(rs.size(), 6u) << r.err;
  EXPECT_EQ(rs[2], "bytes=" + std::to_string(rest) + "-1048575");
  EXPECT_EQ(rs[3], "bytes=262144-524287");
  EXPECT_EQ(rs[4], "bytes=131072-262143");
  EXPECT_EQ(rs[5], "bytes=1-131071");
  for (const auto& head : server.requests()) EXPECT_EQ(header_in(head, "want-repr-digest"), "sha-256=10, sha-512=3");
  std::uint64_t fetched = 0;
  const auto rep = report();
  for (const auto& a : rep["attempts"]) fetched += a["bytes"].get<std::uint64_t>();
  EXPECT_EQ(fetched, L) << "every byte fetched once: " << report();
  EXPECT_EQ(report()["connections"], 2);
}

TEST_F(Segments, AReprDigestMismatchOnTheAssembledFileStartsOverOnce) {
  const std::string body = content('f');
  const std::string bad = "sha-256=:" + std::string(43, 'A') + "=:";
  auto with_digest = [&](raw_reply r) { return with_header(std::move(r), "Repr-Digest", bad); };
  // The same steals as above, then (after the restart) the whole file on one stream, same digest.
  server.script({with_digest(opening(body)), with_digest(segment(body, L / 2, L - 1)), segment(body, 262144, 524287),
                 segment(body, 131072, 262143), segment(body, 1, 131071),
                 with_digest(raw_reply::http(200, {{"ETag", "\"v1\""}}, body))});
  const auto r = get();
  EXPECT_EQ(r.status, 6) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out.bin"));
  EXPECT_NE(r.err.find("Repr-Digest sha-256 mismatch"), std::string::npos) << r.err;
}

TEST_F(Segments, ConnectionsAndMinSplitSizeAreChecked) {
  for (const auto& [flag, value, says] :
       {std::tuple{"--connections", "0", "--connections: 0 is not in 1..32"},
        std::tuple{"--connections", "33", "--connections: 33 is not in 1..32"},
        std::tuple{"--min-split-size", "1K", "--min-split-size: '1K' is below 64K"},
        std::tuple{"--min-split-size", "lots", "--min-split-size"}}) {
    const auto r = cli({"get", server.url("/f"), flag, value});
    EXPECT_EQ(r.status, 2) << flag << " " << value;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  }
  EXPECT_TRUE(server.requests().empty());
}

TEST_F(Segments, MetadataThatListsMoreThanThePartHoldsStartsOver) {
  const std::string body = content('g');
  // A part of 1000 bytes whose metadata claims the second half too (a crash
  // before those bytes reached the disk, or another download's state file).
  std::ofstream(dir / ".out.bin.backoff-part", std::ios::binary) << body.substr(0, 1000);
  std::ofstream(dir / ".out.bin.backoff-part.meta")
      << "backoff-part 1\nurl " << server.url("/f") << "\nvalidator \"v1\"\nlength " << L
      << "\nextents 0-1000,524288-1048576\n";
  server.script({raw_reply::http(200, {{"ETag", "\"v1\""}}, body)});
  const auto r = get();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  EXPECT_EQ(ranges().at(0), "") << "resumed from a state file it should not trust";
}

TEST_F(Segments, MetadataWithValidExtentsResumesOnlyTheGap) {
  const std::string body = content('h');
  // Complete: the first 1000 bytes and the second half; missing: 1000-524287.
  std::string part = body.substr(0, 1000) + std::string(L / 2 - 1000, '\0') + body.substr(L / 2);
  std::ofstream(dir / ".out.bin.backoff-part", std::ios::binary) << part;
  std::ofstream(dir / ".out.bin.backoff-part.meta")
      << "backoff-part 1\nurl " << server.url("/f") << "\nvalidator \"v1\"\nlength " << L
      << "\nextents 0-1000,524288-1048576\n";
  server.script({segment(body, 1000, L / 2 - 1)});
  const auto r = get();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  ASSERT_EQ(ranges().size(), 1u);
  EXPECT_EQ(ranges()[0], "bytes=1000-524287");
  EXPECT_EQ(header_in(server.requests()[0], "if-range"), "\"v1\"");
}

TEST_F(Segments, CtrlCKeepsTheExtentsAndTheNextRunFetchesOnlyTheGaps) {
  const std::string body = content('i');
  // The second half sends 100000 bytes and stalls: Ctrl-C comes then.
  raw_reply stalled = raw_reply::http(206, {{"ETag", "\"v1\""}, {"Content-Range", range_header(L / 2, L - 1)}},
                                      body.substr(L / 2, 100000), static_cast<long long>(L / 2));
  stalled.stall = 10s;
  server.script({opening(body), stalled});
  const fs::path part = dir / ".out.bin.backoff-part";
  const auto r = cli({"get", server.url("/f"), "-o", "out.bin", "--connections", "2", "--min-split-size", "256K"}, "",
                     [&](pid_t pid) {
    // pwrite at the segment's offset grows the part: its bytes are in the file.
    for (int i = 0; i < 1000; ++i) {
      std::error_code ec;
      if (fs::file_size(part, ec) >= L / 2 + 100000 && !ec) break;
      std::this_thread::sleep_for(5ms);
    }
    ::kill(pid, SIGINT);
  });
  EXPECT_EQ(r.status, 130) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out.bin"));
  const std::string meta = slurp(dir / ".out.bin.backoff-part.meta");
  EXPECT_NE(meta.find("\nextents 0-1,524288-624288\n"), std::string::npos) << meta;

  // The next run asks for the two gaps only, the larger first, each under If-Range.
  raw_server again(true);
  again.script({segment(body, 1, L / 2 - 1), segment(body, L / 2 + 100000, L - 1)});
  std::ofstream(dir / ".out.bin.backoff-part.meta") << std::string(meta).replace(meta.find(server.url("/f")),
                                                                                  server.url("/f").size(), again.url("/f"));
  const auto second = cli({"get", again.url("/f"), "-o", "out.bin", "--connections", "2", "--min-split-size", "256K",
                           "--initial", "1ms"});
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  std::vector<std::string> asked;
  for (const auto& head : again.requests()) {
    asked.push_back(header_in(head, "range"));
    EXPECT_EQ(header_in(head, "if-range"), "\"v1\"");
  }
  EXPECT_EQ(asked, (std::vector<std::string>{"bytes=1-524287", "bytes=624288-1048575"}));
}

TEST_F(Segments, AFifoTargetIsWrittenInOrderOnOneStream) {
  const std::string body = content('j');
  ASSERT_EQ(::mkfifo((dir / "out.bin").c_str(), 0600), 0);
  std::string got;
  std::thread reader([&] {
    std::ifstream in(dir / "out.bin", std::ios::binary);
    got.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  });
  // A reply that splits a regular file; the stream resumes after the stall instead.
  server.script({opening(body), segment(body, 1, L - 1)});
  const auto r = get();
  reader.join();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(got == body);
  EXPECT_EQ(ranges(), (std::vector<std::string>{"", "bytes=1-"}));
}

TEST_F(Segments, ASymlinkedTargetGetsTheFileAndKeepsTheLink) {
  const std::string body = content('k');
  fs::create_directories(dir / "sub");
  std::ofstream(dir / "sub" / "real.bin") << "old";
  fs::create_symlink("sub/real.bin", dir / "out.bin");
  // The second half, then three steals from the stalled first connection, then its gap.
  server.script({opening(body), segment(body, L / 2, L - 1), segment(body, 262144, 524287),
                 segment(body, 131072, 262143), segment(body, 1, 131071)});
  const auto r = get();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::is_symlink(dir / "out.bin"));
  EXPECT_TRUE(slurp(dir / "sub" / "real.bin") == body);
  EXPECT_FALSE(fs::exists(dir / "sub" / ".real.bin.backoff-part"));
  EXPECT_EQ(ranges().size(), 5u);
}

TEST_F(Segments, ASegmentThatFailsItsContentDigestIsFetchedAgain) {
  const std::string body = content('l');
  const std::string half = body.substr(L / 2);
  // The second half first with a Content-Digest of other bytes, then with its own.
  server.script({opening(body), with_header(segment(body, L / 2, L - 1), "Content-Digest", sha256_field("other")),
                 with_header(segment(body, L / 2, L - 1), "Content-Digest", sha256_field(half)),
                 segment(body, 262144, 524287), segment(body, 131072, 262143), segment(body, 1, 131071)});
  const auto r = get();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  EXPECT_NE(r.err.find("Content-Digest sha-256 mismatch"), std::string::npos) << r.err;
  EXPECT_EQ(ranges().at(2), second_half);  // asked again
  const auto rep = report();
  EXPECT_NE(rep["verified"].dump().find("Content-Digest (each segment)"), std::string::npos) << rep;
}

TEST_F(Segments, AReprDigestThatChangesBetweenSegmentsStartsOver) {
  const std::string v1 = content('m'), v2 = content('n');
  // The same ETag, but the second half names another Repr-Digest: another version.
  server.script({with_header(opening(v1), "Repr-Digest", sha256_field(v1)),
                 with_header(segment(v2, L / 2, L - 1), "Repr-Digest", sha256_field(v2)),
                 with_header(raw_reply::http(200, {{"ETag", "\"v1\""}}, v2), "Repr-Digest", sha256_field(v2))});
  const auto r = get();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == v2);
  EXPECT_EQ(ranges().at(2), "");  // started over
  EXPECT_NE(r.err.find("the file changed on the server"), std::string::npos) << r.err;
  EXPECT_EQ(report()["verified"], nlohmann::json::array({"Repr-Digest sha-256"}));
}

// --- mirrors ---------------------------------------------------------------------------------
// With --connections 1 the URL keeps its one (stalled) connection and the
// mirror's one connection takes, in order, the ranges a second connection
// would: the second half, then bytes 262144-524287 and 131072-262143 (the end
// game). The URL's connection, resumed after its stall, fetches bytes 1-131071.

class Mirrors : public Segments {
 protected:
  raw_server mirror{true};
  std::vector<std::string> mirror_ranges() const {
    std::vector<std::string> out;
    for (const auto& head : mirror.requests()) out.push_back(header_in(head, "range"));
    return out;
  }
};

TEST_F(Mirrors, AMirrorTakesRangesUnderItsOwnValidator) {
  const std::string body = content('p');
  server.script({opening(body), segment(body, 1, 131071)});
  mirror.script({segment(body, L / 2, L - 1, "\"m1\""), segment(body, 262144, 524287, "\"m1\""),
                 segment(body, 131072, 262143, "\"m1\"")});
  const auto r = get({"--mirror", mirror.url("/copy")}, "1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  const auto m = mirror_ranges();
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0], second_half);
  EXPECT_EQ(m[1], "bytes=262144-524287");
  EXPECT_EQ(m[2], "bytes=131072-262143");
  // Never the URL's ETag: the mirror's first range goes without If-Range, the next ones carry its own.
  EXPECT_EQ(header_in(mirror.requests()[0], "if-range"), "");
  EXPECT_EQ(header_in(mirror.requests()[1], "if-range"), "\"m1\"");
  EXPECT_EQ(header_in(mirror.requests()[2], "if-range"), "\"m1\"");
  ASSERT_EQ(ranges().size(), 2u);
  EXPECT_EQ(ranges()[1], "bytes=1-131071");
  EXPECT_EQ(header_in(server.requests()[1], "if-range"), "\"v1\"");
  const auto rep = report();
  ASSERT_EQ(rep["sources"].size(), 2u) << rep;
  EXPECT_EQ(rep["sources"][1]["bytes"], L - 131072) << rep;
  EXPECT_TRUE(rep["sources"][1]["dropped"].is_null()) << rep;
  EXPECT_EQ(rep["sources"][0]["bytes"], 131072) << rep;
  bool mirror_attempt = false;
  for (const auto& a : rep["attempts"]) mirror_attempt |= a["url"] == mirror.url("/copy");
  EXPECT_TRUE(mirror_attempt) << rep;
}

TEST_F(Mirrors, AMirrorWithAnotherLengthIsLeftAndTheUrlFetchesItsRange) {
  const std::string body = content('q');
  server.script({opening(body), segment(body, 1, L - 1)});
  mirror.script({raw_reply::http(206, {{"ETag", "\"m1\""}, {"Content-Range", range_header(L / 2, L - 1, 2 * L)}},
                                 content('r').substr(0, L / 2))});
  const auto r = get({"--mirror", mirror.url("/copy")}, "1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  EXPECT_EQ(mirror.requests().size(), 1u);
  EXPECT_EQ(ranges().at(1), "bytes=1-1048575");  // the mirror's range went back to the URL
  EXPECT_NE(r.err.find(mirror.url("/copy") + ": attempt"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("left this mirror: its length is 2097152 bytes, not 1048576"), std::string::npos) << r.err;
  EXPECT_EQ(report()["sources"][1]["dropped"], "its length is 2097152 bytes, not 1048576") << report();
}

TEST_F(Mirrors, AMirrorWithAnotherReprDigestIsLeft) {
  const std::string body = content('s'), other = content('t');
  server.script({with_header(opening(body), "Repr-Digest", sha256_field(body)), segment(body, 1, L - 1)});
  mirror.script({with_header(segment(other, L / 2, L - 1, "\"m1\""), "Repr-Digest", sha256_field(other))});
  const auto r = get({"--mirror", mirror.url("/copy")}, "1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body) << "the mirror's bytes reached the file";
  EXPECT_NE(r.err.find("its Repr-Digest differs from the first source's"), std::string::npos) << r.err;
  EXPECT_EQ(report()["verified"], nlohmann::json::array({"Repr-Digest sha-256"}));
}

TEST_F(Mirrors, AFileThatFailsItsChecksumAfterMirrorsStartsOverFromTheUrlAlone) {
  const std::string body = content('u'), wrong = content('v');
  // The mirror agrees on the length but serves other bytes; only --checksum can tell.
  server.script({opening(body), segment(body, 1, 131071),
                 raw_reply::http(200, {{"ETag", "\"v1\""}, {"Accept-Ranges", "bytes"}}, body)});
  mirror.script({segment(wrong, L / 2, L - 1, "\"m1\""), segment(wrong, 262144, 524287, "\"m1\""),
                 segment(wrong, 131072, 262143, "\"m1\"")});
  const auto r = get({"--mirror", mirror.url("/copy"), "--checksum", "sha256:" + backoff::testing::sha256_hex(body)}, "1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  EXPECT_NE(r.err.find("from the first source alone"), std::string::npos) << r.err;
  EXPECT_EQ(mirror.requests().size(), 3u);  // not asked again
  EXPECT_EQ(ranges().at(2), "");            // the URL, from the start
  EXPECT_EQ(report()["sources"][1]["dropped"], "the assembled file failed its digest") << report();
}

TEST_F(Mirrors, WhenTheUrlIsDownTheMirrorServesTheFile) {
  std::string down;
  {
    raw_server gone;
    down = gone.url("/f");
  }  // nothing listens there now
  const std::string body = content('w');
  backoff::testing::fault_server copy;
  copy.add_file("/f", body);
  const auto r = cli({"get", down, "--mirror", copy.url("/f"), "-o", "out.bin", "--initial", "1ms", "--report",
                      "r.json", "--min-split-size", "256K"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  EXPECT_NE(r.err.find("left this source"), std::string::npos) << r.err;
  const auto rep = report();
  EXPECT_FALSE(rep["sources"][0]["dropped"].is_null()) << rep;
  EXPECT_EQ(rep["sources"][1]["bytes"], L) << rep;
}

TEST_F(Mirrors, LinkDuplicateAddsAMirrorWhenADigestIsKnown) {
  const std::string body = content('x');
  server.script({with_header(with_header(opening(body), "Repr-Digest", sha256_field(body)), "Link",
                             "<" + mirror.url("/dup") + ">; rel=duplicate; pri=1"),
                 segment(body, 1, 131071)});
  mirror.script({segment(body, L / 2, L - 1, "\"m1\""), segment(body, 262144, 524287, "\"m1\""),
                 segment(body, 131072, 262143, "\"m1\"")});
  // Link mirrors join segmented downloads (--connections above 1). No range
  // here reaches twice 512K, so the URL never gets a second connection and the
  // mirror's requests come in the order above.
  const auto r = get({}, "2", "512K");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  EXPECT_EQ(mirror.requests().size(), 3u);
  EXPECT_EQ(report()["sources"][1]["url"], mirror.url("/dup")) << report();
}

TEST_F(Mirrors, LinkDuplicateIsIgnoredWithoutADigest) {
  const std::string body = content('y');
  server.script({with_header(opening(body), "Link", "<" + mirror.url("/dup") + ">; rel=duplicate"),
                 segment(body, 1, L - 1)});
  mirror.script({segment(body, L / 2, L - 1, "\"m1\"")});
  const auto r = get({}, "2", "512K");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  EXPECT_EQ(mirror.requests().size(), 0u);
  EXPECT_TRUE(report()["sources"].empty()) << report();
}

TEST_F(Mirrors, InputFileLinesListMirrorsAndAMissingUrlFallsToThem) {
  const std::string body = content('z');
  backoff::testing::fault_server origin, copy;
  origin.script("/f", {backoff::testing::fault::status(404)});
  copy.add_file("/f", body);
  std::ofstream(dir / "list.txt") << origin.url("/f") << " " << copy.url("/f") << " saved.bin\n";
  const auto r = cli({"get", "-i", "list.txt", "-H", "X-Token: t1", "--initial", "1ms", "--min-split-size", "256K"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "saved.bin") == body);
  ASSERT_GE(copy.requests("/f").size(), 1u);
  EXPECT_EQ(copy.requests("/f")[0].headers.at("x-token"), "t1");  // -H reaches every file of -i, and its mirrors
  EXPECT_EQ(origin.requests("/f")[0].headers.at("x-token"), "t1");
}

// The URL's 404 hands the download to the first mirror, whose answer splits
// the file: the second mirror joins at once, and the URL, left for good before
// the split, is never asked again.
TEST_F(Mirrors, ASourceLeftBeforeTheFileSplitsGetsNoConnectionAfterIt) {
  const std::string body = content('u');
  backoff::testing::fault_server origin, second;
  origin.script("/f", {backoff::testing::fault::status(404), backoff::testing::fault::status(404)});
  mirror.script({opening(body), raw_reply::http(404, {}, "gone")});
  second.add_file("/f", body);
  const auto r = cli({"get", origin.url("/f"), "--mirror", mirror.url("/f"), "--mirror", second.url("/f"), "-o",
                      "out.bin", "--initial", "1ms", "--stall-timeout", "1500ms", "--min-split-size", "256K",
                      "--report", "r.json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  ASSERT_GE(second.requests("/f").size(), 1u) << "the file did not split";
  EXPECT_EQ(origin.requests("/f").size(), 1u);
  EXPECT_FALSE(report()["sources"][0]["dropped"].is_null()) << report();
}

TEST_F(Mirrors, MirrorFlagsAreChecked) {
  std::ofstream(dir / "bad.txt") << "http://h/a http://h/b name extra\n";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"get", "http://h/a", "http://h/b", "--mirror", "http://m/a"}, "--mirror: the mirrors of one URL"},
      {{"get", "http://h/a", "--mirror", "m/a"}, "--mirror: 'm/a' has no scheme"},
      {{"get", "http://h/a", "--mirror", "http://m/a", "-o", "-"}, "--mirror: standard output is written in order"},
      {{"get", "http://h/a", "--mirror", "http://m/a", "-X", "POST"}, "--mirror: an API call"},
      {{"get", "-i", "bad.txt"}, "bad.txt:1: expected 'URL [MIRROR...] [OUTPUT]'"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = cli(args);
    EXPECT_EQ(r.status, 2) << message;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
}

TEST_F(Mirrors, WhenTheUrlFailsForGoodMidwayTheMirrorFinishes) {
  const std::string body = content('A');
  // The URL's second request gets a 404: its retries stop, the mirror takes its range.
  server.script({opening(body), raw_reply::http(404, {}, "gone")});
  mirror.script({segment(body, L / 2, L - 1, "\"m1\""), segment(body, 262144, 524287, "\"m1\""),
                 segment(body, 131072, 262143, "\"m1\""), segment(body, 1, 131071, "\"m1\"")});
  const auto r = get({"--mirror", mirror.url("/copy")}, "1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(dir / "out.bin") == body);
  ASSERT_EQ(mirror_ranges().size(), 4u);
  EXPECT_EQ(mirror_ranges()[3], "bytes=1-131071");
  EXPECT_EQ(header_in(mirror.requests()[3], "if-range"), "\"m1\"");
  const auto rep = report();
  EXPECT_NE(rep["sources"][0]["dropped"].get<std::string>().find("gave up"), std::string::npos) << rep;
}

TEST_F(Mirrors, WhenEverySourceFailsTheDownloadFails) {
  const std::string body = content('B');
  server.script({opening(body), raw_reply::http(404, {}, "gone")});
  mirror.script({segment(body, L / 2, L - 1, "\"m1\""), raw_reply::http(503, {}, "busy")});
  const auto r = get({"--mirror", mirror.url("/copy")}, "1");
  EXPECT_EQ(r.status, 4) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out.bin"));
  const auto rep = report();
  EXPECT_EQ(rep["sources"][1]["dropped"], "HTTP 503") << rep;
  EXPECT_FALSE(rep["sources"][0]["dropped"].is_null()) << rep;
}
