// SPDX-License-Identifier: BSL-1.0
#include "backoff/redis/fleet.hpp"

#include "connection.hpp"
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "backoff/jitter.hpp"
#include "backoff/random.hpp"
#include "backoff/schedule.hpp"

namespace backoff::redis {

namespace {

using std::chrono::milliseconds;

// Release times cross machines, so Redis holds wall-clock milliseconds; the
// gates speak steady time. Both conversions go through "now" on each clock.
std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
std::int64_t to_unix_ms(time_point t) {
  const auto now = std::chrono::steady_clock::now();
  return unix_ms_now() + std::chrono::duration_cast<milliseconds>(t - now).count();
}
time_point from_unix_ms(std::int64_t ms) {
  return std::chrono::steady_clock::now() + milliseconds(ms - unix_ms_now());
}

std::optional<std::int64_t> to_int(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Raises a key's release time (never lowers it) and tells the fleet.
// KEYS[1] release key; ARGV: release ms, now ms, channel, key.
constexpr const char* raise_script = R"lua(
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local new = tonumber(ARGV[1])
if new <= cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'PX', math.max(1, new - tonumber(ARGV[2])) + 60000)
redis.call('PUBLISH', ARGV[3], 'release ' .. ARGV[1] .. ' ' .. ARGV[4])
return new
)lua";

// Adds this process's requests to the window and takes a lease of retry
// tokens, which count as retries at once. KEYS[1] budget hash; ARGV: bucket,
// buckets per window, new requests, tokens wanted, ratio, reserve per window,
// ttl ms. Returns the tokens granted.
constexpr const char* budget_script = R"lua(
local b = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local add = tonumber(ARGV[3])
if add > 0 then redis.call('HINCRBY', KEYS[1], 'q' .. b, add) end
local q, t = 0, 0
for i = b - w + 1, b do
  q = q + tonumber(redis.call('HGET', KEYS[1], 'q' .. i) or '0')
  t = t + tonumber(redis.call('HGET', KEYS[1], 't' .. i) or '0')
end
for i = b - 2 * w, b - w do redis.call('HDEL', KEYS[1], 'q' .. i, 't' .. i) end
local allowed = math.floor(tonumber(ARGV[5]) * q + tonumber(ARGV[6])) - t
local grant = math.max(0, math.min(tonumber(ARGV[4]), allowed))
if grant > 0 then redis.call('HINCRBY', KEYS[1], 't' .. b, grant) end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return grant
)lua";

// A process's breaker opened: its vote counts until its break ends; with
// `quorum` votes the fleet opens until the earliest of them ends.
// KEYS[1] votes (zset id → until), KEYS[2] open-until; ARGV: now, until, id,
// quorum, channel, key. Returns the fleet's open-until (0: not open).
constexpr const char* open_script = R"lua(
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(ARGV[2]) - now) + 60000)
local q = tonumber(ARGV[4])
if redis.call('ZCARD', KEYS[1]) < q then return 0 end
local votes = redis.call('ZRANGE', KEYS[1], -q, -q, 'WITHSCORES')
local untilv = votes[2]
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(untilv) > cur then
  redis.call('SET', KEYS[2], untilv, 'PX', math.max(1, tonumber(untilv) - now) + 60000)
  redis.call('PUBLISH', ARGV[5], 'open ' .. untilv .. ' ' .. ARGV[6])
  return tonumber(untilv)
end
return cur
)lua";

// A probe succeeded: the fleet closes. KEYS: votes, open-until, probe lock.
constexpr const char* close_script = R"lua(
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('PUBLISH', ARGV[1], 'closed 0 ' .. ARGV[2])
return 1
)lua";

// The release probe of a key (host_backoff::options::probe): this process
// may send it when it takes the lock or holds it already. KEYS[1] the lock;
// ARGV: id, ttl ms. Returns 1 when the probe is this process's.
constexpr const char* probe_script = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
)lua";

// This process's probe succeeded: the lock goes (when still ours) and every
// process opens the key. KEYS[1] the lock; ARGV: id, channel, release ms, key.
constexpr const char* ready_script = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], 'ready ' .. ARGV[3] .. ' ' .. ARGV[4])
return 1
)lua";

// The processes that spend a key's quota: KEYS[1] a sorted set of process ids
// scored by when their membership lapses. ARGV: now (unix ms), id, "join",
// "renew" or "leave", the membership's life (ms), the channel, the key. A join
// or a leave tells every process the new count ("parties N KEY").
constexpr const char* parties_script = R"lua(
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == 'leave' then
  redis.call('ZREM', KEYS[1], ARGV[2])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) + 60000)
local n = redis.call('ZCARD', KEYS[1])
if ARGV[3] ~= 'renew' then redis.call('PUBLISH', ARGV[5], 'parties ' .. n .. ' ' .. ARGV[6]) end
return n
)lua";

// What the fleet knows of a key's quota window: KEYS[1] a hash (reset, in unix
// ms; remaining; limit; window, ms). ARGV: now, reset, remaining, limit,
// window. Within the stored window (its reset not passed) the earliest reset
// and the least remaining win, as in one process's quota_pacer.
constexpr const char* quota_script = R"lua(
local now = tonumber(ARGV[1])
local reset = tonumber(ARGV[2])
local remaining = tonumber(ARGV[3])
local cur = redis.call('HMGET', KEYS[1], 'reset', 'remaining')
if tonumber(cur[1] or '0') > now then
  reset = math.min(reset, tonumber(cur[1]))
  remaining = math.min(remaining, tonumber(cur[2] or ARGV[3]))
end
redis.call('HSET', KEYS[1], 'reset', reset, 'remaining', remaining, 'limit', ARGV[4], 'window', ARGV[5])
redis.call('PEXPIRE', KEYS[1], math.max(1, reset - now) + 60000)
return remaining
)lua";

std::string make_id() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  std::random_device rd;
  return std::string(host) + ":" + std::to_string(::getpid()) + ":" + std::to_string(rd() % 1000000);
}

}  // namespace

int key_slot(std::string_view key) {
  if (const auto open = key.find('{'); open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  std::uint16_t crc = 0;
  for (const char ch : key) {
    crc ^= static_cast<std::uint16_t>(static_cast<unsigned char>(ch) << 8);
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 0x8000) ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021) : static_cast<std::uint16_t>(crc << 1);
  }
  return crc % 16384;
}

