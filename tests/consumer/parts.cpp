// SPDX-License-Identifier: BSL-1.0
// A consumer of every optional part: compiles against each header and links
// each library (find_package(backoff COMPONENTS asio curl redis)).
#include <asio/io_context.hpp>
#include <backoff/asio.hpp>
#include <backoff/curl/client.hpp>
#include <backoff/redis/fleet.hpp>

#include <cstdio>

int main() {
  asio::io_context ctx;
  const std::string key = backoff::curl::host_key("https://example.com/x");
  backoff::redis::fleet_options options{};
  std::printf("parts: %s %d\n", key.c_str(), static_cast<int>(options.url.size()));
  return key == "example.com:443" ? 0 : 1;
}
