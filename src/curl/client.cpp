// SPDX-License-Identifier: BSL-1.0
#include "backoff/curl/client.hpp"

#include <curl/curl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <system_error>
#include <utility>

#include "backoff/http/digest.hpp"
#include "backoff/http/idempotency.hpp"
#include "backoff/http/ratelimit.hpp"
#include "backoff/http/resume.hpp"
#include "backoff/retry.hpp"
#include "backoff/stop.hpp"
#include "download_file.hpp"
#include "internal.hpp"

namespace backoff::curl {

namespace detail {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}


http::transport map_code(CURLcode c) {
  switch (c) {
    case CURLE_OK: return http::transport::none;
    case CURLE_COULDNT_CONNECT: return http::transport::connect_failed;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return http::transport::dns_temporary;
    case CURLE_OPERATION_TIMEDOUT: return http::transport::timeout;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR: return http::transport::connection_reset;
    case CURLE_PARTIAL_FILE: return http::transport::connection_dropped;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE: return http::transport::tls;
    default: return http::transport::other;
  }
}

std::string human_bytes(std::uint64_t n) {
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (n < 1024) return std::to_string(n) + " B";
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string human_duration(std::chrono::milliseconds d) {
  if (d.count() % 1000 != 0) return std::to_string(d.count()) + "ms";
  const auto s = d.count() / 1000;
  if (s >= 60 && s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}





std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* sink = static_cast<header_sink*>(user);
  sink->act->last = steady::now();
  const std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    sink->headers->clear();  // a new response (after a redirect or 100 Continue)
  } else if (auto h = http::parse_header_line(line)) {
    sink->headers->push_back(std::move(*h));
  }
  return size * n;
}

struct body_sink {
  std::string* body;
  std::uint64_t limit;
  activity* act;
  interruption* why;
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* s = static_cast<body_sink*>(user);
  s->act->last = steady::now();
  if (s->body->size() + size * n > s->limit) {
    *s->why = interruption::too_big;
    return 0;
  }
  s->body->append(data, size * n);
  return size * n;
}


long as_ms(std::chrono::nanoseconds d) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
  return ms <= 0 ? 1 : static_cast<long>(ms);
}

backoff::clock& clock_of(const client_options& o) {
  return o.clock ? *o.clock : static_cast<backoff::clock&>(real_clock::instance());
}

// Timeouts for one attempt: `whole` (0 = none), cut to what is left before the deadline.
void set_timeouts(CURL* easy, const client_options& o, std::chrono::milliseconds whole) {
  std::chrono::nanoseconds attempt = whole;
  if (o.deadline) {
    const auto left = *o.deadline - clock_of(o).now();
    if (attempt.count() == 0 || left < attempt) attempt = left;
  }
  if (attempt.count() != 0) curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, as_ms(attempt));
  if (o.connect_timeout.count() > 0) curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()));
}

void set_tls(CURL* easy, const tls_options& t) {
  if (!t.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, t.ca_file.c_str());
  if (!t.ca_path.empty()) curl_easy_setopt(easy, CURLOPT_CAPATH, t.ca_path.c_str());
  if (!t.cert_file.empty()) curl_easy_setopt(easy, CURLOPT_SSLCERT, t.cert_file.c_str());
  if (!t.key_file.empty()) curl_easy_setopt(easy, CURLOPT_SSLKEY, t.key_file.c_str());
  if (t.insecure) {
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
  }
}

// Runs one transfer on `multi`. A stop request wakes the poll and ends the
// transfer at once; so does `stall` without any activity (0 = never).
CURLcode run_transfer(CURLM* multi, CURL* easy, const std::stop_token& token, std::chrono::milliseconds stall,
                      const activity* act, interruption& why) {
  if (token.stop_requested()) {
    why = interruption::unsent;
    return CURLE_ABORTED_BY_CALLBACK;
  }
  if (curl_multi_add_handle(multi, easy) != CURLM_OK) return CURLE_FAILED_INIT;
  CURLcode result = CURLE_OK;
  {
    std::stop_callback wake(token, [multi] { curl_multi_wakeup(multi); });
    for (;;) {
      int running = 0;
      if (curl_multi_perform(multi, &running) != CURLM_OK) {
        result = CURLE_FAILED_INIT;
        break;
      }
      bool done = false;
      int left = 0;
      while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
        if (m->msg == CURLMSG_DONE && m->easy_handle == easy) {
          result = m->data.result;
          done = true;
        }
      }
      if (done) break;
      if (why != interruption::none) {  // a callback gave up (body too large)
        result = CURLE_WRITE_ERROR;
        break;
      }
      if (token.stop_requested()) {
        why = interruption::cancelled;
        result = CURLE_ABORTED_BY_CALLBACK;
        break;
      }
      int wait_ms = 1000;
      if (stall.count() > 0 && act) {
        const auto idle = steady::now() - act->last;
        if (idle >= stall) {
          why = interruption::stalled;
          result = CURLE_OPERATION_TIMEDOUT;
          break;
        }
        wait_ms = static_cast<int>(std::min<long long>(
            wait_ms, std::chrono::ceil<std::chrono::milliseconds>(stall - idle).count()));
      }
      curl_multi_poll(multi, nullptr, 0, wait_ms, nullptr);
    }
  }
  curl_multi_remove_handle(multi, easy);  // ends an unfinished transfer and closes its connection
  return result;
}

