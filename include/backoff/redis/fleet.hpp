// SPDX-License-Identifier: BSL-1.0
// backoff/redis/fleet.hpp — gates shared by every process of a fleet through
// Redis: one release time per host (Retry-After), one retry budget and one
// circuit breaker, without a network round trip on any request's path.
// Target backoff::redis (built when Debian's libhiredis-dev is present).
//
//   backoff::redis::fleet fleet({.url = "redis://10.0.0.5:6379/myapi"});   // one per process
//   backoff::redis::shared_host_backoff hosts(fleet);
//   auto host = hosts.for_key("api.example.com:443");   // learns the fleet's release time once
//   backoff::redis::shared_budget budget(fleet, "api.example.com:443");
//   backoff::gate_chain gates{&host, &budget};
//   backoff::retry(policy, call, {.gate = &gates, .gate_first_attempt = true});
//   hosts.hold("api.example.com:443", now, 30s);        // a Retry-After: every process obeys it
//
// How it stays off the request path: gates answer from local state (atomics, a
// local host_backoff / retry_budget / circuit_breaker) and hand what they learn
// to the fleet's worker thread, which talks to Redis. Release times and breaker
// openings are raised in Redis by Lua scripts (never lowered) and pushed to the
// other processes by pub/sub; budget counts go up and retry tokens come back in
// batches (a lease) every sync_interval. The only waits are bounded by
// `timeout`: for_key() reads a key's state once, and the constructor connects.
//
// Redis down, slow or lost: every command has `timeout`; on the first failure
// the fleet is degraded() (one warning), the gates work on their local
// counterparts (fail open; `fail_closed` denies retries instead), and the
// worker reconnects with backoff (100 ms doubling to 5 s, full jitter) and
// rejoins: it resubscribes and re-reads every key in use.
//
// A hung Redis (it accepts connections, answers nothing) costs the same: the
// connect, AUTH, PING, SUBSCRIBE and every command are bounded by `timeout`, a
// reconnect counts only after a PONG, and the destructor shuts the
// subscriber's socket down rather than wait for it.
//
// TLS: rediss://HOST verifies the certificate (the system's CAs, or
// options.ca_file) and that it names HOST, and sends SNI (src/redis/connection.hpp).
//
// Passwords: redis://[USER[:PASSWORD]@]HOST (percent-decoded; a lone
// redis://SECRET@HOST is the password, as Redis clients read it) or
// options.password; every connection sends AUTH first. A refused password is
// one warning that says so, then local gates.
//
// Keys: PREFIX is the URL's path ("backoff" by default); a key K lives in
// "{PREFIX:K}:release", "{PREFIX:K}:budget", "{PREFIX:K}:breaker". The braces
// are a Redis Cluster hash tag: all of one key's state is in one slot, so each
// Lua script touches a single slot, as Cluster requires. On a cluster the URL
// may name any node: each command goes to its key's slot's master, learnt from
// MOVED (kept) and ASK (followed once, with ASKING); PUBLISH reaches every node,
// so the subscription stays on the URL's node. Losing a node is losing Redis:
// local gates until the reconnect, then the slots are learnt again.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "backoff/breaker.hpp"
#include "backoff/budget.hpp"
#include "backoff/gate.hpp"
#include "backoff/host_backoff.hpp"
#include "backoff/quota.hpp"

