// SPDX-License-Identifier: BSL-1.0
// The classic retry decorator, with backoff::retrying: a wrapped function that
// retries on its own. What it shows, each in a few lines:
//   - at most 6 tries, and an is_success check of the result (status < 400);
//   - waits of 1 s, 2 s, 4 s … plus U(0, 1000 ms), capped at 64 s (Google
//     Cloud's formula), or constant waits, optionally with full jitter;
//   - a fallback for HTTP 404 (a permanent failure becomes a default value);
//   - an action before each retry, and an exception after the last try.
// A manual clock runs the waits instantly; the "server" is a scripted fake.
#include <backoff/backoff.hpp>

#include <cstdio>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct response {
  int status;
  std::string body;
};

// A fake API: answers the statuses of `script` in order, then 200.
struct fake_api {
  std::vector<int> script;
  std::size_t next = 0;
  response get(const std::string& path) {
    const int status = next < script.size() ? script[next++] : 200;
    return {status, status == 200 ? "{\"path\": \"" + path + "\"}" : ""};
  }
};

backoff::options<response> classic_options(backoff::manual_clock& clock) {
  return {
      .classify = {.is_success = [](const response& r) { return r.status < 400; },
                   .retry_value = [](const response& r) { return r.status == 429 || r.status >= 500; }},
      .fallback = [](const backoff::attempt<response>&) { return response{404, "{}"}; },  // HTTP 404: a default
      .before_retry =
          [](const backoff::attempt<response>& a) {
            std::printf("  retrying after HTTP %d (attempt %u), waited %.3f s\n", a.result ? a.result->status : 0,
                        a.record.number, std::chrono::duration<double>(a.record.delay).count());
          },
      .clock = &clock,
      .wrap_errors = true,  // after the last try: backoff::retry_error, not the last failed response
  };
}

}  // namespace

int main() {
  backoff::manual_clock clock;
  fake_api api{{503, 503, 429}};

  // Exponential 1 s, 2 s, 4 s … + U(0, 1000 ms), at most 64 s; 6 tries.
  auto get = backoff::retrying(backoff::presets::google_cloud({.maximum_backoff = 64s, .max_attempts = 6}),
                               [&](const std::string& path) { return api.get(path); }, classic_options(clock));
  std::printf("exponential:\n");
  std::printf("  got %s\n", get("/items").body.c_str());

  // Constant waits of 2 s with full jitter, 3 tries.
  const backoff::policy constant{.schedule = backoff::constant{.delay = 2s},
                                 .jitter = backoff::jitter::full(),
                                 .stop = backoff::stop::after_attempts(3)};
  auto get_constant = backoff::retrying(constant, [&](const std::string& path) { return api.get(path); },
                                        classic_options(clock));
  std::printf("constant with full jitter:\n");
  api.script = {502};
  api.next = 0;
  std::printf("  got %s\n", get_constant("/items").body.c_str());

  // HTTP 404 is permanent: the fallback answers at once.
  api.script = {404};
  api.next = 0;
  std::printf("404 with a fallback:\n  got %s\n", get_constant("/missing").body.c_str());

  // Never succeeds: an exception after the last try, with the reason and history.
  api.script = {503, 503, 503};
  api.next = 0;
  std::printf("always 503:\n");
  try {
    get_constant("/down");
  } catch (const backoff::retry_error& e) {
    std::printf("  %s (%s after %llu attempts)\n", e.what(), backoff::to_string(e.reason()).data(),
                static_cast<unsigned long long>(e.history().total()));
  }
  return 0;
}