// Fills status, failure and the retry decision from a finished transfer.
void finish(attempt_result& r, CURL* easy, CURLcode code, const char* errbuf, const client_options& o,
            const http::request_traits& traits, const std::vector<header>& headers, interruption why) {
  r.curl_code = code;
  r.failure = map_code(code);
  // A transfer that never started has no status and sent nothing: what the
  // handle holds belongs to the attempt before.
  const bool started = why != interruption::unsent;
  if (!started) why = interruption::cancelled;
  long request_size = 0;
  if (started) {
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_size);
  }
  r.sent = request_size > 0;
  if (code != CURLE_OK || why != interruption::none) {
    r.error = errbuf && *errbuf ? errbuf : curl_easy_strerror(code);
    r.verdict = o.classifier.classify(r.failure);
    switch (why) {
      case interruption::cancelled:
        r.cancelled = true;
        r.failure = http::transport::other;
        r.verdict = http::verdict::permanent;
        r.error = "cancelled";
        break;
      case interruption::stalled:
        r.failure = http::transport::timeout;
        r.verdict = o.classifier.classify(r.failure);
        r.error = "no data for " + human_duration(o.stall_timeout);
        break;
      case interruption::too_big:
        r.failure = http::transport::other;
        r.verdict = http::verdict::permanent;
        break;  // the caller words it
      case interruption::split:
        break;  // not a failure: the caller knows
      case interruption::unsent:
        break;  // made cancelled above
      case interruption::none:
        if (code == CURLE_TOO_MANY_REDIRECTS) {
          r.verdict = http::verdict::permanent;
          r.error = "too many redirects (more than " + std::to_string(max_redirects) + ")";
        } else if (code == CURLE_OUT_OF_MEMORY && r.status != 0) {
          // What curl 7.x reports for a header line over its 100 KiB limit.
          r.verdict = http::verdict::permanent;
          r.error = "the response has a header too large to read (curl: " + r.error + ")";
        } else if (code == CURLE_OPERATION_TIMEDOUT && r.status != 0) {
          r.error = "timed out: " + r.error;
        }
        break;
    }
    // A request that never reached a connection is provably unsent.
    r.resend_allowed = http::may_resend(traits, r.sent ? r.failure : http::transport::connect_failed);
  } else {
    r.verdict = o.classifier.classify(static_cast<int>(r.status));
    r.resend_allowed = http::may_resend(traits, http::transport::none);
    if (r.verdict != http::verdict::success) r.error = "HTTP " + std::to_string(r.status);
  }
  if (r.verdict == http::verdict::retryable || r.verdict == http::verdict::throttled)
    r.hint = http::server_hint(headers, o.hints);
  if (o.quotas && r.status > 0)
    r.quota = http::quota_notice_of(r.status, headers, std::chrono::system_clock::now(), r.hint,
                                    std::chrono::duration_cast<std::chrono::milliseconds>(o.hints.max_hint));
}

std::string host_of(const std::string& url) {
  std::string key;
  if (CURLU* u = curl_url()) {
    char *h = nullptr, *p = nullptr;
    if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK && curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == CURLUE_OK)
      key = std::string(h) + ":" + p;
    // Host names are case-insensitive: one host, one key.
    for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
  }
  return key;
}

}  // namespace detail

std::string host_key(const std::string& url) { return detail::host_of(url); }