std::string shown_url(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  const auto start = scheme + 3;
  const auto end = url.find('/', start);
  const auto at = url.rfind('@', end == std::string_view::npos ? url.size() : end);
  if (at == std::string_view::npos || at < start) return std::string(url);
  const auto colon = url.find(':', start);
  if (colon == std::string_view::npos || colon > at) return std::string(url);  // a user name alone
  return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
}

namespace {

// RFC 3986 percent-decoding; nullopt for a '%' not followed by two hex digits.
std::optional<std::string> percent_decoded(std::string_view v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '%') {
      out += v[i];
      continue;
    }
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    if (i + 2 >= v.size()) return std::nullopt;
    const int hi = hex(v[i + 1]), lo = hex(v[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

}  // namespace

endpoint parse_url(std::string_view url) {
  const std::string shown = shown_url(url);
  endpoint e;
  std::string_view rest;
  if (url.starts_with("redis://")) {
    rest = url.substr(8);
  } else if (url.starts_with("rediss://")) {
    rest = url.substr(9);
    e.tls = true;
  } else {
    throw std::invalid_argument("redis URL '" + shown +
                                "': expected redis://[USER[:PASSWORD]@]HOST[:PORT][/PREFIX] (rediss:// for TLS)");
  }
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    const std::string_view prefix = rest.substr(slash + 1);
    if (!prefix.empty()) {
      if (prefix.find_first_of("{} \t\r\n") != std::string_view::npos)
        throw std::invalid_argument("redis URL '" + shown + "': the prefix may not hold braces or spaces");
      e.prefix = std::string(prefix);
    }
    rest = rest.substr(0, slash);
  }
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    const auto user = percent_decoded(userinfo.substr(0, colon));
    const auto password = colon == std::string_view::npos ? std::optional<std::string>("") : percent_decoded(userinfo.substr(colon + 1));
    if (!user || !password)
      throw std::invalid_argument("redis URL '" + shown + "': a '%' in the user or password is not followed by two hex digits");
    e.user = *user;
    e.password = *password;
    if (e.password.empty() && !e.user.empty() && colon == std::string_view::npos) {
      // redis://NAME@host: RFC 3986 calls it a user; Redis clients take it as the password when no ':' follows.
      e.password = e.user;
      e.user.clear();
    }
  }
  std::string_view host = rest, port_text;
  if (!rest.empty() && rest.front() == '[') {  // [IPv6]:PORT
    const auto close = rest.find(']');
    if (close == std::string_view::npos) throw std::invalid_argument("redis URL '" + shown + "': no ']'");
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') throw std::invalid_argument("redis URL '" + shown + "': expected ':' after ']'");
      port_text = rest.substr(close + 2);
    }
  } else if (const auto colon = rest.find(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
  }
  if (!port_text.empty() || (rest.find(':') != std::string_view::npos && rest.front() != '[')) {
    const auto port = to_int(port_text);
    if (!port || *port < 1 || *port > 65535)
      throw std::invalid_argument("redis URL '" + shown + "': the port must be 1..65535");
    e.port = static_cast<int>(*port);
  }
  rest = host;
  if (rest.empty()) throw std::invalid_argument("redis URL '" + shown + "': no host");
  e.host = std::string(rest);
  return e;
}

// --- the shared states the worker serves -------------------------------------------------------

struct shared_budget::state {
  std::string key;
  options o;
  // The lease on a cache line of its own: retries take and give back tokens
  // here, while first attempts count on the next line.
  alignas(64) std::atomic<std::int64_t> lease{0};
  alignas(64) std::atomic<std::int64_t> requests{0};  // first attempts not yet reported
  std::atomic<std::int64_t> unbanked{0};              // first attempts not yet deposited in `local`
  std::int64_t after_sync = 0;                        // the lease when the worker last topped it up (worker only)
  retry_budget local;                                 // when the fleet is degraded
  explicit state(std::string k, options opts)
      : key(std::move(k)), o(opts),
        // A Finagle budget counts over at most 60 s: a longer window is
        // counted over the last minute while Redis is away.
        local(retry_budget::finagle({.ttl = std::min<duration>(opts.window, std::chrono::seconds{60}),
                                     .min_retries_per_sec = opts.min_per_second,
                                     .percent_can_retry = opts.ratio})) {}
};

struct shared_breaker::state {
  std::string key;
  options o;
  circuit_breaker local;
  std::atomic<std::int64_t> open_until{0};  // fleet: unix ms (0: never opened)
  std::atomic<bool> half_open{false};       // the fleet break ended, no probe has succeeded yet
  std::atomic<bool> prober{false};          // this process holds the fleet's probe lock
  std::atomic<bool> electing{false};        // the worker is to try for the probe lock
  state(std::string k, options opts) : key(std::move(k)), o(opts), local(opts.local) {}
};

// --- the fleet: a worker for commands, a subscriber for news -----------------------------------

struct fleet::impl {
  fleet_options o;
  endpoint ep;
  std::string id = make_id();
  std::string channel;
  std::atomic<bool> degraded{true};
  std::atomic<std::uint64_t> commands{0}, disconnects{0};

  std::mutex mutex;  // guards everything below
  std::condition_variable wake;
  bool stopping = false;
  std::deque<std::function<void()>> queue;  // run by the worker, connected or not
  std::set<shared_host_backoff*> hosts;
  std::set<shared_quota*> quotas;
  std::set<std::string> quota_keys;  // joined by this process
  std::set<std::shared_ptr<shared_budget::state>> budgets;
  std::set<std::shared_ptr<shared_breaker::state>> breakers;
  std::map<std::string, std::int64_t> releases;  // key → highest release (unix ms) this process knows
  // Release probes (host_backoff::options::probe): whether this process holds
  // a key's lock (until when, unix ms), and whether the worker is asking for it.
  struct probe_lock {
    std::int64_t until = 0;
    bool asking = false;
  };
  std::map<std::string, probe_lock> probe_locks;
  // Release times to write, coalesced: a key is written at most once per
  // raise_gap, so that a host failing 10^4 times a second costs Redis 20
  // commands a second, while a lone Retry-After goes out at once.
  static constexpr std::chrono::milliseconds raise_gap{50};
  struct pending_raise {
    std::int64_t ms = 0;                     // to write (0: nothing)
    std::chrono::steady_clock::time_point sent{};
  };
  std::map<std::string, pending_raise> raises;
  // Quota windows to write, coalesced like release times.
  struct pending_quota {
    std::int64_t reset = 0, remaining = 0, limit = 0, window = 0;
    bool due = false;
    std::chrono::steady_clock::time_point sent{};
  };
  std::map<std::string, pending_quota> quota_writes;

