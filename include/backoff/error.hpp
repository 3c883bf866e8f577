// SPDX-License-Identifier: BSL-1.0
// backoff/error.hpp — the exception thrown when the caller asks for one that
// explains the stop (options::wrap_errors = true).
//
//   try {
//     backoff::retry(policy, fn, {.wrap_errors = true});
//   } catch (const backoff::retry_error& e) {
//     e.reason();          // exhausted, deadline, permanent, cancelled, …
//     e.history();         // the last attempts, with their delays
//     std::rethrow_exception(e.last_error());   // the original exception, unchanged
//   }
//
// The last error is also attached as std::nested_exception, so
// std::rethrow_if_nested(e) works too. By default (wrap_errors = false) the loop
// rethrows the last real exception itself and no retry_error is involved.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>

#include "backoff/history.hpp"

namespace backoff {

class retry_error : public std::runtime_error {
 public:
  retry_error(stop_reason reason, std::exception_ptr last_error, const backoff::history& h, const std::string& detail)
      : std::runtime_error(make_message(reason, h.total(), last_error, detail)),
        reason_(reason),
        last_error_(std::move(last_error)),
        history_(h) {}

  stop_reason reason() const noexcept { return reason_; }
  // The exception thrown by the last attempt, or null when it returned a value.
  const std::exception_ptr& last_error() const noexcept { return last_error_; }
  const backoff::history& history() const noexcept { return history_; }
  std::uint64_t attempts() const noexcept { return history_.total(); }

 private:
  static std::string make_message(stop_reason reason, std::uint64_t attempts, const std::exception_ptr& e,
                                  const std::string& detail) {
    std::string msg = "backoff: gave up after ";
    msg += std::to_string(attempts);
    msg += attempts == 1 ? " attempt (" : " attempts (";
    msg += to_string(reason);
    msg += ")";
    if (!detail.empty()) {
      msg += ": ";
      msg += detail;
    }
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        msg += ": ";
        msg += x.what();
      } catch (...) {
        msg += ": non-standard exception";
      }
    }
    return msg;
  }

  stop_reason reason_;
  std::exception_ptr last_error_;
  backoff::history history_;
};

}  // namespace backoff