namespace detail {

wiring::wiring(const client_options& o, const std::string& u) : options(o), url(u), policy(o.policy) {
  host = o.hosts || o.quotas ? host_of(u) : std::string{};
  if (o.hosts && !host.empty()) host_gate.emplace(*o.hosts, host);
  if (o.quotas && !host.empty()) quota_gate.emplace(*o.quotas, host);
  // The caller's gate last: a budget spends only when the others allowed.
  std::vector<backoff::gate*> gates;
  if (host_gate) gates.push_back(&*host_gate);
  if (quota_gate) gates.push_back(&*quota_gate);
  if (o.gate) gates.push_back(o.gate);
  if (gates.size() == 1) gate = gates.front();
  else if (gates.size() > 1) gate = &chain.emplace(std::move(gates));
  if (o.deadline) policy.stop = policy.stop | stop::before_deadline(*o.deadline);
}

void wiring::arrived(const attempt_result& r) {
  if (quota_gate) quota_gate->answered(clock_of(options).now(), r.quota);
}

attempt_log log_of(std::uint32_t n, const attempt_result& r) {
  attempt_log log;
  log.number = n;
  log.status = r.status;
  log.failure = r.failure;
  log.curl_code = r.curl_code;
  log.error = r.error;
  log.hint = r.hint;
  log.bytes = r.bytes;
  return log;
}

stop_reason final_reason(stop_reason r, const attempt_result* last) {
  if (r == stop_reason::permanent && last && last->cancelled) return stop_reason::cancelled;
  if (r == stop_reason::permanent && last &&
      (last->verdict == http::verdict::retryable || last->verdict == http::verdict::throttled) && !last->resend_allowed)
    return stop_reason::not_idempotent;
  return r;
}

// Runs `one(attempt_number)` under the client's policy; fills `logs`.
template <class One>
stop_reason drive(const client_options& o, const std::string& url, One&& one, std::vector<attempt_log>& logs,
                  attempt_result& last) {
  wiring w(o, url);
  const auto opts = loop_options<attempt_result>(w, logs, [](const attempt_result& r) -> const attempt_result& { return r; });
  std::uint32_t n = 0;
  auto r = try_retry(w.policy,
                     [&] {
                       attempt_result res = one(++n);
                       w.arrived(res);
                       logs.push_back(log_of(n, res));
                       return res;
                     },
                     opts);
  if (r.error) std::rethrow_exception(r.error);
  if (r.value) last = *r.value;
  return final_reason(r.reason, r.value ? &*r.value : nullptr);
}

}  // namespace detail

using namespace detail;