  std::unique_ptr<detail::connection> cmd;  // worker thread only (and the constructor, before it starts)
  std::mutex sub_mutex;  // guards sub_fd against a close racing stop()'s shutdown
  int sub_fd = -1;
  std::thread worker, subscriber;

  std::string password;       // AUTH: options.password, else the URL's
  std::string connect_error;  // why the worker's last connect failed (worker thread)

  explicit impl(fleet_options opts) : o(std::move(opts)), ep(parse_url(o.url)) {
    password = o.password.empty() ? ep.password : o.password;
    if (o.timeout.count() <= 0) throw std::invalid_argument("backoff::redis::fleet: timeout must be > 0");
    if (o.sync_interval.count() <= 0) throw std::invalid_argument("backoff::redis::fleet: sync_interval must be > 0");
    channel = "{" + ep.prefix + "}:events";
  }

  std::string key_of(const std::string& key, const char* what) const { return "{" + ep.prefix + ":" + key + "}:" + what; }

  // A connection whose connect, AUTH and every command are bounded by
  // `timeout` (detail::connection): nothing waits on Redis for longer,
  // whatever it does. `why` (when given) says what failed.
  std::unique_ptr<detail::connection> open(std::chrono::milliseconds timeout, std::string* why = nullptr) const {
    return open_at(ep.host, ep.port, timeout, why);
  }
  std::unique_ptr<detail::connection> open_at(const std::string& host, int port, std::chrono::milliseconds timeout,
                                              std::string* why) const {
    std::string error;
    auto c = detail::connection::open({host, port, ep.tls, o.ca_file, ep.user, password}, timeout, error);
    if (!c && why) *why = error;
    return c;
  }

  void warn(const std::string& text) {
    if (o.on_warning) o.on_warning(text);
  }

