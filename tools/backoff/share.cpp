// SPDX-License-Identifier: BSL-1.0
#include "share.hpp"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
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
  redis::shared_quota quotas;
  gate_chain chain{&breaker, &budget};
  std::optional<redis::shared_host_backoff::key_gate> first;

  static redis::fleet_options options(const share_options& flags, bool quiet, std::atomic<bool>& warned) {
    const std::string& url = flags.url;
    const std::string& ca_file = flags.cacert;
    const std::string& password_file = flags.password_file;
    try {
      (void)redis::parse_url(url);
    } catch (const std::invalid_argument& e) {
      throw usage_error(std::string("--share: ") + e.what());
    }
    redis::fleet_options o{.url = url};
    const duration timeout = parse_duration(flags.timeout, "--share-timeout");
    if (timeout < std::chrono::milliseconds(1) || timeout > std::chrono::minutes(1))
      throw usage_error("--share-timeout: '" + flags.timeout + "' is outside 1ms..1m");
    o.timeout = std::chrono::ceil<std::chrono::milliseconds>(timeout);
    if (!ca_file.empty()) {
      if (!url.starts_with("rediss://")) throw usage_error("--share-cacert: the URL is not rediss:// (TLS)");
      if (!std::ifstream(ca_file)) throw usage_error("--share-cacert: cannot read '" + ca_file + "': " + std::strerror(errno));
      o.ca_file = ca_file;
    }
    // A password out of the URL stays out of `ps` and shell history.
    if (!password_file.empty()) {
      std::ifstream in(password_file);
      if (!in) throw usage_error("--share-password-file: cannot read '" + password_file + "': " + std::strerror(errno));
      std::getline(in, o.password);
      if (!o.password.empty() && o.password.back() == '\r') o.password.pop_back();
      if (o.password.empty()) throw usage_error("--share-password-file: '" + password_file + "' has no password on its first line");
    } else if (const char* env = std::getenv("BACKOFF_REDIS_PASSWORD"); env && *env) {
      o.password = env;
    }
    o.on_warning = [quiet, &warned](const std::string& text) {
      // One warning per run: a script's log is not the place for every reconnect.
      if (!quiet && !warned.exchange(true)) std::cerr << "backoff: warning: " << text << "\n";
    };
    return o;
  }

  impl(const share_options& flags, const std::string& key, bool quiet)
      : fleet(options(flags, quiet, warned)),
        // Failures alone do not hold a host back (each transfer has its own
        // backoff); a Retry-After does, for the whole fleet.
        // Every process waits for one release time, and then for one probe:
        // when it passes, one process of the fleet sends one request; its
        // success opens the host to all, each process's held requests leaving
        // by a slow-start ramp (host_backoff::options::probe).
        hosts(fleet, {.schedule = constant{.delay = duration{0}}, .probe = {.enabled = true}}),
        budget(fleet, key),
        breaker(fleet, key),
        quotas(fleet) {
    first.emplace(hosts.for_key(key));
  }
};

shared_gates::shared_gates(const share_options& flags, const std::string& key, bool quiet)
    : impl_(std::make_unique<impl>(flags, key, quiet)) {}
shared_gates::~shared_gates() = default;

void shared_gates::watch(const std::string& key) { (void)impl_->hosts.for_key(key); }
host_backoff& shared_gates::hosts() { return impl_->hosts.local(); }
void shared_gates::share_quota(const std::string& key) { impl_->quotas.watch(key); }
quota_pacer& shared_gates::quotas() { return impl_->quotas.local(); }
gate& shared_gates::gates() { return impl_->chain; }

}  // namespace backoff::cli