checksum parse_checksum(std::string_view text) {
  const auto colon = text.find(':');
  const std::string where = "checksum '" + std::string(text) + "'";
  if (colon == std::string_view::npos) throw std::invalid_argument(where + ": expected sha256:HEX or sha512:HEX");
  checksum c{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
  std::size_t want = 0;
  if (c.algorithm == "sha256") want = 64;
  else if (c.algorithm == "sha512") want = 128;
  else throw std::invalid_argument(where + ": unknown algorithm '" + c.algorithm + "' (expected sha256 or sha512)");
  for (char& ch : c.hex) {
    if (ch >= 'A' && ch <= 'F') ch = static_cast<char>(ch - 'A' + 'a');
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
      throw std::invalid_argument(where + ": the digest is not hexadecimal");
  }
  if (c.hex.size() != want)
    throw std::invalid_argument(where + ": a " + c.algorithm + " digest has " + std::to_string(want) +
                                " hex digits, not " + std::to_string(c.hex.size()));
  return c;
}

std::string response::describe() const {
  std::string out = ok() ? "succeeded" : "gave up";
  out += " after " + std::to_string(attempts.size()) + (attempts.size() == 1 ? " attempt" : " attempts");
  out += " (" + std::string(to_string(reason)) + ")";
  if (!attempts.empty() && !attempts.back().error.empty()) out += ": " + attempts.back().error;
  return out;
}

client::client(client_options options) : options_(std::move(options)) {
  global_init();
  easy_ = curl_easy_init();
  if (!easy_) throw std::runtime_error("backoff::curl::client: curl_easy_init failed");
  multi_ = curl_multi_init();
  if (!multi_) {
    curl_easy_cleanup(easy_);
    throw std::runtime_error("backoff::curl::client: curl_multi_init failed");
  }
}

client::~client() {
  curl_easy_cleanup(easy_);
  curl_multi_cleanup(multi_);
}

namespace detail {

struct request_job::state {
  const client_options& options;
  request rq;
  std::vector<header> headers;  // what is sent, with the Idempotency-Key
  http::request_traits traits;
  std::unique_ptr<slist> header_list;
  std::uint64_t cap;
  response out;
  char errbuf[CURL_ERROR_SIZE] = {0};
  header_sink hs{};
  body_sink bs{};

  state(const client_options& o, const request& r) : options(o), rq(r), headers(r.headers), cap(0) {}
};

request_job::request_job(const client_options& o, const request& rq) : s_(std::make_unique<state>(o, rq)) {
  if (rq.url.empty()) throw std::invalid_argument("backoff::curl::request: url must not be empty");
  if (rq.method.empty()) throw std::invalid_argument("backoff::curl::request: method must not be empty");
  state& st = *s_;
  bool has_key = http::find_header(st.headers, "Idempotency-Key").has_value();
  if (!has_key && rq.add_idempotency_key) {
    random_ref rng = o.rng;
    st.headers.emplace_back("Idempotency-Key", http::make_idempotency_key(rng));  // once, for every attempt
    has_key = true;
  }
  st.traits = http::request_traits{st.rq.method, st.rq.idempotent, has_key};
  st.header_list = std::make_unique<slist>(st.headers);
  st.cap = o.max_filesize.value_or(default_memory_cap);
}

request_job::~request_job() = default;

const std::string& request_job::url() const noexcept { return s_->rq.url; }

bool request_job::may_hedge() const noexcept {
  const http::request_traits& t = s_->traits;
  return http::is_idempotent_method(t.method) || t.marked_idempotent || t.idempotency_key;
}

std::unique_ptr<request_job> request_job::twin() const {
  request same = s_->rq;
  same.headers = s_->headers;  // with the key this job added
  same.add_idempotency_key = false;
  return std::make_unique<request_job>(s_->options, same);
}

bool request_job::prepare(CURL* easy, std::uint32_t, attempt_result&) {
  state& st = *s_;
  const request& rq = st.rq;
  st.out.body.clear();
  st.out.headers.clear();
  st.errbuf[0] = 0;
  why = interruption::none;
  act.last = steady::now();
  st.hs = header_sink{&st.out.headers, &act};
  st.bs = body_sink{&st.out.body, st.cap, &act, &why};
  curl_easy_reset(easy);  // keeps the connection cache: attempts reuse kept-alive connections
  curl_easy_setopt(easy, CURLOPT_URL, rq.url.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, st.errbuf);
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, max_redirects);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, st.header_list->list);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &st.bs);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &st.hs);
  if (st.options.max_filesize)
    curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(*st.options.max_filesize));
  if (rq.method == "GET") {
    curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
  } else if (rq.method == "HEAD") {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else {
    if (rq.method != "POST") curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, rq.method.c_str());
    if (rq.method == "POST" || !rq.body.empty()) {
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, rq.body.data());
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(rq.body.size()));
    }
  }
  // libcurl silently re-sends a request whose reused connection dies before
  // any response arrives. For a request that must not run twice, a fresh
  // connection rules that out.
  if (!http::may_resend(st.traits, http::transport::none)) curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
  if (st.options.compressed) curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
  set_timeouts(easy, st.options, st.options.attempt_timeout);
  set_tls(easy, st.options.tls);
  return true;
}

attempt_result request_job::complete(CURL* easy, CURLcode code) {
  state& st = *s_;
  attempt_result r;
  finish(r, easy, code, st.errbuf, st.options, st.traits, st.out.headers, why);
  if (why == interruption::too_big || code == CURLE_FILESIZE_EXCEEDED) {
    r.verdict = http::verdict::permanent;
    r.error = "the response body is larger than " + human_bytes(st.cap);
  }
  r.bytes = st.out.body.size();
  return r;
}

response request_job::conclude(stop_reason reason, std::vector<attempt_log> logs, const attempt_result* last) {
  response out = std::move(s_->out);
  out.reason = reason;
  out.attempts = std::move(logs);
  out.status = last ? last->status : 0;
  return out;
}

// Runs a job (download_job or request_job) to its end on one easy handle,
// each attempt on `multi` so that a stop request or a stall ends it at once.
template <class Job>
auto run_job(Job& job, const client_options& o, const std::string& url, CURL* easy, CURLM* multi) {
  auto one = [&](std::uint32_t n) {
    attempt_result early;
    if (!job.prepare(easy, n, early)) return early;
    const CURLcode code = run_transfer(multi, easy, o.stop_token, o.stall_timeout, &job.act, job.why);
    return job.complete(easy, code);
  };
  std::vector<attempt_log> logs;
  attempt_result last;
  const stop_reason reason = drive(o, url, one, logs, last);
  return job.conclude(reason, std::move(logs), &last);
}

}  // namespace detail

