// SPDX-License-Identifier: BSL-1.0
// The README's first example: retry a flaky call with exponential backoff and
// full jitter, then inspect why a hopeless one gave up.
#include <backoff/backoff.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;

namespace {
int calls = 0;
std::string fetch_config() {
  if (++calls < 3) throw std::runtime_error("503 Service Unavailable");
  return "{\"ok\": true}";
}
}  // namespace

int main() {
  const backoff::policy policy{
      .schedule = backoff::exponential{.initial = 100ms, .multiplier = 2.0, .max_delay = 2s},
      .jitter = backoff::jitter::full(),
      .stop = backoff::stop::after_attempts(5) | backoff::stop::after_elapsed(10s),
  };
  const std::string body = backoff::retry(policy, fetch_config, {
      .after_attempt = [](const backoff::attempt<std::string>& a) {
        if (a.error) std::printf("attempt %u failed, retrying in %lld ms\n", a.record.number,
                                 static_cast<long long>(a.record.delay / 1ms));
      }});
  std::printf("got %s after %d calls\n", body.c_str(), calls);

  auto hopeless = backoff::try_retry(policy, []() -> int { throw std::runtime_error("connection refused"); });
  std::printf("gave up: %s after %llu attempts\n", std::string(backoff::to_string(hopeless.reason)).c_str(),
              static_cast<unsigned long long>(hopeless.attempts()));
  return 0;
}
