// SPDX-License-Identifier: BSL-1.0
// testing/attempt_numbers.hpp — an observer that keeps the numbers it hears:
// attempts started, cancelled and ended, in order, so that a test can check
// that each end is paired with its start (hedged copies end out of order).
#pragma once

#include <cstdint>
#include <vector>

#include "backoff/observer.hpp"

namespace backoff::testing {

struct attempt_numbers final : backoff::observer {
  std::vector<std::uint32_t> started, cancelled, ended;
  void attempt_started(std::uint32_t n, backoff::time_point) noexcept override { started.push_back(n); }
  void attempt_cancelled(std::uint32_t n, backoff::duration) noexcept override { cancelled.push_back(n); }
  void attempt_ended(const backoff::attempt_ended_event& e) noexcept override { ended.push_back(e.number); }
};

}  // namespace backoff::testing