response client::perform(const request& rq) {
  detail::request_job job(options_, rq);
  return detail::run_job(job, options_, rq.url, easy_, multi_);
}

response perform_with_retry(CURL* easy, const client_options& options, http::request_traits traits,
                            const std::function<void(CURL*)>& before_retry) {
  global_init();
  CURLM* multi = curl_multi_init();
  if (!multi) throw std::runtime_error("backoff::curl::perform_with_retry: curl_multi_init failed");
  struct multi_guard {
    CURLM* m;
    ~multi_guard() { curl_multi_cleanup(m); }
  } guard{multi};
  response out;
  attempt_result last;
  auto one = [&](std::uint32_t n) {
    if (n > 1 && before_retry) before_retry(easy);
    attempt_result r;
    interruption why = interruption::none;
    const CURLcode code = run_transfer(multi, easy, options.stop_token, std::chrono::milliseconds{0}, nullptr, why);
    // Read only the headers that matter, without taking over the caller's callbacks.
    std::vector<header> hints;
    for (const char* name : {"Retry-After", "RateLimit-Reset"}) {
      curl_header* h = nullptr;
      if (curl_easy_header(easy, name, 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h) hints.emplace_back(name, h->value);
    }
    finish(r, easy, code, nullptr, options, traits, hints, why);
    out.headers = std::move(hints);
    return r;
  };
  char* url = nullptr;
  curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url);
  out.reason = drive(options, url ? url : "", one, out.attempts, last);
  out.status = last.status;
  return out;
}

namespace detail {

// The strongest digest a field names, if it parses.
template <class Parse>
std::optional<http::digest> server_digest(const std::vector<header>& headers, const char* name, Parse parse) {
  const std::string value = http::joined_header(headers, name);
  if (value.empty()) return std::nullopt;
  const auto members = parse(value);
  return members ? http::strongest(*members) : std::nullopt;
}

std::optional<std::pair<std::string, http::digest>> repr_digest_of(const std::vector<header>& headers) {
  if (auto repr = server_digest(headers, "Repr-Digest", http::parse_digest_field)) return std::pair{std::string("Repr-Digest"), *repr};
  if (auto legacy = server_digest(headers, "Digest", http::parse_legacy_digest)) return std::pair{std::string("Digest"), *legacy};
  return std::nullopt;
}

// What must match: the user's checksum, then what the server's integrity
// fields say of the whole file (Repr-Digest, or the older Digest) and of one
// response's bytes (Content-Digest: the whole file on a 200, the rest on a 206).
std::string check_digests(download_file& file, const client_options& options, const std::vector<header>& repr_headers,
                          const std::vector<header>* content_headers, std::uint64_t content_from, download_result& out) {
  struct expectation {
    std::string label;      // in messages: "sha256" (--checksum), "Repr-Digest sha-256", …
    std::string algorithm;  // OpenSSL's name: "sha256", "sha512"
    std::string hex;
    std::uint64_t from;     // the bytes it covers start here
    bool from_server;
  };
  std::vector<expectation> expected;
  if (const auto& sum = options.expected_checksum) expected.push_back({sum->algorithm, sum->algorithm, sum->hex, 0, false});
  const auto openssl_name = [](const std::string& a) { return a == "sha-512" ? std::string("sha512") : std::string("sha256"); };
  if (const auto repr = repr_digest_of(repr_headers))
    expected.push_back({repr->first + " " + repr->second.algorithm, openssl_name(repr->second.algorithm), repr->second.hex, 0, true});
  if (content_headers)
    if (const auto content = server_digest(*content_headers, "Content-Digest", http::parse_digest_field))
      expected.push_back({"Content-Digest " + content->algorithm, openssl_name(content->algorithm), content->hex,
                          content_from, true});
  out.verified.clear();
  for (const auto& e : expected) {
    if (e.from_server && file.is_stream()) continue;  // a stream cannot be re-read
    const std::string got = file.digest(e.algorithm, e.from);
    if (!e.from_server) out.digest = got;
    if (got == e.hex) {
      if (e.from_server) out.verified.push_back(e.label);
      continue;
    }
    return e.label + " mismatch: expected " + e.hex + ", got " + got;
  }
  return {};
}

// One download attempt's view of the response, shared with the curl callbacks.
struct download_job::state {
  const client_options& options;
  std::string url;
  download_file& file;
  std::vector<header> user_headers;
  activity* act = nullptr;
  interruption* why = nullptr;
  download_job* job = nullptr;
  std::string shown;                 // the file's name in messages
  bool checksum_retried = false;
  download_result out;

