// SPDX-License-Identifier: BSL-1.0
// Shared helpers for backoff's tests.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <functional>
#include <vector>

namespace backoff_test {

// Counts calls to the replaced global operator new (see alloc_counter.cpp).
std::size_t allocations() noexcept;

// Kolmogorov–Smirnov statistic of `samples` against the continuous CDF `cdf`.
inline double ks_statistic(std::vector<double> samples, const std::function<double(double)>& cdf) {
  std::sort(samples.begin(), samples.end());
  const double n = static_cast<double>(samples.size());
  double d = 0.0;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const double f = cdf(samples[i]);
    d = std::max({d, f - static_cast<double>(i) / n, static_cast<double>(i + 1) / n - f});
  }
  return d;
}

// The critical value of D at significance 0.001 for n samples.
inline double ks_critical_001(std::size_t n) { return 1.949 / std::sqrt(static_cast<double>(n)); }

}  // namespace backoff_test
