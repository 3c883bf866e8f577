// SPDX-License-Identifier: BSL-1.0
#include "share.hpp"

#include <atomic>
#include <iostream>
#include <optional>
#include <stdexcept>

#include "backoff/redis/fleet.hpp"
#include "cli.hpp"

namespace backoff::cli {

struct shared_gates::impl {
  std::atomic<bool> warned{false};
  redis::fleet fleet;
  redis::shared_host_backoff hosts;
  redis::shared_budget budget;
  redis::shared_breaker breaker;
  gate_chain chain{&breaker, &budget};
  std::optional<redis::shared_host_backoff::key_gate> first;

  static redis::fleet_options options(const std::string& url, bool quiet, std::atomic<bool>& warned) {
    try {
      (void)redis::parse_url(url);
    } catch (const std::invalid_argument& e) {
      throw usage_error(std::string("--share: ") + e.what());
    }
    redis::fleet_options o{.url = url};
    o.on_warning = [quiet, &warned](const std::string& text) {
      // One warning per run: a script's log is not the place for every reconnect.
      if (!quiet && !warned.exchange(true)) std::cerr << "backoff: warning: " << text << "\n";
    };
    return o;
  }

  impl(const std::string& url, const std::string& key, bool quiet)
      : fleet(options(url, quiet, warned)),
        // Failures alone do not hold a host back (each transfer has its own
        // backoff); a Retry-After does, for the whole fleet.
        // Every process waits for one release time: each request held back
        // leaves within the first fifth of its wait after it, not all at once.
        hosts(fleet, {.schedule = constant{.delay = duration{0}}, .release_spread = 0.2}),
        budget(fleet, key),
        breaker(fleet, key) {
    first.emplace(hosts.for_key(key));
  }
};

shared_gates::shared_gates(const std::string& url, const std::string& key, bool quiet)
    : impl_(std::make_unique<impl>(url, key, quiet)) {}
shared_gates::~shared_gates() = default;

void shared_gates::watch(const std::string& key) { (void)impl_->hosts.for_key(key); }
host_backoff& shared_gates::hosts() { return impl_->hosts.local(); }
gate& shared_gates::gates() { return impl_->chain; }

}  // namespace backoff::cli