  // What one attempt keeps alive while its transfer runs.
  std::vector<header> headers;
  std::unique_ptr<slist> request_headers;
  char errbuf[CURL_ERROR_SIZE] = {0};
  header_sink hs{};
  CURL* easy = nullptr;
  std::uint32_t attempt = 0;
  std::uint64_t offset_sent = 0;     // what Range asked to continue from
  std::string validator_sent;        // what If-Range carried
  bool decided = false;
  http::body_decision decision{};
  bool writing = false;              // this response's body belongs to the file
  std::optional<std::uint64_t> body_end;
  std::uint64_t attempt_bytes = 0;
  int write_errno = 0;
  bool cannot_restart = false;       // a stream that already delivered bytes

  std::uint32_t resumes = 0, restarts = 0;

  state(const client_options& o, std::string u, download_file& f, const std::vector<header>& h)
      : options(o), url(std::move(u)), file(f), user_headers(h),
        shown(f.is_stream() ? f.final_path().string() : f.part_path().string()) {}

  // Decides what this response's body is, once its headers are complete.
  // Returns false when the transfer must stop.
  bool decide() {
    decided = true;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    const http::range_request sent{offset_sent, validator_sent, file.length()};
    decision = http::decide_body(static_cast<int>(status), headers, sent);
    switch (decision.action) {
      case http::body_action::append:
        if (job->claim && !job->claim()) return false;
        if (offset_sent > 0) ++resumes;
        body_end = decision.body_end;
        writing = true;
        if (decision.complete != file.length()) file.describe(file.validator(), decision.complete);
        if (job->on_body_decided) job->on_body_decided(status, headers);
        return true;
      case http::body_action::start_over:
        if (job->claim && !job->claim()) return false;
        if (file.size() > 0) {
          if (!file.discard()) {
            if (file.is_stream()) cannot_restart = true;
            else write_errno = errno;
            return false;
          }
          ++restarts;
        }
        file.describe(http::if_range_validator(headers), decision.complete);
        body_end = decision.body_end;
        writing = true;
        if (job->on_body_decided) job->on_body_decided(status, headers);
        return true;
      case http::body_action::complete:
        return true;
      case http::body_action::restart:
      case http::body_action::not_a_download:
        return false;
      case http::body_action::classify:
        return true;  // an error page: read and dropped, so the connection can be kept
    }
    return true;
  }

  static std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
    auto* s = static_cast<state*>(user);
    const std::size_t len = size * n;
    s->act->last = steady::now();
    if (!s->decided && !s->decide()) return 0;
    if (!s->writing) return len;
    if (s->options.max_filesize && s->file.size() + len > *s->options.max_filesize) {
      *s->why = interruption::too_big;
      return 0;
    }
    // A segmented download gave the rest of the file to other connections.
    const std::uint64_t stop = s->job->stop_at;
    const std::size_t take = s->file.size() >= stop ? 0 : static_cast<std::size_t>(std::min<std::uint64_t>(len, stop - s->file.size()));
    if (const int e = s->file.write(data, take); e != 0) {
      s->write_errno = e;
      return 0;
    }
    s->attempt_bytes += take;
    if (take < len) {
      *s->why = interruption::split;
      return 0;
    }
    if (s->job->on_bytes) s->job->on_bytes();
    else if (s->options.on_progress) s->options.on_progress(progress{s->url, s->attempt, s->file.size(), s->file.length()});
    return len;
  }
};

download_job::download_job(const client_options& o, std::string url, download_file& file,
                           const std::vector<header>& user_headers)
    : s_(std::make_unique<state>(o, std::move(url), file, user_headers)) {
  s_->act = &act;
  s_->why = &why;
  s_->job = this;
  if (o.expected_checksum) file.track_digest(o.expected_checksum->algorithm);
}

download_job::~download_job() = default;

std::uint64_t download_job::attempt_bytes() const noexcept { return s_->attempt_bytes; }

void download_job::retarget(std::string url) { s_->url = std::move(url); }

bool download_job::local_failure() const noexcept { return s_->write_errno != 0 || s_->cannot_restart; }

void download_job::take_counts(download_result& out) {
  out.resumes += s_->resumes;
  out.restarts += s_->restarts;
  s_->resumes = s_->restarts = 0;
}

