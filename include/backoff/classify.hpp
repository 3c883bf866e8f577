// SPDX-License-Identifier: BSL-1.0
// backoff/classify.hpp — what to retry: predicates on exceptions, error codes and
// results, combinable with ||, && and !.
//
//   auto transient = backoff::on_exception<std::system_error, timeout_error>()
//                    && !backoff::on_error_codes({std::errc::permission_denied});
//   auto server_side = backoff::on_exception<http_error>([](const http_error& e) { return e.status >= 500; });
//   auto retry_429 = backoff::on_result([](const response& r) { return r.status == 429; });
//   backoff::retry(policy, fn, {.classify = {.retry_value = retry_429, .retry_exception = transient || server_side}});
//
// A predicate answers "is this failure worth another attempt?". The loop first
// decides whether an attempt failed (it threw, or classify.is_success said no),
// then asks the predicate: true means retryable, false means permanent.
#pragma once

#include <concepts>
#include <exception>
#include <initializer_list>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace backoff {

// Wraps any callable returning bool so that it composes with ||, && and !.
template <class F>
struct predicate {
  F fn;

  template <class... A>
    requires std::invocable<const F&, A&&...>
  bool operator()(A&&... a) const {
    return static_cast<bool>(fn(std::forward<A>(a)...));
  }
};
template <class F>
predicate(F) -> predicate<F>;

template <class A, class B>
auto operator||(predicate<A> a, predicate<B> b) {
  return predicate{[a = std::move(a), b = std::move(b)](const auto& x) { return a(x) || b(x); }};
}
template <class A, class B>
auto operator&&(predicate<A> a, predicate<B> b) {
  return predicate{[a = std::move(a), b = std::move(b)](const auto& x) { return a(x) && b(x); }};
}
template <class A>
auto operator!(predicate<A> a) {
  return predicate{[a = std::move(a)](const auto& x) { return !a(x); }};
}

namespace detail {
// Must be called inside a catch handler: is the exception being handled an E?
template <class E>
bool current_exception_is() {
  try {
    throw;
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}
}  // namespace detail

// True for an exception of any of the types E (or derived from them).
template <class... E>
auto on_exception() {
  static_assert(sizeof...(E) > 0, "name at least one exception type");
  return predicate{[](const std::exception_ptr& e) -> bool {
    if (!e) return false;
    try {
      std::rethrow_exception(e);
    } catch (...) {
      return (... || detail::current_exception_is<E>());
    }
  }};
}

// True for an exception of type E (or derived) for which `f(const E&)` is true:
// the exception's value decides (an http_error with status 503 is retryable,
// with 404 it is not), without a hand-written rethrow-and-catch.
template <class E, class F>
  requires std::predicate<const F&, const E&>
auto on_exception(F f) {
  return predicate{[f = std::move(f)](const std::exception_ptr& e) -> bool {
    if (!e) return false;
    try {
      std::rethrow_exception(e);
    } catch (const E& x) {
      return f(x);
    } catch (...) {
      return false;
    }
  }};
}

// Any exception at all.
inline auto on_any_exception() {
  return predicate{[](const std::exception_ptr& e) { return static_cast<bool>(e); }};
}

namespace detail {

template <class R>
concept expected_like = requires(const R& r) {
  { r.has_value() } -> std::convertible_to<bool>;
  r.error();
};
template <class R>
concept expected_with_error_code = expected_like<R> && requires(const R& r) {
  { r.error() } -> std::convertible_to<std::error_code>;
};
}  // namespace detail

// Matches a std::error_code equal to one of `codes` (error_condition comparison,
// so std::errc values match system errors of every category that maps to them).
// Callable with a std::error_code, with an expected-like result whose error() is
// an error_code, or with an exception_ptr holding a std::system_error.
class error_code_set {
 public:
  error_code_set(std::initializer_list<std::error_condition> conditions) : conditions_(conditions) {}
  error_code_set(std::initializer_list<std::errc> codes) {
    for (auto c : codes) conditions_.push_back(std::make_error_condition(c));
  }
  explicit error_code_set(std::vector<std::error_condition> conditions) : conditions_(std::move(conditions)) {}

  bool operator()(const std::error_code& ec) const {
    if (!ec) return false;
    for (const auto& c : conditions_)
      if (ec == c) return true;
    return false;
  }
  template <detail::expected_with_error_code R>
  bool operator()(const R& r) const {
    return !r.has_value() && (*this)(std::error_code(r.error()));
  }
  bool operator()(const std::exception_ptr& e) const {
    if (!e) return false;
    try {
      std::rethrow_exception(e);
    } catch (const std::system_error& se) {
      return (*this)(se.code());
    } catch (...) {
      return false;
    }
  }

 private:
  std::vector<std::error_condition> conditions_;
};

inline auto on_error_codes(std::initializer_list<std::errc> codes) { return predicate{error_code_set(codes)}; }
inline auto on_error_codes(std::initializer_list<std::error_condition> conditions) {
  return predicate{error_code_set(conditions)};
}

// A predicate on the callable's returned value.
template <class F>
auto on_result(F f) {
  return predicate{std::move(f)};
}

// The usual transient network errors: refused, reset, aborted, timed out,
// unreachable, would block or interrupted.
inline auto on_transient_network_errors() {
  return on_error_codes({std::errc::connection_refused, std::errc::connection_reset, std::errc::connection_aborted,
                         std::errc::timed_out, std::errc::network_unreachable, std::errc::host_unreachable,
                         std::errc::network_down, std::errc::network_reset, std::errc::resource_unavailable_try_again,
                         std::errc::interrupted, std::errc::broken_pipe});
}

}  // namespace backoff