namespace backoff::redis {

struct fleet_options {
  std::string url = "redis://127.0.0.1:6379";            // redis://[USER[:PASSWORD]@]HOST[:PORT][/PREFIX]
  std::string password = {};                             // when set, instead of the URL's (AUTH)
  std::string ca_file = {};                              // rediss://: PEM CAs to trust instead of the system's
  std::chrono::milliseconds timeout{20};                 // connect and every command
  std::chrono::milliseconds sync_interval{100};          // budget counts and leases
  bool fail_closed = false;                              // Redis unreachable: deny retries
  std::function<void(const std::string&)> on_warning = {};  // "unreachable …", "… is back" (worker thread)
};

// Parses redis://[USER[:PASSWORD]@]HOST[:PORT][/PREFIX] (RFC 3986 userinfo,
// percent-decoded); throws std::invalid_argument naming what is wrong, with
// the password hidden as "***".
struct endpoint {
  std::string host;
  int port = 6379;
  std::string prefix = "backoff";
  std::string user{};      // AUTH USER PASSWORD (Redis 6 ACL); empty: AUTH PASSWORD
  std::string password{};  // empty: no AUTH
  bool tls = false;        // rediss://
};
// The URL with its password replaced by "***", for messages.
std::string shown_url(std::string_view url);
// The Redis Cluster hash slot of `key` (0..16383): CRC16 (XMODEM) of its hash
// tag (the text between the first '{' and the next '}', when not empty), else
// of the whole key, modulo 16384. The fleet's keys all carry a tag.
int key_slot(std::string_view key);
endpoint parse_url(std::string_view url);

class fleet {
 public:
  // Connects (bounded by options.timeout); an unreachable Redis leaves the
  // fleet degraded, never throws for it. Throws std::invalid_argument for a
  // bad URL or option.
  explicit fleet(fleet_options o);
  ~fleet();
  fleet(const fleet&) = delete;
  fleet& operator=(const fleet&) = delete;

  const fleet_options& options() const noexcept;
  const std::string& prefix() const noexcept;
  // Redis cannot be reached now: the gates are on their local counterparts.
  bool degraded() const noexcept;
  // Redis commands sent so far, and times the connection was lost.
  std::uint64_t commands() const noexcept;
  std::uint64_t disconnects() const noexcept;
  // This process's name in the fleet (host:pid:random).
  const std::string& id() const noexcept;

  struct impl;
  impl& internals() noexcept { return *impl_; }

 private:
  std::unique_ptr<impl> impl_;
};

// A fleet-wide host_backoff: release times per key, raised by any process and
// obeyed by all. The local host_backoff (options as given) answers acquire()
// and keeps working when Redis is away.
//
// With local.probe.enabled (host_backoff::options::probe), the release has no
// herd: when a release time passes, one process of the fleet sends the probe —
// the one that takes "{PREFIX:K}:release-probe" (SET NX PX, for
// probe.probe_timeout; kept by a process whose probe failed, so that it probes
// again after the next release). Its success publishes "ready", and every
// process opens the key: its held requests (rechecking every probe.recheck)
// leave by its own slow-start ramp. Redis away: each process probes for itself.
class shared_host_backoff {
 public:
  explicit shared_host_backoff(fleet& f, host_backoff::options local = {});
  ~shared_host_backoff();
  shared_host_backoff(const shared_host_backoff&) = delete;
  shared_host_backoff& operator=(const shared_host_backoff&) = delete;

  // A server hint for the key: a floor under its release time here, and in
  // every process of the fleet.
  void hold(std::string_view key, time_point now, duration hint);
  // A failure (with an optional hint): the local schedule pushes the release
  // time, and the result is shared like hold().
  void on_failure(std::string_view key, time_point now, std::optional<duration> hint = std::nullopt);
  void on_success(std::string_view key, time_point now);
  time_point release_time(std::string_view key, time_point now);
  // The local host_backoff: hand it to code that takes a host_backoff (such as
  // backoff::curl::client_options::hosts); what it learns is shared.
  host_backoff& local() noexcept;

  class key_gate final : public gate {
   public:
    gate_decision acquire(const gate_request& r) noexcept override;
    void record(const gate_outcome& o) noexcept override;

   private:
    friend class shared_host_backoff;
    key_gate(shared_host_backoff& owner, std::string key) : owner_(&owner), key_(std::move(key)) {}
    shared_host_backoff* owner_;
    std::string key_;
  };
  // A gate for the key. The first call for a key reads its fleet release time
  // (waiting at most the fleet's timeout), so that a fresh process obeys a
  // Retry-After that another one learned before it started.
  key_gate for_key(std::string key);

  // Called by the fleet's worker: a release time published by a process.
  void learned(const std::string& key, std::int64_t release_unix_ms);

