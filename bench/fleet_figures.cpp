// SPDX-License-Identifier: BSL-1.0
// backoff::redis in figures, against a redis-server on loopback started for
// the run (`make bench-fleet`):
//  - Redis commands per process per second, and CPU, at 10^4 requests/s
//    (20 % retries), on one node, over TLS and on a 3-master cluster;
//  - how long a release time takes to reach 8 other processes (pub/sub), p50/p99;
//  - with Redis killed: what a request pays in the gates (p50/p99/max), against
//    the configured timeout; and how long a fleet takes to start when Redis
//    refuses connections, and when its address does not answer at all.
#include <time.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "backoff/redis/fleet.hpp"
#include "redis_server.hpp"

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

double ms(clk::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct percentiles {
  double p50, p99, max;
};
percentiles of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)], v.back()};
}

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// 1. and 2. on one deployment: Redis commands per second and CPU at 10^4
// requests/s (20 % retries), and how long a release time takes to reach 8
// other processes (each its own fleet: connections, subscriber, worker).
void rate_and_propagation(const char* name, const std::string& url, const std::string& ca_file,
                          std::chrono::milliseconds timeout) {
  {
    backoff::redis::fleet f({.url = url + "/rate", .ca_file = ca_file, .timeout = timeout});
    backoff::redis::shared_budget budget(f, "api");
    backoff::redis::shared_host_backoff hosts(f);
    auto host = hosts.for_key("api:443");
    backoff::gate_chain gates{&host, &budget};
    const auto c0 = f.commands();
    const double cpu0 = cpu_seconds();
    const auto start = clk::now();
    std::uint64_t requests = 0, retries = 0, allowed = 0;
    for (auto next = start; clk::now() - start < 3s; next += 100us) {
      std::this_thread::sleep_until(next);
      const bool retry = requests % 5 == 4;
      const auto now = clk::now();
      const auto d = gates.acquire({retry, now, false});
      allowed += retry && d.allowed;
      gates.record({retry ? backoff::attempt_outcome::success : backoff::attempt_outcome::retryable, retry, false, now});
      ++requests;
      retries += retry;
    }
    const double secs = std::chrono::duration<double>(clk::now() - start).count();
    const double cpu = cpu_seconds() - cpu0;
    std::printf("%s: %.0f requests/s (%llu retries asked, %llu allowed): %.1f Redis commands/s, CPU %.1f ms per 10^4 requests (the loop's sleeps included)%s\n",
                name, static_cast<double>(requests) / secs, static_cast<unsigned long long>(retries),
                static_cast<unsigned long long>(allowed), static_cast<double>(f.commands() - c0) / secs,
                cpu * 1e3 / (static_cast<double>(requests) / 1e4), f.degraded() ? " [DEGRADED]" : "");
  }
  {
    backoff::redis::fleet a({.url = url + "/prop", .ca_file = ca_file, .timeout = timeout});
    backoff::redis::shared_host_backoff ha(a);
    std::vector<std::unique_ptr<backoff::redis::fleet>> others;
    std::vector<std::unique_ptr<backoff::redis::shared_host_backoff>> hosts;
    for (int i = 0; i < 8; ++i) {
      others.push_back(std::make_unique<backoff::redis::fleet>(
          backoff::redis::fleet_options{.url = url + "/prop", .ca_file = ca_file, .timeout = timeout}));
      hosts.push_back(std::make_unique<backoff::redis::shared_host_backoff>(*others.back()));
    }
    std::this_thread::sleep_for(300ms);  // all subscribed
    std::vector<double> lat;
    for (int i = 0; i < 200; ++i) {
      const std::string key = "host" + std::to_string(i) + ":80";
      const auto t0 = clk::now();
      ha.hold(key, t0, 60s);
      for (bool all = false; !all && clk::now() - t0 < 5s;) {
        all = true;
        for (auto& h : hosts) all = all && h->release_time(key, clk::now()) >= t0 + 30s;
        if (!all) std::this_thread::sleep_for(20us);
      }
      lat.push_back(ms(clk::now() - t0));
    }
    const auto p = of(lat);
    std::printf("%s: a release time reaches all of 8 other processes: p50 %.2f ms, p99 %.2f ms, max %.2f ms (200 release times)\n",
                name, p.p50, p.p99, p.max);
  }
}

}  // namespace

int main() {
  const std::chrono::milliseconds timeout{20};
  backoff::testing::redis_server redis;
  rate_and_propagation("plain TCP, one node", redis.url(""), "", timeout);
  {
    const std::string dir = std::filesystem::absolute("build/bench-fleet-tls").string();
    std::filesystem::create_directories(dir);
    backoff::testing::make_test_certificates(dir);
    backoff::testing::redis_server tls({}, false, dir);
    rate_and_propagation("TLS, one node", tls.url(""), dir + "/ca.pem", timeout);
  }
  {
    backoff::testing::redis_cluster cluster(3, 0);
    rate_and_propagation("cluster, 3 masters", cluster.url(""), "", timeout);
  }

  {  // 3. Redis killed: what requests pay
    backoff::redis::fleet f({.url = redis.url("/down"), .timeout = timeout});
    backoff::redis::shared_budget budget(f, "api");
    backoff::redis::shared_host_backoff hosts(f);
    auto host = hosts.for_key("api:443");
    backoff::redis::shared_breaker breaker(f, "api");
    backoff::gate_chain gates{&breaker, &host, &budget};
    redis.stop();
    std::vector<double> lat;
    const auto start = clk::now();
    std::uint64_t n = 0;
    while (clk::now() - start < 2s) {
      const auto t0 = clk::now();
      const bool retry = n % 5 == 4;
      (void)gates.acquire({retry, t0, false});
      gates.record({backoff::attempt_outcome::retryable, retry, false, t0});
      if (n % 100 == 0) hosts.hold("api:443", t0, 10ms);  // asks the worker to write to Redis
      if (n % 1000 == 0) (void)hosts.for_key("new" + std::to_string(n) + ":80");
      lat.push_back(ms(clk::now() - t0));
      ++n;
      std::this_thread::sleep_for(100us);
    }
    const auto p = of(lat);
    std::printf("Redis killed, %llu requests over 2 s: gate cost p50 %.4f ms, p99 %.4f ms, max %.3f ms (timeout %lld ms); degraded: %s\n",
                static_cast<unsigned long long>(n), p.p50, p.p99, p.max, static_cast<long long>(timeout.count()),
                f.degraded() ? "yes" : "no");
    redis.start();
    const auto back = clk::now();
    while (f.degraded() && clk::now() - back < 20s) std::this_thread::sleep_for(1ms);
    std::printf("Redis restarted: the fleet rejoined after %.0f ms\n", ms(clk::now() - back));
  }

  {  // 4. starting without Redis
    const auto t0 = clk::now();
    { backoff::redis::fleet f({.url = "redis://127.0.0.1:1/x", .timeout = timeout}); }
    const auto t1 = clk::now();
    { backoff::redis::fleet f({.url = "redis://10.255.255.1:6379/x", .timeout = timeout}); }
    const auto t2 = clk::now();
    std::printf("a fleet that cannot reach Redis starts and stops in %.1f ms (refused), %.1f ms (no answer)\n",
                ms(t1 - t0), ms(t2 - t1));
  }
  return 0;
}
