// SPDX-License-Identifier: BSL-1.0
// --share redis://HOST:PORT[/PREFIX]: the gates every backoff process of a
// fleet shares through Redis (backoff/redis/fleet.hpp) for one key — the URL's
// host:port for get, --share-key for run: one release time (Retry-After) and
// one probe after it (host_backoff::options::probe), one
// retry budget (10 % of the fleet's requests, plus one retry a second), one
// circuit breaker; for get, one quota per host, split evenly between the
// processes that use it. Redis unreachable: one warning, and the gates are local.
#pragma once

#include <memory>
#include <string>

#include "backoff/gate.hpp"
#include "backoff/host_backoff.hpp"
#include "backoff/quota.hpp"
#include "cli.hpp"

namespace backoff::cli {

class shared_gates {
 public:
  // Throws usage_error naming the flag for a bad URL, file or timeout.
  // The password: the first line of --share-password-file when given, else
  // $BACKOFF_REDIS_PASSWORD when set, else the URL's.
  // --share-cacert: for rediss://, the CAs to trust instead of the system's.
  shared_gates(const share_options& flags, const std::string& key, bool quiet);
  ~shared_gates();
  // Reads the fleet's release time for another key (get with several hosts).
  void watch(const std::string& key);
  // The host_backoff to hand to curl::client_options::hosts: what it learns
  // is shared, and what the fleet learns reaches it.
  host_backoff& hosts();
  // Counts this process among those that spend `key`'s quota (get), so that
  // each takes an equal share of it; quotas() is the pacer to hand to
  // curl::client_options::quotas.
  void share_quota(const std::string& key);
  quota_pacer& quotas();
  // The budget and the breaker, in that order of questions: the breaker first,
  // so that a denial by it spends no budget token.
  gate& gates();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace backoff::cli