 private:
  void share(std::string_view key, time_point now);
  fleet& fleet_;
  host_backoff local_;
};

// A quota shared by the fleet (backoff/quota.hpp): each process paces itself by
// what the server announces, with a local quota_pacer, and takes an equal share
// of each window — the quota ÷ the processes that use the key. The processes
// are counted in Redis ("{PREFIX:K}:quota", a sorted set): each joins when it
// starts to use a key (watch(), waiting at most the fleet's timeout), renews
// every sync_interval, and leaves when this object ends; a join or a leave is
// pushed to every process at once, and a process that died without leaving is
// forgotten after max(3 × sync_interval, 1 s). What a process learns of the
// current window (its reset, what is left, the limit) is written to
// "{PREFIX:K}:window" (at most every 50 ms a key), and a process that joins
// starts from it: it does not send blind into a window the fleet has spent.
// Redis away: the last count stays, and each process paces by its own answers.
class shared_quota {
 public:
  explicit shared_quota(fleet& f, quota_pacer::options local = {});
  ~shared_quota();  // leaves every key it joined (each bounded by the fleet's timeout)
  shared_quota(const shared_quota&) = delete;
  shared_quota& operator=(const shared_quota&) = delete;

  // This process spends the key's quota: counts it in, and learns how many do.
  void watch(const std::string& key);
  // The local pacer: hand it to code that takes one (backoff::curl::client_options::quotas).
  quota_pacer& local() noexcept;
  // Called by the fleet's worker: how many processes share the key.
  void learned(const std::string& key, std::int64_t parties);

 private:
  void share(std::string_view key, const quota_pacer::state& st);
  fleet& fleet_;
  quota_pacer local_;
  std::mutex mutex_;
  std::set<std::string> keys_;
};

// A fleet-wide retry budget (Finagle's rule over the fleet): retries may be at
// most `ratio` of the fleet's requests over `window`, plus `min_per_second`.
// acquire() spends tokens of a local lease (an atomic); the worker reports
// this process's requests and renews the lease every sync_interval. Tokens of
// a lease count as spent fleet-wide when they are granted.
class shared_budget final : public gate {
 public:
  struct options {
    double ratio = 0.1;                              // 0 or [0.001, 10]: the SRE book's 10 %
    double min_per_second = 1;                       // [0, 1e6]: for the whole fleet
    duration window = std::chrono::seconds{10};      // [1 s, 10 min] (Redis away: the last minute of it)
    std::int64_t max_lease = 50;                     // tokens a process may hold at once, >= 1
  };
  shared_budget(fleet& f, std::string key) : shared_budget(f, std::move(key), options{}) {}
  shared_budget(fleet& f, std::string key, options o);
  ~shared_budget() override;
  shared_budget(const shared_budget&) = delete;
  shared_budget& operator=(const shared_budget&) = delete;

  gate_decision acquire(const gate_request& r) noexcept override;
  void record(const gate_outcome& o) noexcept override;
  void release(const gate_request& r) noexcept override;

  std::int64_t lease() const noexcept;  // tokens this process holds now

  struct state;  // shared with the fleet's worker

 private:
  fleet& fleet_;
  std::shared_ptr<state> s_;
};

// A fleet-wide circuit breaker for a key. Each process runs its own breaker
// (options as for circuit_breaker); when one opens, it reports the opening,
// and once `quorum` distinct processes have reported within the break, the
// fleet is open for the key until the break ends: every process denies
// (circuit_open). After that, one probe at a time is allowed fleet-wide
// (a lock in Redis): the process that holds it sends its requests, the others
// are denied until its probe succeeds (the fleet closes) or the lock expires.
class shared_breaker final : public gate {
 public:
  struct options {
    circuit_breaker::options local{};
    std::uint32_t quorum = 1;  // processes that must agree before the fleet opens
  };
  shared_breaker(fleet& f, std::string key) : shared_breaker(f, std::move(key), options{}) {}
  shared_breaker(fleet& f, std::string key, options o);
  ~shared_breaker() override;
  shared_breaker(const shared_breaker&) = delete;
  shared_breaker& operator=(const shared_breaker&) = delete;

  gate_decision acquire(const gate_request& r) noexcept override;
  void record(const gate_outcome& o) noexcept override;
  void release(const gate_request& r) noexcept override;

  // Open fleet-wide now (as this process last heard).
  bool fleet_open(time_point now) const noexcept;

  struct state;

 private:
  fleet& fleet_;
  std::shared_ptr<state> s_;
};

}  // namespace backoff::redis
