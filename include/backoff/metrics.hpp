// SPDX-License-Identifier: BSL-1.0
// backoff/metrics.hpp — an observer (backoff/observer.hpp) that counts what
// retry loops do, and renders it in Prometheus's text exposition format.
//
//   backoff::metrics m({.scope = "payments-api"});            // one per upstream, say
//   backoff::retry(policy, call, {.observer = &m});
//   http_response(m.prometheus());                            // GET /metrics
//
// The names follow OpenTelemetry's style (instrument name, unit seconds,
// histogram buckets as OTel's HTTP advisory buckets); docs/metrics.md sets
// them beside Polly's resilience.polly.* and gRPC A96's grpc.client.call.*:
//   backoff.attempts           counter   attempts by outcome           backoff_attempts_total{outcome}
//   backoff.attempt.duration   histogram seconds, attempts timed       backoff_attempt_duration_seconds
//   backoff.retries            counter   retries scheduled, by cause   backoff_retries_total{cause}
//   backoff.retry.delay        histogram seconds waited before retries backoff_retry_delay_seconds
//   backoff.operations         counter   operations by how they ended  backoff_operations_total{reason}
//   backoff.gate.denials       counter   denials by gate reason        backoff_gate_denials_total{reason}
// Lock-free (relaxed atomics): counting costs a few nanoseconds an event.
// Standard library only.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "backoff/observer.hpp"

namespace backoff {

class metrics final : public observer {
 public:
  struct options {
    std::string scope = {};  // when set, every series carries scope="…"
  };
  metrics() : metrics(options{}) {}
  explicit metrics(options o) : o_(std::move(o)) {}

  // OTel's advisory buckets for http.client.request.duration (seconds).
  static constexpr std::array<double, 14> duration_buckets{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                                           0.5,   0.75, 1,     2.5,  5,     7.5, 10};
  // Retry delays reach minutes: powers of two from 10 ms.
  static constexpr std::array<double, 14> delay_buckets{0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1,
                                                        2,    4,    8,    16,  32,   64,  128};

  void attempt_ended(const attempt_ended_event& e) noexcept override {
    outcomes_[static_cast<std::size_t>(e.outcome)].fetch_add(1, std::memory_order_relaxed);
    if (e.took.count() >= 0) durations_.add(seconds(e.took));
  }
  void retry_scheduled(const retry_scheduled_event& e) noexcept override {
    const std::size_t cause = e.hint ? 2 : e.after_timeout ? 1 : 0;
    causes_[cause].fetch_add(1, std::memory_order_relaxed);
    delays_.add(seconds(e.delay));
  }
  void attempt_started(std::uint32_t number, time_point now) noexcept override {
    (void)number;
    (void)now;
    started_.fetch_add(1, std::memory_order_relaxed);
  }
  void hedged(std::uint32_t copy, time_point now) noexcept override {
    (void)copy;
    (void)now;
    hedges_.fetch_add(1, std::memory_order_relaxed);
  }
  void attempt_cancelled(std::uint32_t number, duration took) noexcept override {
    (void)number;
    (void)took;
    cancelled_.fetch_add(1, std::memory_order_relaxed);
  }
  void breaker_changed(breaker_state from, breaker_state to) noexcept override {
    (void)from;
    transitions_[static_cast<std::size_t>(to)].fetch_add(1, std::memory_order_relaxed);
  }
  void gate_denied(stop_reason why) noexcept override { denials_[index(why)].fetch_add(1, std::memory_order_relaxed); }
  void ended(stop_reason why, std::uint32_t attempts) noexcept override {
    (void)attempts;
    ended_[index(why)].fetch_add(1, std::memory_order_relaxed);
  }

