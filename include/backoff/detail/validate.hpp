// backoff/detail/validate.hpp — the one way the library reports bad configuration:
// std::invalid_argument naming the type, the field, the rule and the value given.
#pragma once

#include <chrono>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace backoff::detail {

inline std::string show(std::chrono::nanoseconds d) {
  std::ostringstream out;
  out << d.count() << "ns";
  return out.str();
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