  // Connects the worker and proves that Redis answers: a hung Redis (its
  // kernel still accepts connections) must not count as back.
  bool connect_cmd() {
    connect_error.clear();
    cmd = open_any(&cmd_addr, &connect_error);
    if (!cmd) return false;
    const auto r = cmd->command({"PING"});
    const bool pong = r && r->type == REDIS_REPLY_STATUS;
    if (!pong) {
      connect_error = r && r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len)
                                                        : cmd->error().empty() ? "no answer to PING" : cmd->error();
      cmd.reset();
      return false;
    }
    learn_cluster_nodes();
    return true;
  }

  // Redis Cluster: the nodes CLUSTER SLOTS names (masters and replicas), so
  // that losing the URL's node is not losing the fleet: the worker and the
  // subscriber connect to the next node that answers, and MOVED leads on from
  // there. Guarded by `mutex` (the subscriber reads it).
  std::vector<std::string> cluster_nodes;
  std::string cmd_addr;  // the node `cmd` talks to (worker thread)

  std::string url_address() const { return ep.host + ":" + std::to_string(ep.port); }

  void learn_cluster_nodes() {
    const auto r = cmd->command({"CLUSTER", "SLOTS"});
    if (!r || r->type != REDIS_REPLY_ARRAY) return;  // not a cluster (an error reply), or lost
    std::vector<std::string> nodes;
    for (std::size_t i = 0; i < r->elements; ++i) {
      const redisReply* range = r->element[i];
      if (range->type != REDIS_REPLY_ARRAY) continue;
      for (std::size_t k = 2; k < range->elements; ++k) {
        const redisReply* n = range->element[k];
        if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 || n->element[0]->type != REDIS_REPLY_STRING ||
            n->element[1]->type != REDIS_REPLY_INTEGER)
          continue;
        std::string host(n->element[0]->str, n->element[0]->len);
        if (host.empty()) host = ep.host;
        const std::string addr = host + ":" + std::to_string(n->element[1]->integer);
        if (std::find(nodes.begin(), nodes.end(), addr) == nodes.end()) nodes.push_back(addr);
      }
    }
    if (nodes.empty()) return;
    std::lock_guard lock(mutex);
    cluster_nodes = std::move(nodes);
  }

  // A connection to "host:port" as CLUSTER SLOTS and MOVED name nodes (an
  // empty host, as in "MOVED 42 :7001", is the URL's); null when it does not connect.
  std::unique_ptr<detail::connection> open_address(const std::string& addr) const {
    const auto colon = addr.rfind(':');
    const auto port = colon == std::string::npos ? std::nullopt : to_int(std::string_view(addr).substr(colon + 1));
    if (!port || *port < 1 || *port > 65535) return nullptr;
    const std::string host = colon == 0 ? ep.host : addr.substr(0, colon);
    return open_at(host, static_cast<int>(*port), o.timeout, nullptr);
  }

  // The URL's node, else the first known cluster node that connects; `addr`
  // (when given) gets which one.
  std::unique_ptr<detail::connection> open_any(std::string* addr, std::string* why) {
    if (auto c = open(o.timeout, why)) {
      if (addr) *addr = url_address();
      return c;
    }
    std::vector<std::string> nodes;
    {
      std::lock_guard lock(mutex);
      nodes = cluster_nodes;
    }
    for (const auto& n : nodes) {
      if (n == url_address()) continue;
      if (auto c = open_address(n)) {
        if (addr) *addr = n;
        return c;
      }
    }
    return nullptr;
  }

  void lost(const std::string& why) {
    cmd.reset();
    others.clear();
    slot_owner.clear();
    if (!degraded.exchange(true)) {
      ++disconnects;
      warn("Redis at " + ep.host + ":" + std::to_string(ep.port) + " unreachable (" + why +
           "): gates are local until it is back");
    }
  }

  // One command on the worker's connection; nullptr (and degraded) on failure.
  using reply = detail::reply;
  // Redis Cluster: the node that serves a slot, as MOVED said ("host:port";
  // absent: the URL's node), and the connections to nodes other than the
  // URL's (worker thread only).
  std::map<int, std::string> slot_owner;
  std::map<std::string, std::unique_ptr<detail::connection>> others;

  detail::connection* node(const std::string& addr) {
    if (auto it = others.find(addr); it != others.end()) return it->second.get();
    auto c = open_address(addr);
    if (!c) return nullptr;
    return others.emplace(addr, std::move(c)).first->second.get();
  }

  // One command, sent to the node that serves its key's slot (following
  // MOVED, which also teaches the slot's owner, and ASK, which does not);
  // nullptr (and degraded) on failure.
  reply run(const std::vector<std::string>& args) {
    if (!cmd) return nullptr;
    const int slot = command_slot(args);
    std::string addr;
    if (const auto it = slot_owner.find(slot); slot >= 0 && it != slot_owner.end()) addr = it->second;
    bool asking = false;
    for (int hop = 0; hop < max_redirects; ++hop) {
      detail::connection* c = addr.empty() ? cmd.get() : node(addr);
      if (!c) {
        lost("cannot reach the cluster node " + addr);
        return nullptr;
      }
      if (asking) (void)c->command({"ASKING"});
      ++commands;
      reply r = c->command(args);
      if (!r) {
        lost(c->error().empty() ? "no reply" : c->error());
        return nullptr;
      }
      if (r->type == REDIS_REPLY_ERROR) {
        const std::string text(r->str, r->len);
        if (const auto to = redirect_of(text)) {
          asking = to->ask;
          addr = to->address == cmd_addr ? std::string() : to->address;
          if (!to->ask) {
            if (addr.empty()) slot_owner.erase(to->slot);
            else slot_owner[to->slot] = addr;
          }
          continue;
        }
        warn("Redis error: " + text);
        return nullptr;
      }
      return r;
    }
    warn("Redis Cluster: more than " + std::to_string(max_redirects) + " redirections for one command");
    return nullptr;
  }

  static constexpr int max_redirects = 5;

  // The slot of a command's first key (-1: it has none): GET/SET KEY …, EVAL SCRIPT N KEY ….
  static int command_slot(const std::vector<std::string>& args) {
    if (args.empty()) return -1;
    if (args[0] == "EVAL" || args[0] == "EVALSHA") return args.size() > 3 && args[2] != "0" ? key_slot(args[3]) : -1;
    return args.size() > 1 ? key_slot(args[1]) : -1;
  }

  struct redirect {
    bool ask = false;
    int slot = 0;
    std::string address;
  };
  // "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381"; nullopt for any other error.
  static std::optional<redirect> redirect_of(std::string_view e) {
    redirect r;
    if (e.starts_with("MOVED ")) e.remove_prefix(6);
    else if (e.starts_with("ASK ")) {
      e.remove_prefix(4);
      r.ask = true;
    } else {
      return std::nullopt;
    }
    const auto sp = e.find(' ');
    if (sp == std::string_view::npos) return std::nullopt;
    const auto slot = to_int(e.substr(0, sp));
    if (!slot || *slot < 0 || *slot >= 16384) return std::nullopt;
    r.slot = static_cast<int>(*slot);
    r.address = std::string(e.substr(sp + 1));
    return r;
  }

  static std::int64_t integer(const reply& r) {
    if (!r) return 0;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r->type == REDIS_REPLY_STRING) return to_int(std::string_view(r->str, r->len)).value_or(0);
    return 0;
  }

  void post(std::function<void()> f) {
    {
      std::lock_guard lock(mutex);
      queue.push_back(std::move(f));
    }
    wake.notify_one();
  }

  // --- what the fleet learns --------------------------------------------------------------------

  void learned_release(const std::string& key, std::int64_t ms) {
    std::vector<shared_host_backoff*> to_tell;
    {
      std::lock_guard lock(mutex);
      auto& known = releases[key];
      if (ms <= known) return;
      known = ms;
      to_tell.assign(hosts.begin(), hosts.end());
    }
    for (auto* h : to_tell) h->learned(key, ms);
  }

  void learned_open(const std::string& key, std::int64_t until) {
    std::lock_guard lock(mutex);
    for (const auto& b : breakers) {
      if (b->key != key) continue;
      std::int64_t cur = b->open_until.load();
      while (until > cur && !b->open_until.compare_exchange_weak(cur, until)) {
      }
      b->half_open = true;  // once the break ends, until a probe succeeds
    }
  }

  void learned_closed(const std::string& key) {
    std::lock_guard lock(mutex);
    for (const auto& b : breakers) {
      if (b->key != key) continue;
      b->half_open = false;
      b->prober = false;
    }
  }

  // Another process's probe (or ours) succeeded: the key opens everywhere.
  void learned_ready(const std::string& key, std::int64_t release_ms) {
    std::vector<shared_host_backoff*> to_tell;
    {
      std::lock_guard lock(mutex);
      to_tell.assign(hosts.begin(), hosts.end());
      probe_locks.erase(key);
    }
    const auto now = std::chrono::steady_clock::now();
    for (auto* h : to_tell) h->local().open(key, now, from_unix_ms(release_ms));
  }

  // May this process send the key's release probe? Yes when degraded (each
  // process probes for itself) or while it holds the lock; otherwise the
  // worker asks for the lock, and the answer is for the next time.
  bool may_probe(const std::string& key, std::chrono::milliseconds ttl) {
    if (degraded) return true;
    std::lock_guard lock(mutex);
    auto& p = probe_locks[key];
    if (p.until > unix_ms_now()) return true;
    if (!p.asking) {
      p.asking = true;
      queue.push_back([this, key, ttl] { take_probe(key, ttl); });
      wake.notify_one();
    }
    return false;
  }

  void take_probe(const std::string& key, std::chrono::milliseconds ttl) {
    const std::int64_t asked = unix_ms_now();
    const auto r = cmd ? run({"EVAL", probe_script, "1", key_of(key, "release-probe"), id, std::to_string(ttl.count())})
                       : reply{};
    std::lock_guard lock(mutex);
    auto& p = probe_locks[key];
    p.asking = false;
    // Ours for a little less than the lock lives, counted from the asking.
    p.until = integer(r) == 1 ? asked + ttl.count() - 100 : 0;
  }

  void probe_succeeded(const std::string& key, std::int64_t release_ms) {
    if (!cmd) return;
    run({"EVAL", ready_script, "1", key_of(key, "release-probe"), id, channel, std::to_string(release_ms), key});
  }

  void learned_parties(const std::string& key, std::int64_t n) {
    std::vector<shared_quota*> to_tell;
    {
      std::lock_guard lock(mutex);
      to_tell.assign(quotas.begin(), quotas.end());
    }
    for (auto* q : to_tell) q->learned(key, n);
  }

  void write_quota(const std::string& key, const pending_quota& q) {
    if (!cmd) return;
    run({"EVAL", quota_script, "1", key_of(key, "window"), std::to_string(unix_ms_now()), std::to_string(q.reset),
         std::to_string(q.remaining), std::to_string(q.limit), std::to_string(q.window)});
  }

  // What the fleet knows of the key's window, for a process that starts to use it.
  void read_quota(const std::string& key) {
    if (!cmd) return;
    const auto r = run({"HMGET", key_of(key, "window"), "reset", "remaining", "limit", "window"});
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4) return;
    std::optional<std::int64_t> v[4];
    for (std::size_t k = 0; k < 4; ++k)
      if (r->element[k]->type == REDIS_REPLY_STRING) v[k] = to_int(std::string_view(r->element[k]->str, r->element[k]->len));
    const std::int64_t now = unix_ms_now();
    if (!v[0] || !v[1] || *v[0] <= now || *v[1] < 0) return;
    quota_notice n;
    n.remaining = static_cast<std::uint64_t>(*v[1]);
    // Each process turns its steady clock into unix milliseconds and back:
    // allow for the rounding, so that this process never goes before the reset.
    n.reset = milliseconds(*v[0] - now + 10);
    if (v[2] && *v[2] > 0) n.limit = static_cast<std::uint64_t>(*v[2]);
    if (v[3] && *v[3] > 0) n.window = milliseconds(*v[3]);
    std::vector<shared_quota*> to_tell;
    {
      std::lock_guard lock(mutex);
      to_tell.assign(quotas.begin(), quotas.end());
    }
    for (auto* q : to_tell) q->local().learn(key, n, std::chrono::steady_clock::now());
  }

  // Joins, renews or leaves the key's quota (see parties_script).
  void parties(const std::string& key, const char* how) {
    if (!cmd) return;
    const auto life = std::max<std::int64_t>(1000, 3 * o.sync_interval.count());
    const auto r = run({"EVAL", parties_script, "1", key_of(key, "quota"), std::to_string(unix_ms_now()), id, how,
                        std::to_string(life), channel, key});
    if (r && r->type == REDIS_REPLY_INTEGER) learned_parties(key, r->integer);
  }

  void message(std::string_view text) {
    // "release MS KEY", "ready MS KEY", "open MS KEY", "closed 0 KEY", "parties N KEY"
    const auto a = text.find(' ');
    if (a == std::string_view::npos) return;
    const auto b = text.find(' ', a + 1);
    if (b == std::string_view::npos) return;
    const std::string_view kind = text.substr(0, a);
    const auto ms = to_int(text.substr(a + 1, b - a - 1));
    const std::string key(text.substr(b + 1));
    if (!ms) return;
    if (kind == "release") learned_release(key, *ms);
    else if (kind == "ready") learned_ready(key, *ms);
    else if (kind == "open") learned_open(key, *ms);
    else if (kind == "closed") learned_closed(key);
    else if (kind == "parties") learned_parties(key, *ms);
  }

  // --- the worker -------------------------------------------------------------------------------

  // After (re)connecting: what this process knows goes up, what the fleet knows comes down.
  void rejoin() {
    std::vector<std::pair<std::string, std::int64_t>> known;
    std::vector<std::shared_ptr<shared_breaker::state>> bs;
    {
      std::lock_guard lock(mutex);
      known.assign(releases.begin(), releases.end());
      bs.assign(breakers.begin(), breakers.end());
    }
    const std::int64_t now = unix_ms_now();
    for (const auto& [key, ms] : known) {
      if (ms > now) raise(key, ms);
      else read_release(key);
    }
    for (const auto& b : bs) read_open(*b);
  }

  void raise(const std::string& key, std::int64_t ms) {
    if (!cmd) return;
    const auto r = run({"EVAL", raise_script, "1", key_of(key, "release"), std::to_string(ms),
                        std::to_string(unix_ms_now()), channel, key});
    if (r) learned_release(key, integer(r));
  }

  void read_release(const std::string& key) {
    if (!cmd) return;
    const auto r = run({"GET", key_of(key, "release")});
    if (r && r->type == REDIS_REPLY_STRING) learned_release(key, integer(r));
  }

  void read_open(shared_breaker::state& b) {
    if (!cmd) return;
    const auto r = run({"GET", key_of(b.key, "open")});
    if (r && r->type == REDIS_REPLY_STRING) learned_open(b.key, integer(r));
  }

  void sync_budget(shared_budget::state& b) {
    const std::int64_t lease = b.lease.load();
    // What this process spent since the last sync sizes the next lease.
    const std::int64_t used = std::max<std::int64_t>(0, b.after_sync - lease);
    const std::int64_t target = std::clamp<std::int64_t>(2 * used, 1, b.o.max_lease);
    const std::int64_t requests = b.requests.exchange(0);
    const std::int64_t want = std::max<std::int64_t>(0, target - lease);
    b.after_sync = lease;
    if (requests == 0 && want == 0) return;
    const auto bucket_ms = std::max<std::int64_t>(1, std::chrono::duration_cast<milliseconds>(b.o.window).count() / 10);
    const double reserve = b.o.min_per_second * std::chrono::duration<double>(b.o.window).count();
    char ratio[32], floor_text[32];
    std::snprintf(ratio, sizeof ratio, "%.6f", b.o.ratio);
    std::snprintf(floor_text, sizeof floor_text, "%.6f", reserve);
    const auto r = run({"EVAL", budget_script, "1", key_of(b.key, "budget"), std::to_string(unix_ms_now() / bucket_ms),
                        "10", std::to_string(requests), std::to_string(want), ratio, floor_text,
                        std::to_string(bucket_ms * 20 + 1000)});
    if (!r) {
      b.requests += requests;  // reported next time
      return;
    }
    const std::int64_t granted = integer(r);
    b.after_sync = b.lease.fetch_add(granted) + granted;
  }

  void elect(shared_breaker::state& b) {
    b.electing = false;
    if (!cmd) return;
    const auto ttl = std::chrono::duration_cast<milliseconds>(b.o.local.break_duration).count();
    const auto r = run({"SET", key_of(b.key, "probe"), id, "NX", "PX", std::to_string(std::max<std::int64_t>(1, ttl))});
    if (r && r->type == REDIS_REPLY_STATUS) b.prober = true;
  }

  // Runs every sync_interval, connected or not.
  void bank() {
    std::vector<std::shared_ptr<shared_budget::state>> bs;
    {
      std::lock_guard lock(mutex);
      bs.assign(budgets.begin(), budgets.end());
    }
    const time_point now = std::chrono::steady_clock::now();
    for (const auto& b : bs)
      for (std::int64_t n = b->unbanked.exchange(0); n > 0; --n)
        b->local.record({attempt_outcome::success, false, false, now});
  }

  void tick() {
    std::vector<std::shared_ptr<shared_budget::state>> bs;
    std::vector<std::shared_ptr<shared_breaker::state>> ks;
    std::vector<std::string> qs;
    {
      std::lock_guard lock(mutex);
      bs.assign(budgets.begin(), budgets.end());
      ks.assign(breakers.begin(), breakers.end());
      qs.assign(quota_keys.begin(), quota_keys.end());
    }
    for (const auto& k : qs) {
      if (!cmd) break;
      parties(k, "renew");
    }
    for (const auto& b : bs) {
      if (!cmd) break;
      sync_budget(*b);
    }
    for (const auto& k : ks) {
      if (!cmd) break;
      if (k->electing) elect(*k);
    }
  }

  void work() {
    fast_rng rng{std::random_device{}()};
    const backoff::schedule reconnect = exponential{.initial = milliseconds(100), .multiplier = 2.0, .max_delay = std::chrono::seconds(5)};
    const backoff::jitter jitter = backoff::jitter::full();
    schedule_state attempts;
    auto next_connect = std::chrono::steady_clock::now();
    auto next_tick = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex);
    while (!stopping) {
      const auto now = std::chrono::steady_clock::now();
      if (!cmd && now >= next_connect) {
        lock.unlock();
        if (connect_cmd()) {
          attempts = {};
          if (degraded.exchange(false)) warn("Redis at " + ep.host + ":" + std::to_string(ep.port) + " is back: gates are shared again");
          rejoin();
        } else {
          const auto d = jitter.apply(reconnect.next(attempts, rng), reconnect.cap(), rng);
          next_connect = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
          lost(connect_error.empty() ? "cannot connect" : connect_error);
        }
        lock.lock();
        continue;
      }
      if (cmd) {
        // Release times due to be written (see raise_gap).
        std::vector<std::pair<std::string, std::int64_t>> due;
        for (auto& [key, p] : raises) {
          if (p.ms == 0 || now - p.sent < raise_gap) continue;
          due.emplace_back(key, p.ms);
          p.ms = 0;
          p.sent = now;
        }
        if (!due.empty()) {
          lock.unlock();
          for (const auto& [key, ms] : due) raise(key, ms);
          lock.lock();
          continue;
        }
        std::vector<std::pair<std::string, pending_quota>> windows;
        for (auto& [key, q] : quota_writes) {
          if (!q.due || now - q.sent < raise_gap) continue;
          windows.emplace_back(key, q);
          q.due = false;
          q.sent = now;
        }
        if (!windows.empty()) {
          lock.unlock();
          for (const auto& [key, q] : windows) write_quota(key, q);
          lock.lock();
          continue;
        }
      }
      if (!queue.empty()) {
        auto f = std::move(queue.front());
        queue.pop_front();
        lock.unlock();
        f();
        lock.lock();
        continue;
      }
      if (now >= next_tick) {
        next_tick = now + o.sync_interval;
        lock.unlock();
        bank();
        if (cmd) tick();
        lock.lock();
        continue;
      }
      auto until = next_tick;
      if (!cmd) until = std::min(until, next_connect);
      for (const auto& [key, p] : raises)
        if (p.ms != 0) until = std::min(until, p.sent + raise_gap);
      for (const auto& [key, q] : quota_writes)
        if (q.due) until = std::min(until, q.sent + raise_gap);
      wake.wait_until(lock, until);
    }
  }

  // The subscriber has its own connection; it waits on the socket with poll()
  // so that it can stop, and reconnects on its own.
  void listen() {
    fast_rng rng{std::random_device{}()};
    const backoff::schedule reconnect = exponential{.initial = milliseconds(100), .multiplier = 2.0, .max_delay = std::chrono::seconds(5)};
    schedule_state attempts;
    while (true) {
      {
        std::lock_guard lock(mutex);
        if (stopping) return;
      }
      std::unique_ptr<detail::connection> c = open_any(nullptr, nullptr);
      bool subscribed = false;
      if (c) {
        {
          std::lock_guard fd_lock(sub_mutex);
          sub_fd = c->fd();  // stop() shuts it down: this thread never stays in a read past it
        }
        const auto r = c->command({"SUBSCRIBE", channel});
        subscribed = r && r->type == REDIS_REPLY_ARRAY;
      }
      if (!subscribed) {
        if (c) {
          std::lock_guard fd_lock(sub_mutex);
          sub_fd = -1;
          c.reset();
        }
        const auto d = backoff::jitter::full().apply(reconnect.next(attempts, rng), reconnect.cap(), rng);
        std::unique_lock lock(mutex);
        wake.wait_for(lock, d, [&] { return stopping; });
        continue;
      }
      attempts = {};
      // Messages published while the subscription was down are lost: read again.
      post([this] { rejoin(); });
      for (;;) {
        {
          std::lock_guard lock(mutex);
          if (stopping) break;
        }
        if (const auto r = c->buffered()) {
          if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING)
            message(std::string_view(r->element[2]->str, r->element[2]->len));
          continue;
        }
        if (!c->error().empty()) break;  // not a Redis reply: reconnect
        if (c->pending()) {              // TLS holds decrypted bytes the socket no longer shows
          if (!c->read_available()) break;
          continue;
        }
        pollfd p{c->fd(), POLLIN, 0};
        const int n = ::poll(&p, 1, 250);
        if (n < 0 && errno != EINTR) break;
        if (n > 0 && !c->read_available()) break;
      }
      std::lock_guard fd_lock(sub_mutex);
      sub_fd = -1;
      c.reset();
    }
  }

  void start() {
    // The first connection is made here, bounded by the timeout, so that a
    // fresh process knows at once whether it is part of the fleet.
    if (connect_cmd()) {
      degraded = false;
    } else {
      ++disconnects;
      warn("Redis at " + ep.host + ":" + std::to_string(ep.port) + " unreachable" +
           (connect_error.empty() ? std::string() : " (" + connect_error + ")") + ": gates are local until it is back");
    }
    worker = std::thread([this] { work(); });
    subscriber = std::thread([this] { listen(); });
  }

  void stop() {
    // (the worker's connections to other cluster nodes are freed below, after it ended)
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    {
      std::lock_guard fd_lock(sub_mutex);
      if (sub_fd >= 0) ::shutdown(sub_fd, SHUT_RDWR);
    }
    if (worker.joinable()) worker.join();
    if (subscriber.joinable()) subscriber.join();
    cmd.reset();
    others.clear();
  }

  // Runs `f` on the worker and waits for it at most the timeout.
  void run_bounded(std::function<void()> f) {
    auto done = std::make_shared<std::promise<void>>();
    auto fut = done->get_future();
    post([f = std::move(f), done] {
      f();
      done->set_value();
    });
    fut.wait_for(o.timeout);
  }
};

