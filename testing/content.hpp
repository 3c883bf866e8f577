// SPDX-License-Identifier: BSL-1.0
// testing/content.hpp — reproducible file contents for tests and benchmarks:
// n bytes from a xorshift generator, different for each seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace backoff::testing {

inline std::string pseudo_random_bytes(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

}  // namespace backoff::testing
