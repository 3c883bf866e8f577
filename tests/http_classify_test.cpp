// SPDX-License-Identifier: BSL-1.0
#include "backoff/http/classify.hpp"

#include <gtest/gtest.h>

#include <set>

#include "backoff/http/header.hpp"
#include "backoff/http/idempotency.hpp"

using backoff::http::transport;
using backoff::http::verdict;

TEST(HttpClassify, StatusTable) {
  const backoff::http::classifier c;
  const struct {
    int status;
    verdict want;
  } rows[] = {{200, verdict::success},    {204, verdict::success},    {206, verdict::success},
              {304, verdict::success},    {400, verdict::permanent},  {401, verdict::permanent},
              {403, verdict::permanent},  {404, verdict::permanent},  {408, verdict::retryable},
              {409, verdict::permanent},  {416, verdict::permanent},  {429, verdict::throttled},
              {500, verdict::retryable},  {501, verdict::permanent},  {502, verdict::retryable},
              {503, verdict::retryable},  {504, verdict::retryable},  {505, verdict::permanent},
              {0, verdict::permanent},    {999, verdict::permanent}};
  for (const auto& r : rows) EXPECT_EQ(c.classify(r.status), r.want) << r.status;
}

TEST(HttpClassify, ListsAreConfigurable) {
  backoff::http::classifier c;
  c.retryable_statuses.push_back(409);
  c.retryable_statuses.erase(std::find(c.retryable_statuses.begin(), c.retryable_statuses.end(), 500));
  EXPECT_EQ(c.classify(409), verdict::retryable);
  EXPECT_EQ(c.classify(500), verdict::permanent);
}

TEST(HttpClassify, TransportTable) {
  const backoff::http::classifier c;
  EXPECT_EQ(c.classify(transport::none), verdict::success);
  for (auto t : {transport::connect_failed, transport::dns_temporary, transport::timeout, transport::connection_reset,
                 transport::connection_dropped})
    EXPECT_EQ(c.classify(t), verdict::retryable) << backoff::http::to_string(t);
  EXPECT_EQ(c.classify(transport::tls), verdict::permanent);
  EXPECT_EQ(c.classify(transport::other), verdict::permanent);
}

TEST(HttpIdempotency, MethodsAndResendRules) {
  using backoff::http::may_resend;
  for (auto m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) {
    EXPECT_TRUE(backoff::http::is_idempotent_method(m)) << m;
    EXPECT_TRUE(may_resend({.method = m}, transport::timeout)) << m;
    EXPECT_TRUE(may_resend({.method = m}, transport::none)) << m;
  }
  EXPECT_FALSE(backoff::http::is_idempotent_method("get"));
  for (auto m : {"POST", "PATCH"}) {
    EXPECT_FALSE(may_resend({.method = m}, transport::timeout)) << m;
    EXPECT_FALSE(may_resend({.method = m}, transport::connection_reset)) << m;
    EXPECT_FALSE(may_resend({.method = m}, transport::none)) << m;  // a 503 means it was processed
    EXPECT_TRUE(may_resend({.method = m}, transport::connect_failed)) << m;
    EXPECT_TRUE(may_resend({.method = m}, transport::dns_temporary)) << m;
    EXPECT_TRUE(may_resend({.method = m, .marked_idempotent = true}, transport::timeout)) << m;
    EXPECT_TRUE(may_resend({.method = m, .idempotency_key = true}, transport::none)) << m;
  }
}

TEST(HttpIdempotency, KeysAreVersion4UuidsAndDistinct) {
  backoff::fast_rng rng{3};
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const auto k = backoff::http::make_idempotency_key(rng);
    ASSERT_EQ(k.size(), 36u);
    EXPECT_EQ(k[14], '4');
    EXPECT_TRUE(k[19] == '8' || k[19] == '9' || k[19] == 'a' || k[19] == 'b') << k;
    EXPECT_EQ(k[8], '-');
    seen.insert(k);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

// One header line as curl hands it over. The blanks around the value are not
// part of it, at either end; a name must be an RFC 9110 token.
TEST(HeaderLine, TheValueWithoutItsBlanksAndOnlyTokenNames) {
  using backoff::http::parse_header_line;
  auto h = parse_header_line("Retry-After: \t 120 \t \r\n");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->first, "Retry-After");
  EXPECT_EQ(h->second, "120");
  h = parse_header_line("X-Empty: \t \r\n");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->second, "");
  EXPECT_TRUE(parse_header_line("a!#$%&'*+-.^_`|~Z09: v"));
  for (const char* bad : {"Bad Name: x", "Bad\"Name: x", "(x): y", "na/me: v", "n@me: v", "[n]: v", "{n}: v", ": x",
                          "no colon"})
    EXPECT_FALSE(parse_header_line(bad)) << bad;
}