fleet::fleet(fleet_options o) : impl_(std::make_unique<impl>(std::move(o))) { impl_->start(); }
fleet::~fleet() { impl_->stop(); }
const fleet_options& fleet::options() const noexcept { return impl_->o; }
const std::string& fleet::prefix() const noexcept { return impl_->ep.prefix; }
bool fleet::degraded() const noexcept { return impl_->degraded.load(); }
std::uint64_t fleet::commands() const noexcept { return impl_->commands.load(); }
std::uint64_t fleet::disconnects() const noexcept { return impl_->disconnects.load(); }
const std::string& fleet::id() const noexcept { return impl_->id; }

// --- shared_host_backoff ------------------------------------------------------------------------

shared_host_backoff::shared_host_backoff(fleet& f, host_backoff::options local)
    : fleet_(f), local_([&] {
        local.on_raise = [this](std::string_view key, time_point release) { share(key, release); };
        if (local.probe.enabled) {
          // One probe for the fleet: the process that holds the key's lock in Redis.
          const auto ttl = std::max(std::chrono::milliseconds{200},
                                    std::chrono::duration_cast<std::chrono::milliseconds>(local.probe.probe_timeout));
          if (!local.probe.may_probe)
            local.probe.may_probe = [this, ttl](std::string_view key, time_point) {
              return fleet_.internals().may_probe(std::string(key), ttl);
            };
          if (!local.probe.on_open)
            local.probe.on_open = [this](std::string_view key, time_point, time_point release) {
              auto& i = fleet_.internals();
              i.post([&i, k = std::string(key), ms = to_unix_ms(release)] { i.probe_succeeded(k, ms); });
            };
        }
        return std::move(local);
      }()) {
  auto& i = fleet_.internals();
  std::lock_guard lock(i.mutex);
  i.hosts.insert(this);
}