  // Readings (for tests and custom exporters).
  std::uint64_t attempts(attempt_outcome o) const noexcept {
    return outcomes_[static_cast<std::size_t>(o)].load(std::memory_order_relaxed);
  }
  std::uint64_t started() const noexcept { return started_.load(std::memory_order_relaxed); }
  std::uint64_t hedges() const noexcept { return hedges_.load(std::memory_order_relaxed); }
  std::uint64_t cancelled() const noexcept { return cancelled_.load(std::memory_order_relaxed); }
  std::uint64_t breaker_changes(breaker_state to) const noexcept {
    return transitions_[static_cast<std::size_t>(to)].load(std::memory_order_relaxed);
  }
  std::uint64_t operations(stop_reason r) const noexcept { return ended_[index(r)].load(std::memory_order_relaxed); }
  std::uint64_t denials(stop_reason r) const noexcept { return denials_[index(r)].load(std::memory_order_relaxed); }
  // Retries scheduled: all, or those a server's hint set (Retry-After), or after a timeout.
  std::uint64_t retries() const noexcept { return causes_[0] + causes_[1] + causes_[2]; }
  std::uint64_t retries_after_hint() const noexcept { return causes_[2].load(std::memory_order_relaxed); }
  std::uint64_t retries_after_timeout() const noexcept { return causes_[1].load(std::memory_order_relaxed); }

  // Prometheus text exposition (version 0.0.4) of everything counted so far.
  std::string prometheus() const {
    std::string out;
    const std::string scope = o_.scope.empty() ? std::string() : "scope=\"" + escape(o_.scope) + "\"";
    auto labels = [&](const std::string& extra) {
      std::string l = scope;
      if (!extra.empty()) l += (l.empty() ? "" : ",") + extra;
      return l.empty() ? std::string() : "{" + l + "}";
    };
    auto head = [&](const char* name, const char* type, const char* help) {
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    };
    head("backoff_attempts_started_total", "counter",
         "Attempts started (those in flight are started minus ended minus cancelled).");
    out += "backoff_attempts_started_total" + labels("") + " " + std::to_string(started()) + "\n";
    head("backoff_attempts_cancelled_total", "counter",
         "Attempts cancelled before they ended: hedged copies that lost, operations cancelled.");
    out += "backoff_attempts_cancelled_total" + labels("") + " " + std::to_string(cancelled()) + "\n";
    head("backoff_hedges_total", "counter", "Copies sent beside a running attempt by hedged requests.");
    out += "backoff_hedges_total" + labels("") + " " + std::to_string(hedges()) + "\n";
    head("backoff_attempts_total", "counter", "Attempts made, by how they ended.");
    for (const auto o : {attempt_outcome::success, attempt_outcome::retryable, attempt_outcome::permanent})
      out += "backoff_attempts_total" + labels("outcome=\"" + std::string(to_string(o)) + "\"") + " " +
             std::to_string(attempts(o)) + "\n";
    head("backoff_attempt_duration_seconds", "histogram", "How long attempts took.");
    durations_.render(out, "backoff_attempt_duration_seconds", scope);
    head("backoff_retries_total", "counter", "Retries scheduled, by what caused the wait: error, timeout or hint.");
    const char* causes[] = {"error", "timeout", "hint"};
    for (std::size_t i = 0; i < 3; ++i)
      out += "backoff_retries_total" + labels(std::string("cause=\"") + causes[i] + "\"") + " " +
             std::to_string(causes_[i].load(std::memory_order_relaxed)) + "\n";
    head("backoff_retry_delay_seconds", "histogram", "Waits before retries.");
    delays_.render(out, "backoff_retry_delay_seconds", scope);
    head("backoff_operations_total", "counter", "Operations that ended, by why they stopped.");
    for (std::size_t i = 0; i < reasons; ++i)
      if (const auto n = ended_[i].load(std::memory_order_relaxed); n > 0)
        out += "backoff_operations_total" + labels("reason=\"" + std::string(to_string(static_cast<stop_reason>(i))) + "\"") +
               " " + std::to_string(n) + "\n";
    head("backoff_breaker_transitions_total", "counter", "Circuit breaker changes of state, by the state entered.");
    const char* states[] = {"closed", "open", "half_open"};
    for (std::size_t i = 0; i < 3; ++i)
      out += "backoff_breaker_transitions_total" + labels(std::string("state=\"") + states[i] + "\"") + " " +
             std::to_string(transitions_[i].load(std::memory_order_relaxed)) + "\n";
    head("backoff_gate_denials_total", "counter", "Attempts a gate (budget, breaker, throttle) refused, by reason.");
    for (std::size_t i = 0; i < reasons; ++i)
      if (const auto n = denials_[i].load(std::memory_order_relaxed); n > 0)
        out += "backoff_gate_denials_total" + labels("reason=\"" + std::string(to_string(static_cast<stop_reason>(i))) + "\"") +
               " " + std::to_string(n) + "\n";
    return out;
  }