bool download_job::prepare(CURL* easy, std::uint32_t n, attempt_result& early) {
  state& st = *s_;
  download_file& file = st.file;
  st.easy = easy;
  st.attempt = n;
  st.decided = st.writing = st.cannot_restart = false;
  st.decision = {};
  st.body_end.reset();
  st.attempt_bytes = 0;
  st.write_errno = 0;
  why = interruption::none;
  st.headers.clear();
  act.last = steady::now();
  // Extents another run left for segments: one stream keeps only their prefix.
  if (!file.segmented() && file.saved_extents()) file.end_segments();
  // Resume only what is known to be one version; anything else starts over.
  if (file.size() > 0 && file.validator().empty() && !file.discard()) {
    early = attempt_result{};
    early.verdict = http::verdict::permanent;
    early.failure = http::transport::other;
    early.error = "cannot start over: " + std::to_string(file.size()) + " bytes were already written to " + st.shown;
    st.cannot_restart = true;
    return false;
  }
  st.offset_sent = file.size();
  st.validator_sent = file.validator();
  std::vector<header> h = st.user_headers;
  if (!http::find_header(h, "Want-Repr-Digest")) h.emplace_back("Want-Repr-Digest", std::string(http::want_repr_digest));
  if (st.offset_sent > 0) {
    h.emplace_back("Range", "bytes=" + std::to_string(st.offset_sent) + "-");
    h.emplace_back("If-Range", st.validator_sent);
  }
  st.request_headers = std::make_unique<slist>(h);
  st.errbuf[0] = 0;
  st.hs = header_sink{&st.headers, &act};
  curl_easy_reset(easy);
  curl_easy_setopt(easy, CURLOPT_URL, st.url.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, st.errbuf);
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, max_redirects);
  curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, st.request_headers->list);
  curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, buffer_size);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &state::on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &st.hs);
  set_timeouts(easy, st.options, st.options.download_timeout);
  set_tls(easy, st.options.tls);
  return true;
}

attempt_result download_job::complete(CURL* easy, CURLcode code) {
  attempt_result r = classify(easy, code);
  if (r.verdict != http::verdict::success) s_->file.checkpoint();  // a later run may resume it
  return r;
}

attempt_result download_job::classify(CURL* easy, CURLcode code) {
  state& st = *s_;
  download_file& file = st.file;
  const client_options& options = st.options;
  const http::request_traits traits{"GET", false, false};
  attempt_result r;
  // An empty body never reaches on_body: decide now, so that a new version
  // with no bytes still discards the old ones.
  if (code == CURLE_OK && !st.decided) st.decide();
  finish(r, easy, code, st.errbuf, options, traits, st.headers, why);
  r.bytes = st.attempt_bytes;
  const auto& d = st.decision;
  const std::uint64_t have = file.size();
  r.progressed = st.attempt_bytes > 0 && !file.validator().empty();

  auto fail = [&](http::verdict v, std::string text) {
    r.verdict = v;
    if (r.failure == http::transport::none) r.failure = http::transport::other;
    r.error = std::move(text);
    r.hint.reset();
    return r;
  };
  if (st.write_errno != 0) {
    r.progressed = false;
    return fail(http::verdict::permanent, "cannot write '" + st.shown + "': " + std::strerror(st.write_errno));
  }
  if (st.cannot_restart)
    return fail(http::verdict::permanent, "the server sent the file from the start, but " + std::to_string(have) +
                                              " bytes were already written to " + st.shown);
  if (why == interruption::too_big)
    return fail(http::verdict::permanent, "the file is larger than the limit of " + human_bytes(*options.max_filesize));
  if (why == interruption::cancelled || why == interruption::unsent || why == interruption::stalled) {
    r.error += have > 0 ? " (" + human_bytes(have) + " kept)" : "";
    return r;
  }
  if (st.decided && d.action == http::body_action::restart) {
    if (!file.discard()) return fail(http::verdict::permanent, "cannot truncate '" + st.shown + "'");
    ++st.restarts;
    r.progressed = false;
    return fail(http::verdict::retryable, d.why + "; starting over");
  }
  if (st.decided && d.action == http::body_action::not_a_download) {
    r.progressed = false;
    return fail(http::verdict::permanent, d.why);
  }
  if (code != CURLE_OK) {
    if (st.writing && (r.failure == http::transport::connection_dropped ||
                       r.failure == http::transport::connection_reset || r.failure == http::transport::timeout)) {
      const std::string what = r.failure == http::transport::timeout ? "timed out" : "connection closed";
      r.error = what + " after " + human_bytes(have) + (st.body_end ? " of " + human_bytes(*st.body_end) : "");
    }
    return r;
  }
  if (!st.decided || d.action == http::body_action::classify) return r;  // HTTP error: finish() classified it
  r.failure = http::transport::none;
  if (d.action != http::body_action::complete) {
    if (st.body_end && have != *st.body_end) {
      r.failure = http::transport::connection_dropped;
      return fail(http::verdict::retryable,
                  "connection closed after " + human_bytes(have) + " of " + human_bytes(*st.body_end));
    }
    if (file.length() && have < *file.length()) {
      r.failure = http::transport::connection_dropped;
      return fail(http::verdict::retryable, "the server sent " + human_bytes(have) + " of " +
                                                human_bytes(*file.length()) + "; asking for the rest");
    }
  }
  const std::string mismatch = check_digests(file, options, st.headers, &st.headers,
                                             d.action == http::body_action::append ? st.offset_sent : 0, st.out);
  if (!mismatch.empty()) {
    r.progressed = false;
    if (st.checksum_retried || file.is_stream()) {
      st.out.checksum_mismatch = true;
      file.discard();
      return fail(http::verdict::permanent, mismatch);
    }
    st.checksum_retried = true;
    if (!file.discard()) return fail(http::verdict::permanent, "cannot truncate '" + st.shown + "'");
    ++st.restarts;
    return fail(http::verdict::retryable, mismatch + "; starting over");
  }
  r.verdict = http::verdict::success;
  r.error.clear();
  return r;
}