shared_host_backoff::~shared_host_backoff() {
  auto& i = fleet_.internals();
  std::lock_guard lock(i.mutex);
  i.hosts.erase(this);
}

void shared_host_backoff::share(std::string_view key, time_point release) {
  auto& i = fleet_.internals();
  const std::int64_t ms = to_unix_ms(release);
  {
    std::lock_guard lock(i.mutex);
    auto& known = i.releases[std::string(key)];
    if (ms <= known + 5) return;  // what the fleet told us, echoed by our own clock conversion
    known = ms;
  }
  {
    std::lock_guard lock(i.mutex);
    auto& p = i.raises[std::string(key)];
    p.ms = std::max(p.ms, ms);
  }
  i.wake.notify_one();
}

void shared_host_backoff::learned(const std::string& key, std::int64_t release_unix_ms) {
  const time_point release = from_unix_ms(release_unix_ms);
  const time_point now = std::chrono::steady_clock::now();
  if (release > now) local_.hold(key, now, release - now);
}

void shared_host_backoff::hold(std::string_view key, time_point now, duration hint) { local_.hold(key, now, hint); }
void shared_host_backoff::on_failure(std::string_view key, time_point now, std::optional<duration> hint) {
  local_.on_failure(key, now, hint);
}
void shared_host_backoff::on_success(std::string_view key, time_point now) { local_.on_success(key, now); }
time_point shared_host_backoff::release_time(std::string_view key, time_point now) { return local_.release_time(key, now); }

