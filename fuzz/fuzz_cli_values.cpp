// SPDX-License-Identifier: BSL-1.0
// Durations, sizes and code lists as the command line takes them. Properties:
// a value is accepted or rejected with usage_error naming the flag (nothing
// else is thrown); durations are never negative; sizes are above 0; codes stay
// inside their range; a duration written back by format_duration parses again.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cli.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "property violated: %s\n", what);
  std::abort();
}

template <class F>
void expect_usage_error_or_value(F&& f) {
  try {
    f();
  } catch (const backoff::cli::usage_error& e) {
    if (std::string(e.what()).find("--flag") != 0) fail("a usage error that does not name the flag");
  } catch (...) {
    fail("an exception other than usage_error");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace backoff::cli;
  const std::string text(reinterpret_cast<const char*>(data), size);
  expect_usage_error_or_value([&] {
    const auto d = parse_duration(text, "--flag");
    if (d.count() < 0) fail("a negative duration");
    const auto again = parse_duration(format_duration(d), "--flag");
    if (again.count() < 0) fail("format_duration wrote a negative duration");
  });
  expect_usage_error_or_value([&] {
    if (parse_size(text, "--flag") == 0) fail("a size of 0");
  });
  expect_usage_error_or_value([&] {
    for (int c : parse_codes(text, "--flag", 400, 599, "HTTP status code"))
      if (c < 400 || c > 599) fail("a code outside its range");
  });
  return 0;
}
