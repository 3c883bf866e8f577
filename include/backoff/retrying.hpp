// SPDX-License-Identifier: BSL-1.0
// backoff/retrying.hpp — the C++ form of a retry decorator (tenacity's @retry,
// Polly's policy.Execute): a callable with fn's signature that retries every call.
//
//   auto fetch = backoff::retrying(backoff::presets::google_cloud(), [](const std::string& url) {
//     return http_get(url);
//   });
//   auto body = fetch("https://example.com/a");     // each call: a fresh schedule
//
//   auto get = backoff::retrying(policy, http_get, backoff::options<response>{
//       .classify = {.is_success = [](const response& r) { return r.status < 400; }}});
//
// Arguments are passed to every attempt (as lvalues: an attempt must not move
// from them, the next one needs them too). The policy and options are copied
// into the wrapper and only read, so one wrapper may be called from many
// threads at once; what they point to (a gate, a clock) must outlive it.
#pragma once

#include <functional>
#include <type_traits>
#include <utility>

#include "backoff/retry.hpp"

namespace backoff {

namespace detail {
struct no_options {};
}  // namespace detail

template <class F, class Options = detail::no_options>
class retrying_fn {
 public:
  retrying_fn(backoff::policy p, F f) : policy_(std::move(p)), fn_(std::move(f)) {}
  retrying_fn(backoff::policy p, F f, Options o) : policy_(std::move(p)), fn_(std::move(f)), options_(std::move(o)) {}

  template <class... A>
    requires std::invocable<const F&, A&...>
  auto operator()(A&&... args) const -> std::invoke_result_t<const F&, A&...> {
    auto attempt = [&]() -> std::invoke_result_t<const F&, A&...> { return std::invoke(fn_, args...); };
    if constexpr (std::is_same_v<Options, detail::no_options>) {
      return backoff::retry(policy_, attempt);
    } else {
      return backoff::retry(policy_, attempt, options_);
    }
  }

  const backoff::policy& retry_policy() const noexcept { return policy_; }

 private:
  backoff::policy policy_;
  F fn_;
  [[no_unique_address]] Options options_{};
};

// Wraps fn: calling the result calls fn under `p`, retrying as backoff::retry does.
template <class F>
retrying_fn<std::decay_t<F>> retrying(policy p, F&& fn) {
  return {std::move(p), std::forward<F>(fn)};
}

// The same with options (hooks, classifier, fallback, gate, clock…). Their
// result type must be fn's.
template <class F, class R>
retrying_fn<std::decay_t<F>, options<R>> retrying(policy p, F&& fn, options<R> o) {
  return {std::move(p), std::forward<F>(fn), std::move(o)};
}

}  // namespace backoff