shared_host_backoff::key_gate shared_host_backoff::for_key(std::string key) {
  auto& i = fleet_.internals();
  bool known = false;
  {
    std::lock_guard lock(i.mutex);
    known = i.releases.count(key) > 0;
    if (!known) i.releases.emplace(key, 0);
  }
  if (!known && !i.degraded) i.run_bounded([&i, key] { i.read_release(key); });
  return key_gate(*this, std::move(key));
}

host_backoff& shared_host_backoff::local() noexcept { return local_; }

gate_decision shared_host_backoff::key_gate::acquire(const gate_request& r) noexcept {
  return owner_->local().admit(key_, r.now, r.recheck);
}

void shared_host_backoff::key_gate::record(const gate_outcome& o) noexcept {
  if (o.outcome == attempt_outcome::retryable) owner_->on_failure(key_, o.now);
  else if (o.outcome == attempt_outcome::success) owner_->on_success(key_, o.now);
}

// --- shared_quota -------------------------------------------------------------------------------

shared_quota::shared_quota(fleet& f, quota_pacer::options local)
    : fleet_(f), local_([&] {
        local.on_learn = [this](std::string_view key, const quota_pacer::state& st) { share(key, st); };
        return std::move(local);
      }()) {
  auto& i = fleet_.internals();
  std::lock_guard lock(i.mutex);
  i.quotas.insert(this);
}

shared_quota::~shared_quota() {
  auto& i = fleet_.internals();
  std::set<std::string> keys;
  {
    std::lock_guard lock(mutex_);
    keys.swap(keys_);
  }
  {
    std::lock_guard lock(i.mutex);
    i.quotas.erase(this);
    for (const auto& k : keys) i.quota_keys.erase(k);
  }
  // Leaving at once gives the others this process's share in their next window;
  // what it last learnt of a window, still waiting to be written, goes too.
  if (!keys.empty() && !i.degraded)
    i.run_bounded([&i, keys] {
      std::vector<std::pair<std::string, fleet::impl::pending_quota>> unwritten;
      {
        std::lock_guard lock(i.mutex);
        for (auto& [k, q] : i.quota_writes)
          if (q.due) unwritten.emplace_back(k, q), q.due = false;
      }
      for (const auto& [k, q] : unwritten) i.write_quota(k, q);
      for (const auto& k : keys) i.parties(k, "leave");
    });
}

void shared_quota::watch(const std::string& key) {
  {
    std::lock_guard lock(mutex_);
    if (!keys_.insert(key).second) return;
  }
  auto& i = fleet_.internals();
  {
    std::lock_guard lock(i.mutex);
    i.quota_keys.insert(key);
  }
  if (!i.degraded)
    i.run_bounded([&i, key] {
      i.parties(key, "join");
      i.read_quota(key);
    });
}

void shared_quota::share(std::string_view key, const quota_pacer::state& st) {
  if (!st.reset) return;
  auto& i = fleet_.internals();
  {
    std::lock_guard lock(i.mutex);
    auto& q = i.quota_writes[std::string(key)];
    q.reset = to_unix_ms(*st.reset);
    // What is left as far as this process can tell: its requests in flight
    // will spend some of what the server last announced.
    const std::uint64_t left = st.remaining > st.in_flight ? st.remaining - st.in_flight : 0;
    q.remaining = static_cast<std::int64_t>(std::min<std::uint64_t>(left, INT64_MAX));
    q.limit = static_cast<std::int64_t>(std::min<std::uint64_t>(st.limit, INT64_MAX));
    q.window = std::chrono::duration_cast<milliseconds>(st.window).count();
    q.due = true;
  }
  i.wake.notify_one();
}

