// SPDX-License-Identifier: BSL-1.0
#include "backoff/classify.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <system_error>

namespace {
struct timeout_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
template <class E>
std::exception_ptr make(E e) {
  return std::make_exception_ptr(std::move(e));
}
// A minimal expected-like type: has_value() and error().
struct result {
  int v = 0;
  std::error_code ec;
  bool has_value() const { return !ec; }
  std::error_code error() const { return ec; }
};
}  // namespace

TEST(Classify, OnExceptionMatchesTypesAndDerived) {
  const auto p = backoff::on_exception<timeout_error, std::system_error>();
  EXPECT_TRUE(p(make(timeout_error("t"))));
  EXPECT_TRUE(p(make(std::system_error(std::make_error_code(std::errc::timed_out)))));
  EXPECT_FALSE(p(make(std::runtime_error("other"))));
  EXPECT_FALSE(p(make(42)));
  EXPECT_FALSE(p(std::exception_ptr{}));
  EXPECT_TRUE(backoff::on_exception<std::runtime_error>()(make(timeout_error("derived"))));
}

TEST(Classify, OnErrorCodesMatchesCodesResultsAndSystemErrors) {
  const auto p = backoff::on_error_codes({std::errc::connection_refused, std::errc::timed_out});
  EXPECT_TRUE(p(std::make_error_code(std::errc::connection_refused)));
  EXPECT_TRUE(p(std::error_code(ETIMEDOUT, std::system_category())));
  EXPECT_FALSE(p(std::make_error_code(std::errc::permission_denied)));
  EXPECT_FALSE(p(std::error_code{}));
  EXPECT_TRUE(p(result{0, std::make_error_code(std::errc::timed_out)}));
  EXPECT_FALSE(p(result{1, {}}));
  EXPECT_TRUE(p(make(std::system_error(std::make_error_code(std::errc::connection_refused)))));
  EXPECT_FALSE(p(make(std::runtime_error("x"))));
}

TEST(Classify, Combinators) {
  const auto transient = backoff::on_exception<std::system_error>() && !backoff::on_error_codes({std::errc::permission_denied});
  EXPECT_TRUE(transient(make(std::system_error(std::make_error_code(std::errc::timed_out)))));
  EXPECT_FALSE(transient(make(std::system_error(std::make_error_code(std::errc::permission_denied)))));
  const auto either = backoff::on_exception<timeout_error>() || backoff::on_error_codes({std::errc::timed_out});
  EXPECT_TRUE(either(make(timeout_error("t"))));
  EXPECT_TRUE(either(make(std::system_error(std::make_error_code(std::errc::timed_out)))));
  EXPECT_FALSE(either(make(std::logic_error("l"))));
  const auto big = backoff::on_result([](int v) { return v > 10; }) || backoff::on_result([](int v) { return v < 0; });
  EXPECT_TRUE(big(11));
  EXPECT_TRUE(big(-1));
  EXPECT_FALSE(big(5));
}

TEST(Classify, TransientNetworkErrors) {
  const auto p = backoff::on_transient_network_errors();
  EXPECT_TRUE(p(std::error_code(ECONNRESET, std::system_category())));
  EXPECT_TRUE(p(std::error_code(ECONNREFUSED, std::generic_category())));
  EXPECT_FALSE(p(std::error_code(ENOENT, std::system_category())));
}
