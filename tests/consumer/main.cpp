// SPDX-License-Identifier: BSL-1.0
#include <backoff/backoff.hpp>

#include <cstdio>
#include <stdexcept>

int main() {
  using namespace std::chrono_literals;
  backoff::manual_clock clock;
  int calls = 0;
  const int v = backoff::retry(backoff::policy{.stop = backoff::stop::after_attempts(3)},
                               [&] {
                                 if (++calls < 3) throw std::runtime_error("not yet");
                                 return calls;
                               },
                               {.clock = &clock});
  std::printf("consumer: %d attempts\n", v);
  return v == 3 ? 0 : 1;
}