  // A label value as the exposition format writes it: \ " and line feed escaped.
  static std::string escape(const std::string& v) {
    std::string out;
    for (const char c : v) {
      if (c == '\\') out += "\\\\";
      else if (c == '"') out += "\\\"";
      else if (c == '\n') out += "\\n";
      else out += c;
    }
    return out;
  }

 private:
  static constexpr std::size_t reasons = static_cast<std::size_t>(stop_reason::not_idempotent) + 1;
  static std::size_t index(stop_reason r) noexcept {
    const auto i = static_cast<std::size_t>(r);
    return i < reasons ? i : reasons - 1;
  }
  static double seconds(duration d) noexcept { return std::chrono::duration<double>(d).count(); }

  // Counts per bucket (not cumulative) and the sum in nanoseconds.
  class histogram {
   public:
    explicit histogram(const std::array<double, 14>& bounds) : bounds_(bounds) {}
    void add(double v) noexcept {
      std::size_t i = 0;
      while (i < bounds_.size() && v > bounds_[i]) ++i;
      counts_[i].fetch_add(1, std::memory_order_relaxed);
      sum_ns_.fetch_add(static_cast<std::uint64_t>(v * 1e9), std::memory_order_relaxed);
    }
    void render(std::string& out, const char* name, const std::string& scope) const {
      std::uint64_t cumulative = 0;
      const std::string pre = scope.empty() ? "" : scope + ",";
      for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        cumulative += counts_[i].load(std::memory_order_relaxed);
        char le[32];
        if (i < bounds_.size()) std::snprintf(le, sizeof le, "%g", bounds_[i]);
        else std::snprintf(le, sizeof le, "+Inf");
        out += std::string(name) + "_bucket{" + pre + "le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
      }
      char sum[64];
      std::snprintf(sum, sizeof sum, "%.9f", static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9);
      const std::string braces = scope.empty() ? "" : "{" + scope + "}";
      out += std::string(name) + "_sum" + braces + " " + sum + "\n";
      out += std::string(name) + "_count" + braces + " " + std::to_string(cumulative) + "\n";
    }

   private:
    const std::array<double, 14>& bounds_;
    std::array<std::atomic<std::uint64_t>, 15> counts_{};
    std::atomic<std::uint64_t> sum_ns_{0};
  };

  options o_;
  std::array<std::atomic<std::uint64_t>, 3> outcomes_{};
  std::array<std::atomic<std::uint64_t>, 3> causes_{};  // error, timeout, hint
  std::array<std::atomic<std::uint64_t>, 3> transitions_{};  // by the state entered
  std::atomic<std::uint64_t> started_{0};
  std::atomic<std::uint64_t> hedges_{0};
  std::atomic<std::uint64_t> cancelled_{0};
  std::array<std::atomic<std::uint64_t>, reasons> ended_{};
  std::array<std::atomic<std::uint64_t>, reasons> denials_{};
  histogram durations_{duration_buckets};
  histogram delays_{delay_buckets};
};

}  // namespace backoff