quota_pacer& shared_quota::local() noexcept { return local_; }

void shared_quota::learned(const std::string& key, std::int64_t parties) {
  if (parties < 1) return;
  local_.set_parties(key, static_cast<std::uint32_t>(std::min<std::int64_t>(parties, 1'000'000)),
                     std::chrono::steady_clock::now());
}

// --- shared_budget ------------------------------------------------------------------------------

shared_budget::shared_budget(fleet& f, std::string key, options o) : fleet_(f) {
  // The local budget (Redis away) is a Finagle one: the same bounds.
  if (!(o.ratio == 0 || (o.ratio >= 0.001 && o.ratio <= 10)))
    throw std::invalid_argument("backoff::redis::shared_budget: ratio must be 0 or in [0.001, 10]");
  if (!(o.min_per_second >= 0 && o.min_per_second <= 1e6))
    throw std::invalid_argument("backoff::redis::shared_budget: min_per_second must be in [0, 1e6]");
  if (o.window < std::chrono::seconds(1) || o.window > std::chrono::minutes(10))
    throw std::invalid_argument("backoff::redis::shared_budget: window must be in [1s, 10min]");
  if (o.max_lease < 1) throw std::invalid_argument("backoff::redis::shared_budget: max_lease must be >= 1");
  s_ = std::make_shared<state>(std::move(key), o);
  auto& i = fleet_.internals();
  {
    std::lock_guard lock(i.mutex);
    i.budgets.insert(s_);
  }
  // A first lease now, so that the first retry of a fresh process finds one.
  if (!i.degraded) {
    auto s = s_;
    i.run_bounded([&i, s] { i.sync_budget(*s); });
  }
}

shared_budget::~shared_budget() {
  auto& i = fleet_.internals();
  std::lock_guard lock(i.mutex);
  i.budgets.erase(s_);
}

std::int64_t shared_budget::lease() const noexcept { return s_->lease.load(); }

gate_decision shared_budget::acquire(const gate_request& r) noexcept {
  state& s = *s_;
  if (!r.retry) return gate_decision::allow();
  if (fleet_.degraded()) {
    // The local budget knows this process's requests (record() deposits them
    // either way), so it takes over at once.
    if (fleet_.options().fail_closed) return gate_decision::deny(stop_reason::budget_exhausted);
    return s.local.acquire(r);
  }
  // One read-modify-write: take a token, and give it back if there was none.
  if (s.lease.fetch_sub(1, std::memory_order_acq_rel) <= 0) {
    s.lease.fetch_add(1, std::memory_order_relaxed);
    return gate_decision::deny(stop_reason::budget_exhausted);
  }
  return gate_decision::allow();
}

void shared_budget::record(const gate_outcome& o) noexcept {
  // The hot path touches two counters; the worker deposits the requests in
  // the local budget every sync_interval, so that it is ready when Redis is not.
  if (o.retry) return;
  s_->requests.fetch_add(1, std::memory_order_relaxed);
  s_->unbanked.fetch_add(1, std::memory_order_relaxed);
}

void shared_budget::release(const gate_request& r) noexcept {
  if (!r.retry) return;
  if (fleet_.degraded()) {
    s_->local.release(r);
    return;
  }
  s_->lease.fetch_add(1, std::memory_order_relaxed);
}

// --- shared_breaker -----------------------------------------------------------------------------

shared_breaker::shared_breaker(fleet& f, std::string key, options o) : fleet_(f) {
  if (o.quorum < 1) throw std::invalid_argument("backoff::redis::shared_breaker: quorum must be >= 1");
  s_ = std::make_shared<state>(std::move(key), o);
  auto& i = fleet_.internals();
  {
    std::lock_guard lock(i.mutex);
    i.breakers.insert(s_);
  }
  if (!i.degraded) {
    auto s = s_;
    i.run_bounded([&i, s] { i.read_open(*s); });
  }
}

shared_breaker::~shared_breaker() {
  auto& i = fleet_.internals();
  std::lock_guard lock(i.mutex);
  i.breakers.erase(s_);
}

bool shared_breaker::fleet_open(time_point now) const noexcept {
  return !fleet_.degraded() && to_unix_ms(now) < s_->open_until.load();
}

gate_decision shared_breaker::acquire(const gate_request& r) noexcept {
  state& s = *s_;
  if (!fleet_.degraded() && s.open_until.load() > 0) {
    if (to_unix_ms(r.now) < s.open_until.load()) return gate_decision::deny(stop_reason::circuit_open);
    if (s.half_open && !s.prober) {
      // The fleet's break is over: one process probes; the worker tries for the lock.
      if (!s.electing.exchange(true)) fleet_.internals().wake.notify_one();
      return gate_decision::deny(stop_reason::circuit_open);
    }
  }
  return s.local.acquire(r);
}

void shared_breaker::release(const gate_request& r) noexcept { s_->local.release(r); }

void shared_breaker::record(const gate_outcome& o) noexcept {
  state& s = *s_;
  const bool was_open = s.local.current() == circuit_breaker::state::open;
  s.local.record(o);
  auto& i = fleet_.internals();
  if (!was_open && s.local.current() == circuit_breaker::state::open) {
    // This process tripped: vote for opening the fleet until its break ends.
    const std::int64_t until = to_unix_ms(s.local.open_until());
    auto sp = s_;
    i.post([&i, sp, until] {
      if (!i.cmd) return;
      const std::int64_t now = unix_ms_now();
      const auto r = i.run({"EVAL", open_script, "2", i.key_of(sp->key, "votes"), i.key_of(sp->key, "open"),
                            std::to_string(now), std::to_string(until), i.id, std::to_string(sp->o.quorum), i.channel,
                            sp->key});
      if (const auto v = i.integer(r); v > 0) i.learned_open(sp->key, v);
    });
    s.prober = false;
  } else if (o.outcome == attempt_outcome::success && s.prober.exchange(false)) {
    // Our probe got through: the fleet closes.
    s.half_open = false;
    auto sp = s_;
    i.post([&i, sp] {
      if (!i.cmd) return;
      i.run({"EVAL", close_script, "3", i.key_of(sp->key, "votes"), i.key_of(sp->key, "open"),
             i.key_of(sp->key, "probe"), i.channel, sp->key});
    });
  }
}

}  // namespace backoff::redis
