// SPDX-License-Identifier: BSL-1.0
// backoff/detail/validate.hpp — the one way the library reports bad configuration:
// std::invalid_argument naming the type, the field, the rule and the value given.
#pragma once

#include <chrono>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace backoff::detail {

// A duration in the largest unit that shows it exactly: "500ms", "1500ms", "2s", "-3us".
inline std::string show(std::chrono::nanoseconds d) {
  struct unit {
    std::int64_t ns;
    const char* name;
  };
  static constexpr unit units[] = {{3'600'000'000'000, "h"}, {60'000'000'000, "min"}, {1'000'000'000, "s"},
                                   {1'000'000, "ms"},         {1'000, "us"},          {1, "ns"}};
  const std::int64_t n = d.count();
  if (n == 0) return "0s";
  for (const auto& u : units)
    if (n % u.ns == 0) return std::to_string(n / u.ns) + u.name;
  return std::to_string(n) + "ns";
}
inline std::string show(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}
template <class T>
std::string show(const T& v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// Throws e.g. "backoff::exponential: multiplier must be >= 1 (got 0.5)".
template <class T>
[[noreturn]] void invalid(std::string_view where, std::string_view field, std::string_view rule, const T& value) {
  std::string msg{where};
  msg += ": ";
  msg += field;
  msg += " must be ";
  msg += rule;
  msg += " (got ";
  msg += show(value);
  msg += ")";
  throw std::invalid_argument(msg);
}

}  // namespace backoff::detail
