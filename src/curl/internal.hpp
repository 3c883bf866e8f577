// SPDX-License-Identifier: BSL-1.0
// Pieces of backoff::curl shared by the blocking client (client.cpp) and the
// asynchronous one (async_client.cpp). Private: not installed.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backoff/curl/client.hpp"
#include "backoff/http/digest.hpp"
#include "backoff/http/resume.hpp"
#include "backoff/retry.hpp"
#include "download_file.hpp"

namespace backoff::curl::detail {

using steady = std::chrono::steady_clock;

constexpr long max_redirects = 10;
constexpr std::uint64_t default_memory_cap = std::uint64_t{1} << 30;  // perform() bodies, when unset
constexpr long receive_buffer = 512 * 1024;                          // fewer, larger reads than curl's 16 KiB

void global_init();
std::string human_bytes(std::uint64_t n);
std::string human_duration(std::chrono::milliseconds d);
std::string host_of(const std::string& url);
backoff::clock& clock_of(const client_options& o);
// Timeouts for one attempt: `whole` (0 = none), cut to what is left before the deadline.
void set_timeouts(CURL* easy, const client_options& o, std::chrono::milliseconds whole);
// CA file and path, client certificate and key, and -k, on one easy handle.
void set_tls(CURL* easy, const tls_options& t);

// Why the client ended a transfer itself.
// (split: a segmented download's connection reached the end of its range;
// unsent: cancelled before the transfer started, so that what the handle
// still holds — the status, the request size — is the previous attempt's.)
enum class interruption : std::uint8_t { none, cancelled, stalled, too_big, split, unsent };

// When a transfer last received anything (headers or body), for stall detection.
struct activity {
  steady::time_point last = steady::now();
};

// What one attempt produced, as the retry loop classifies it.
struct attempt_result {
  long status = 0;
  http::transport failure = http::transport::none;
  int curl_code = 0;
  std::string error;
  bool sent = true;  // some request bytes were written to a connection
  http::verdict verdict = http::verdict::success;
  bool resend_allowed = true;
  bool progressed = false;  // a resumable download kept new bytes
  bool cancelled = false;   // the stop token (or a cancellation slot) ended it
  std::optional<duration> hint;
  std::optional<quota_notice> quota;  // what the answer said of its host's quota (when options.quotas is set)
  std::uint64_t bytes = 0;
};

struct header_sink {
  std::vector<header>* headers;
  activity* act;
};
std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user);

struct slist {
  curl_slist* list = nullptr;
  slist() = default;
  explicit slist(const std::vector<header>& headers) {
    for (const auto& [k, v] : headers) add(k + ": " + v);
  }
  void add(const std::string& line) {
    if (curl_slist* l = curl_slist_append(list, line.c_str())) list = l;
  }
  ~slist() { curl_slist_free_all(list); }
  slist(const slist&) = delete;
  slist& operator=(const slist&) = delete;
};

// Fills status, failure and the retry decision from a finished transfer.
void finish(attempt_result& r, CURL* easy, CURLcode code, const char* errbuf, const client_options& o,
            const http::request_traits& traits, const std::vector<header>& headers, interruption why);

attempt_log log_of(std::uint32_t n, const attempt_result& r);
// The loop's reason, refined by what the last attempt says (cancelled, not idempotent).
stop_reason final_reason(stop_reason r, const attempt_result* last);

// The gates of one request: the caller's gate and the per-host release time,
// as one gate; and the policy with the overall deadline. Lives as long as the loop.
struct wiring {
  wiring(const client_options& o, const std::string& url);
  wiring(const wiring&) = delete;
  wiring& operator=(const wiring&) = delete;

  const client_options& options;
  std::string url;
  std::string log_url;  // what attempt logs name when not `url` (a mirror)
  backoff::policy policy;
  std::string host;
  std::optional<host_backoff::key_gate> host_gate;
  std::optional<quota_pacer::key_gate> quota_gate;
  std::optional<gate_chain> chain;
  backoff::gate* gate = nullptr;
  // An attempt's answer arrived (before the loop decides): the quota it
  // announced, and its request leaves the pacer's in-flight count.
  void arrived(const attempt_result& r);
};