download_result download_job::conclude(stop_reason reason, std::vector<attempt_log> logs, const attempt_result* last) {
  state& st = *s_;
  download_file& file = st.file;
  download_result out = std::move(st.out);
  out.reason = reason;
  out.attempts = std::move(logs);
  out.status = last ? last->status : 0;
  out.resumes = st.resumes;
  out.restarts = st.restarts;
  out.bytes = file.size();
  if (out.ok()) {
    if (auto err = file.commit(); !err.empty()) {
      out.reason = stop_reason::permanent;
      out.file_error = true;
      out.error = std::move(err);
      file.abandon(false);
    } else {
      out.path = file.final_path();
    }
    return out;
  }
  if (!out.attempts.empty()) out.error = out.attempts.back().error;
  if (out.error.empty()) out.error = std::string(to_string(out.reason));
  out.file_error = st.write_errno != 0;
  // Worth resuming after a transient failure or a cancel; not after a permanent
  // one (404, too large, a checksum that never matched).
  const bool keep = st.options.keep_partial && out.reason != stop_reason::permanent && file.resumable();
  if (keep) out.partial = file.part_path();
  file.abandon(keep);
  return out;
}

}  // namespace detail

std::string save_to(const std::filesystem::path& target, std::string_view bytes) {
  detail::download_file file;
  if (auto err = file.open(target, ""); !err.empty()) return err;
  if (const int e = file.write(bytes.data(), bytes.size()); e != 0) {
    file.abandon(false);
    return "cannot write '" + target.string() + "': " + std::strerror(e);
  }
  if (auto err = file.commit(); !err.empty()) {
    file.abandon(false);
    return err;
  }
  return {};
}

download_result client::download(const std::string& url, const std::filesystem::path& target,
                                 const std::vector<header>& headers) {
  if (url.empty()) throw std::invalid_argument("backoff::curl::client::download: url must not be empty");
  if (target.empty() || !target.has_filename())
    throw std::invalid_argument("backoff::curl::client::download: target '" + target.string() + "' is not a file path");
  download_result out;
  out.path = target;
  detail::download_file file;
  if (auto err = file.open(target, url); !err.empty()) {
    out.reason = stop_reason::permanent;
    out.error = std::move(err);
    out.file_error = true;
    return out;
  }
  return download_into(url, file, std::move(out), headers);
}

download_result client::download(const std::string& url, int fd, const std::vector<header>& headers) {
  if (url.empty()) throw std::invalid_argument("backoff::curl::client::download: url must not be empty");
  download_result out;
  out.path = "fd " + std::to_string(fd);
  detail::download_file file;
  file.open_stream(fd, fd == 1 ? "standard output" : out.path.string());
  return download_into(url, file, std::move(out), headers);
}

download_result client::download_into(const std::string& url, detail::download_file& file, download_result out,
                                      const std::vector<header>& user_headers) {
  detail::download_job job(options_, url, file, user_headers);
  download_result r = detail::run_job(job, options_, url, easy_, multi_);
  if (r.path.empty()) r.path = out.path;
  return r;
}

}  // namespace backoff::curl
