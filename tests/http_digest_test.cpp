// SPDX-License-Identifier: BSL-1.0
#include "backoff/http/digest.hpp"

#include <gtest/gtest.h>

using backoff::http::parse_digest_field;
using backoff::http::parse_legacy_digest;
using backoff::http::strongest;

namespace {

// sha-256 and sha-512 of {"hello": "world"}, the body of RFC 9530's examples.
constexpr const char* sha256_b64 = "X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=";
constexpr const char* sha256_hex = "5f8f04f6a3a892aaabbddb6cf273894493773960d4a325b105fee46eef4304f1";
constexpr const char* sha512_b64 =
    "WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==";
constexpr const char* sha512_hex =
    "5990cf6959ffed7807680cbca66a23024196a11c765050a1178d40dacbd7f9368f9be01bc008015a7ac8898965bbb04d37279a95d54bbd1c049931d65ef2707b";

std::string field(const std::string& alg, const char* b64) { return alg + "=:" + b64 + ":"; }

}  // namespace

TEST(HttpDigest, ParsesRfc9530Members) {
  const auto one = parse_digest_field(field("sha-256", sha256_b64));
  ASSERT_TRUE(one);
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].algorithm, "sha-256");
  EXPECT_EQ((*one)[0].hex, sha256_hex);

  const auto two = parse_digest_field(field("sha-512", sha512_b64) + ",  " + field("sha-256", sha256_b64) + ";p=1");
  ASSERT_TRUE(two);
  ASSERT_EQ(two->size(), 2u);
  EXPECT_EQ((*two)[0].hex, sha512_hex);
  EXPECT_EQ((*two)[1].algorithm, "sha-256");
}

// Members may carry parameters of any structured-field type (RFC 8941):
// booleans (?0, ?1), byte sequences (:...:), strings, tokens. A malformed one
// makes the whole field unusable.
TEST(HttpDigest, ParametersOfEveryTypeAreSkipped) {
  for (const std::string& params : {std::string(";a=?1"), std::string(";a=?0;b=:AAEC:"), std::string(";a=\"x\";b=tok"),
                                    std::string(";a"), std::string(";a=:AAEC:;b=?1")}) {
    const auto d = parse_digest_field(field("sha-256", sha256_b64) + params + ", " + field("sha-512", sha512_b64));
    ASSERT_TRUE(d) << params;
    ASSERT_EQ(d->size(), 2u) << params;
    EXPECT_EQ((*d)[0].hex, sha256_hex) << params;
  }
  for (const std::string& params : {std::string(";a=?"), std::string(";a=?2"), std::string(";a=:AAEC"), std::string(";a=\"x")})
    EXPECT_FALSE(parse_digest_field(field("sha-256", sha256_b64) + params)) << params;
}

TEST(HttpDigest, StrongestPrefersSha512AndIgnoresInsecureAlgorithms) {
  const auto both = parse_digest_field(field("sha-256", sha256_b64) + ", " + field("sha-512", sha512_b64));
  ASSERT_TRUE(both);
  EXPECT_EQ(strongest(*both)->algorithm, "sha-512");
  const auto md5 = parse_digest_field("md5=:ndTkYSaMgDT1yFZOFVxnpg==:");
  ASSERT_TRUE(md5);
  EXPECT_FALSE(strongest(*md5));
  // A sha-256 member whose bytes are not 32 long is not a SHA-256 digest.
  const auto short256 = parse_digest_field("sha-256=:ndTkYSaMgDT1yFZOFVxnpg==:");
  ASSERT_TRUE(short256);
  EXPECT_FALSE(strongest(*short256));
}

TEST(HttpDigest, AFieldThatDoesNotParseIsIgnoredAsAWhole) {
  for (const std::string& bad : {std::string(""), std::string("sha-256"), std::string("sha-256="),
                                std::string("sha-256=abc"),                        // a token, not bytes
                                std::string("sha-256=:") + sha256_b64,             // unterminated
                                std::string("SHA-256=:") + sha256_b64 + ":",       // keys are lower case
                                std::string("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE:"),  // no padding
                                std::string("sha-256=:X48E9q!okqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
                                field("sha-256", sha256_b64) + ",",                // trailing comma
                                field("sha-256", sha256_b64) + " junk", field("sha-256", sha256_b64) + ";=1"})
    EXPECT_FALSE(parse_digest_field(bad)) << bad;
}

TEST(HttpDigest, Base64MustBeCanonical) {
  // "AB==" decodes to one byte 0x00 with four bits left over that are not zero.
  EXPECT_FALSE(parse_digest_field("x=:AB==:"));
  EXPECT_TRUE(parse_digest_field("x=:AA==:"));
  EXPECT_EQ(parse_digest_field("x=:/w==:")->front().hex, "ff");
}

TEST(HttpDigest, ALaterMemberWithTheSameKeyWins) {
  const auto d = parse_digest_field("sha-256=:AA==:, " + field("sha-256", sha256_b64));
  ASSERT_TRUE(d);
  ASSERT_EQ(d->size(), 1u);
  EXPECT_EQ(d->front().hex, sha256_hex);
}

TEST(HttpDigest, LegacyDigestHeader) {
  const auto d = parse_legacy_digest(std::string("MD5=ndTkYSaMgDT1yFZOFVxnpg==, SHA-256=") + sha256_b64);
  ASSERT_TRUE(d);
  ASSERT_EQ(d->size(), 2u);
  EXPECT_EQ((*d)[0].algorithm, "md5");
  EXPECT_EQ(strongest(*d)->hex, sha256_hex);
  EXPECT_FALSE(parse_legacy_digest("SHA-256=not base64!, UNIXsum=30637"));
  EXPECT_FALSE(parse_legacy_digest(""));
}

TEST(HttpDigest, Base64EncodeMatchesRfc4648AndRoundTrips) {
  // RFC 4648 §10's test vectors.
  const std::pair<const char*, const char*> vectors[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},   {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [in, out] : vectors) EXPECT_EQ(backoff::http::base64_encode(in), out) << in;
  const std::string all = [] {
    std::string s;
    for (int c = 0; c < 256; ++c) s.push_back(static_cast<char>(c));
    return s;
  }();
  const auto back = parse_digest_field("x=:" + backoff::http::base64_encode(all) + ":");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->front().hex.size(), 512u);
  EXPECT_EQ(back->front().hex.substr(0, 6), "000102");
  EXPECT_EQ(back->front().hex.substr(506), "fdfeff");
}

// RFC 4648 §10's test vectors, the empty string and one byte included (a
// length computed as size − 2 would wrap around below two bytes).
TEST(Base64, EncodesTheRfc4648Vectors) {
  using backoff::http::base64_encode;
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
}