// The retry loop's options for one request, over any result type R from which
// `get(r)` gives the attempt_result. Attempts are logged into `logs` (by the
// caller, as they end); the hooks fill in their timing and call on_attempt.
template <class R, class Get>
backoff::options<R> loop_options(wiring& w, std::vector<attempt_log>& logs, Get get) {
  const client_options& o = w.options;
  backoff::options<R> opts{
      .classify = {.is_success = [get](const R& r) { return get(r).verdict == http::verdict::success; },
                   .retry_value =
                       [get](const R& r) {
                         const attempt_result& a = get(r);
                         return (a.verdict == http::verdict::retryable || a.verdict == http::verdict::throttled) &&
                                a.resend_allowed;
                       },
                   .retry_exception = [](const std::exception_ptr&) { return false; }},
      .after_attempt =
          [&o, &w, &logs](const attempt<R>& a) {
            if (logs.size() < a.record.number) return;
            auto& log = logs[a.record.number - 1];
            log.url = w.log_url.empty() ? w.url : w.log_url;
            log.start = a.record.start;
            log.took = a.record.took;
            log.delay = a.record.delay;
            log.outcome = a.record.outcome;
            if (o.on_attempt) o.on_attempt(log);
          },
      .server_hint =
          [&w, get](const attempt<R>& a) {
            const auto hint = a.result ? get(*a.result).hint : std::nullopt;
            // A 429's Retry-After holds back every request to the host; a 503's
            // only this one, unless the host keeps failing (client_options::hint_scope).
            if (hint && w.options.hosts && !w.host.empty()) {
              const hint_scope scope = w.options.retry_after_scope;
              const bool host_wide =
                  scope == hint_scope::host ||
                  (scope == hint_scope::by_status &&
                   (get(*a.result).verdict == http::verdict::throttled ||
                    w.options.hosts->failures(w.host) >= failing_host_threshold));
              if (host_wide) w.options.hosts->hold(w.host, clock_of(w.options).now(), *hint);
            }
            return hint;
          },
      .gate = w.gate,
      .gate_first_attempt = w.options.gate_first_attempt || w.host_gate.has_value() || w.quota_gate.has_value(),
      .observer = o.observer,
      .is_timeout = [get](const attempt<R>& a) { return a.result && get(*a.result).failure == http::transport::timeout; },
      .made_progress = [get](const attempt<R>& a) { return a.result && get(*a.result).progressed; },
      .clock = o.clock,
      .rng = o.rng,
      .stop_token = o.stop_token,
  };
  return opts;
}

// One download, attempt by attempt: what a transfer needs before it starts
// and what its outcome means after it ended. The blocking and the asynchronous
// clients drive the same job.
class download_job {
 public:
  download_job(const client_options& o, std::string url, download_file& file, const std::vector<header>& user_headers);
  ~download_job();
  download_job(const download_job&) = delete;
  download_job& operator=(const download_job&) = delete;

  // Configures `easy` for attempt `n`. False when no transfer must be made:
  // `early` then holds the attempt's (failed) result.
  bool prepare(CURL* easy, std::uint32_t n, attempt_result& early);
  // Classifies the transfer that ended with `code`.
  attempt_result complete(CURL* easy, CURLcode code);
  // After the loop: commits the file or keeps / removes the partial data.
  download_result conclude(stop_reason reason, std::vector<attempt_log> logs, const attempt_result* last);

  activity act;
  interruption why = interruption::none;
  // Segmented downloads (async_client): called once a response's headers are
  // decided to be the file's body (a 200, or a 206 that resumes), from inside
  // curl's callback; and the body stops at stop_at (why = split).
  std::function<void(long status, const std::vector<header>& headers)> on_body_decided;
  std::uint64_t stop_at = UINT64_MAX;
  std::function<void()> on_bytes;  // instead of options.on_progress, after bytes were written
  // Hedged downloads (async_client): asked once a response's body is found to
  // be the file's, before anything touches the file, from inside curl's
  // callback; false (another copy of the request owns the file) stops this
  // transfer with nothing written.
  std::function<bool()> claim;
  std::uint64_t attempt_bytes() const noexcept;
  // The URL of the next attempts (a download with mirrors moves on to another source).
  void retarget(std::string url);
  // The last attempt failed here, not at the server (a write, a truncate).
  bool local_failure() const noexcept;
  // Moves counts and results kept across attempts into `out` (segmented
  // downloads conclude themselves).
  void take_counts(download_result& out);
  // curl's receive buffer: large for one transfer at a time (fewer, larger
  // reads); the async client, with thousands at once, keeps curl's 16 KiB.
  long buffer_size = receive_buffer;

 private:
  attempt_result classify(CURL* easy, CURLcode code);
  struct state;
  std::unique_ptr<state> s_;
};

// The whole-file digest the server names (Repr-Digest, else the older
// Digest), with the field it came from.
std::optional<std::pair<std::string, http::digest>> repr_digest_of(const std::vector<header>& headers);
// Checks a finished file: the user's checksum, Repr-Digest (or Digest) in
// `repr_headers`, Content-Digest in `content_headers` (null: none) covering the
// bytes from `content_from`. Fills out.digest and out.verified; returns the
// first mismatch, worded for people, or empty.
std::string check_digests(download_file& file, const client_options& options, const std::vector<header>& repr_headers,
                          const std::vector<header>* content_headers, std::uint64_t content_from, download_result& out);

// One request (perform), attempt by attempt, like download_job: the body is
// kept in memory (capped at max_filesize, or 1 GiB when unset).
class request_job {
 public:
  // Adds the Idempotency-Key once (the same on every attempt). Throws
  // std::invalid_argument for an empty URL or method.
  request_job(const client_options& o, const request& rq);
  ~request_job();
  request_job(const request_job&) = delete;
  request_job& operator=(const request_job&) = delete;

  const std::string& url() const noexcept;
  // Whether the request may be sent twice at once (a hedge): an idempotent
  // method, marked idempotent, or with an Idempotency-Key.
  bool may_hedge() const noexcept;
  // Another job for the same request, with the same Idempotency-Key.
  std::unique_ptr<request_job> twin() const;
  bool prepare(CURL* easy, std::uint32_t n, attempt_result& early);
  attempt_result complete(CURL* easy, CURLcode code);
  response conclude(stop_reason reason, std::vector<attempt_log> logs, const attempt_result* last);

  activity act;
  interruption why = interruption::none;

 private:
  struct state;
  std::unique_ptr<state> s_;
};

}  // namespace backoff::curl::detail
