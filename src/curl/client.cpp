#include "backoff/curl/client.hpp"

#include <curl/curl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <system_error>
#include <utility>

#include "backoff/http/idempotency.hpp"
#include "backoff/http/resume.hpp"
#include "backoff/retry.hpp"
#include "backoff/stop.hpp"
#include "download_file.hpp"

namespace backoff::curl {

namespace {

using steady = std::chrono::steady_clock;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

constexpr long max_redirects = 10;
constexpr std::uint64_t default_memory_cap = std::uint64_t{1} << 30;  // perform() bodies, when unset
constexpr long receive_buffer = 512 * 1024;                          // fewer, larger reads than curl's 16 KiB

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

// Why the client ended a transfer itself.
enum class interruption : std::uint8_t { none, cancelled, stalled, too_big };

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
  bool cancelled = false;   // the stop token ended it
  std::optional<duration> hint;
  std::uint64_t bytes = 0;
};

struct header_sink {
  std::vector<header>* headers;
  activity* act;
};

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

// Runs one transfer on `multi`. A stop request wakes the poll and ends the
// transfer at once; so does `stall` without any activity (0 = never).
CURLcode run_transfer(CURLM* multi, CURL* easy, const std::stop_token& token, std::chrono::milliseconds stall,
                      const activity* act, interruption& why) {
  if (token.stop_requested()) {
    why = interruption::cancelled;
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
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
  long request_size = 0;
  curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_size);
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
}

std::string host_of(const std::string& url) {
  std::string host;
  if (CURLU* u = curl_url()) {
    char* h = nullptr;
    if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK && curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK) {
      host = h;
      curl_free(h);
    }
    curl_url_cleanup(u);
  }
  return host;
}

// Runs `one(attempt_number)` under the client's policy; fills `logs`.
template <class One>
stop_reason drive(const client_options& o, const std::string& url, One&& one, std::vector<attempt_log>& logs,
                  attempt_result& last) {
  policy p = o.policy;
  // The caller's gate and the per-host release time, as one gate.
  const std::string host = o.hosts ? host_of(url) : std::string{};
  std::optional<host_backoff::key_gate> host_gate;
  if (o.hosts && !host.empty()) host_gate.emplace(*o.hosts, host);
  std::optional<gate_chain> chain;
  backoff::gate* g = o.gate;
  if (host_gate && o.gate) g = &chain.emplace(gate_chain{&*host_gate, o.gate});
  else if (host_gate) g = &*host_gate;
  backoff::clock& clk = clock_of(o);
  if (o.deadline) p.stop = p.stop | stop::before_deadline(*o.deadline);
  std::uint32_t n = 0;
  const options<attempt_result> opts{
      .classify = {.is_success = [](const attempt_result& r) { return r.verdict == http::verdict::success; },
                   .retry_value =
                       [](const attempt_result& r) {
                         return (r.verdict == http::verdict::retryable || r.verdict == http::verdict::throttled) &&
                                r.resend_allowed;
                       },
                   .retry_exception = [](const std::exception_ptr&) { return false; }},
      .after_attempt =
          [&](const attempt<attempt_result>& a) {
            if (logs.size() < a.record.number) return;
            auto& log = logs[a.record.number - 1];
            log.start = a.record.start;
            log.took = a.record.took;
            log.delay = a.record.delay;
            if (o.on_attempt) o.on_attempt(log);
          },
      .server_hint =
          [&](const attempt<attempt_result>& a) {
            const auto hint = a.result ? a.result->hint : std::nullopt;
            // A Retry-After holds back every request to the host, not just this one.
            if (hint && o.hosts && !host.empty()) o.hosts->hold(host, clk.now(), *hint);
            return hint;
          },
      .gate = g,
      .gate_first_attempt = o.gate_first_attempt || host_gate.has_value(),
      .is_timeout = [](const attempt<attempt_result>& a) { return a.result && a.result->failure == http::transport::timeout; },
      .made_progress = [](const attempt<attempt_result>& a) { return a.result && a.result->progressed; },
      .clock = o.clock,
      .rng = o.rng,
      .stop_token = o.stop_token,
  };
  auto r = try_retry(p,
                     [&] {
                       attempt_result res = one(++n);
                       attempt_log log;
                       log.number = n;
                       log.status = res.status;
                       log.failure = res.failure;
                       log.curl_code = res.curl_code;
                       log.error = res.error;
                       log.hint = res.hint;
                       log.bytes = res.bytes;
                       logs.push_back(std::move(log));
                       return res;
                     },
                     opts);
  if (r.error) std::rethrow_exception(r.error);
  if (r.value) last = *r.value;
  if (r.reason == stop_reason::permanent && r.value && last.cancelled) return stop_reason::cancelled;
  if (r.reason == stop_reason::permanent && r.value &&
      (last.verdict == http::verdict::retryable || last.verdict == http::verdict::throttled) && !last.resend_allowed)
    return stop_reason::not_idempotent;
  return r.reason;
}

}  // namespace

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

response client::perform(const request& rq) {
  if (rq.url.empty()) throw std::invalid_argument("backoff::curl::request: url must not be empty");
  if (rq.method.empty()) throw std::invalid_argument("backoff::curl::request: method must not be empty");
  std::vector<header> headers = rq.headers;
  bool has_key = http::find_header(headers, "Idempotency-Key").has_value();
  if (!has_key && rq.add_idempotency_key) {
    random_ref rng = options_.rng;
    headers.emplace_back("Idempotency-Key", http::make_idempotency_key(rng));  // once, for every attempt
    has_key = true;
  }
  const http::request_traits traits{rq.method, rq.idempotent, has_key};
  const slist header_list(headers);
  const std::uint64_t cap = options_.max_filesize.value_or(default_memory_cap);

  response out;
  attempt_result last;
  auto one = [&](std::uint32_t) {
    attempt_result r;
    out.body.clear();
    out.headers.clear();
    char errbuf[CURL_ERROR_SIZE] = {0};
    activity act;
    interruption why = interruption::none;
    header_sink hs{&out.headers, &act};
    body_sink bs{&out.body, cap, &act, &why};
    curl_easy_reset(easy_);  // keeps the connection cache: attempts reuse kept-alive connections
    curl_easy_setopt(easy_, CURLOPT_URL, rq.url.c_str());
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(easy_, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(easy_, CURLOPT_MAXREDIRS, max_redirects);
    curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, header_list.list);
    curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, &bs);
    curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy_, CURLOPT_HEADERDATA, &hs);
    if (options_.max_filesize)
      curl_easy_setopt(easy_, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(*options_.max_filesize));
    if (rq.method == "GET") {
      curl_easy_setopt(easy_, CURLOPT_HTTPGET, 1L);
    } else if (rq.method == "HEAD") {
      curl_easy_setopt(easy_, CURLOPT_NOBODY, 1L);
    } else {
      if (rq.method != "POST") curl_easy_setopt(easy_, CURLOPT_CUSTOMREQUEST, rq.method.c_str());
      if (rq.method == "POST" || !rq.body.empty()) {
        curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, rq.body.data());
        curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(rq.body.size()));
      }
    }
    // libcurl silently re-sends a request whose reused connection dies before
    // any response arrives. For a request that must not run twice, a fresh
    // connection rules that out.
    if (!http::may_resend(traits, http::transport::none)) curl_easy_setopt(easy_, CURLOPT_FRESH_CONNECT, 1L);
    set_timeouts(easy_, options_, options_.attempt_timeout);
    const CURLcode code = run_transfer(multi_, easy_, options_.stop_token, options_.stall_timeout, &act, why);
    finish(r, easy_, code, errbuf, options_, traits, out.headers, why);
    if (why == interruption::too_big || code == CURLE_FILESIZE_EXCEEDED) {
      r.verdict = http::verdict::permanent;
      r.error = "the response body is larger than " + human_bytes(cap);
    }
    r.bytes = out.body.size();
    return r;
  };
  out.reason = drive(options_, rq.url, one, out.attempts, last);
  out.status = last.status;
  return out;
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

namespace {

// One download attempt's view of the response, shared with the curl callbacks.
struct download_state {
  detail::download_file* file = nullptr;
  CURL* easy = nullptr;
  std::vector<header>* headers = nullptr;
  activity* act = nullptr;
  const client_options* options = nullptr;
  std::uint32_t attempt = 0;

  // Set per attempt.
  std::uint64_t offset_sent = 0;     // what Range asked to continue from
  std::string validator_sent;        // what If-Range carried
  bool decided = false;
  http::body_decision decision{};
  bool writing = false;              // this response's body belongs to the file
  std::optional<std::uint64_t> body_end;
  std::uint64_t attempt_bytes = 0;
  int write_errno = 0;
  bool cannot_restart = false;       // a stream that already delivered bytes
  interruption why = interruption::none;

  std::uint32_t resumes = 0, restarts = 0;

  void begin(std::uint32_t n) {
    attempt = n;
    decided = writing = cannot_restart = false;
    decision = {};
    body_end.reset();
    attempt_bytes = 0;
    write_errno = 0;
    why = interruption::none;
  }

  // Decides what this response's body is, once its headers are complete.
  // Returns false when the transfer must stop.
  bool decide() {
    decided = true;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    const http::range_request sent{offset_sent, validator_sent, file->length()};
    decision = http::decide_body(static_cast<int>(status), *headers, sent);
    switch (decision.action) {
      case http::body_action::append:
        if (offset_sent > 0) ++resumes;
        body_end = decision.body_end;
        writing = true;
        if (decision.complete != file->length()) file->describe(file->validator(), decision.complete);
        return true;
      case http::body_action::start_over:
        if (file->size() > 0) {
          if (!file->discard()) {
            if (file->is_stream()) cannot_restart = true;
            else write_errno = errno;
            return false;
          }
          ++restarts;
        }
        file->describe(http::if_range_validator(*headers), decision.complete);
        body_end = decision.body_end;
        writing = true;
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
};

std::size_t on_download(char* data, std::size_t size, std::size_t n, void* user) {
  auto* s = static_cast<download_state*>(user);
  const std::size_t len = size * n;
  s->act->last = steady::now();
  if (!s->decided && !s->decide()) return 0;
  if (!s->writing) return len;
  if (s->options->max_filesize && s->file->size() + len > *s->options->max_filesize) {
    s->why = interruption::too_big;
    return 0;
  }
  if (const int e = s->file->write(data, len); e != 0) {
    s->write_errno = e;
    return 0;
  }
  s->attempt_bytes += len;
  if (s->options->on_progress) s->options->on_progress(progress{s->attempt, s->file->size(), s->file->length()});
  return len;
}

}  // namespace

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
  const auto& sum = options_.expected_checksum;
  if (sum) file.track_digest(sum->algorithm);
  bool checksum_retried = false;

  std::vector<header> headers;
  activity act;
  download_state st;
  st.file = &file;
  st.easy = easy_;
  st.headers = &headers;
  st.act = &act;
  st.options = &options_;
  const http::request_traits traits{"GET", false, false};
  const std::string shown = file.is_stream() ? file.final_path().string() : file.part_path().string();

  auto one = [&](std::uint32_t n) {
    attempt_result r;
    st.begin(n);
    headers.clear();
    act.last = steady::now();
    // Resume only what is known to be one version; anything else starts over.
    if (file.size() > 0 && file.validator().empty() && !file.discard()) {
      r.verdict = http::verdict::permanent;
      r.failure = http::transport::other;
      r.error = "cannot start over: " + std::to_string(file.size()) + " bytes were already written to " + shown;
      st.cannot_restart = true;
      return r;
    }
    st.offset_sent = file.size();
    st.validator_sent = file.validator();
    std::vector<header> h = user_headers;
    if (st.offset_sent > 0) {
      h.emplace_back("Range", "bytes=" + std::to_string(st.offset_sent) + "-");
      h.emplace_back("If-Range", st.validator_sent);
    }
    const slist list(h);
    char errbuf[CURL_ERROR_SIZE] = {0};
    header_sink hs{&headers, &act};
    curl_easy_reset(easy_);
    curl_easy_setopt(easy_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(easy_, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(easy_, CURLOPT_MAXREDIRS, max_redirects);
    curl_easy_setopt(easy_, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, list.list);
    curl_easy_setopt(easy_, CURLOPT_BUFFERSIZE, receive_buffer);
    curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, on_download);
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, &st);
    curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy_, CURLOPT_HEADERDATA, &hs);
    set_timeouts(easy_, options_, options_.download_timeout);
    const CURLcode code = run_transfer(multi_, easy_, options_.stop_token, options_.stall_timeout, &act, st.why);
    // An empty body never reaches on_download: decide now, so that a new
    // version with no bytes still discards the old ones.
    if (code == CURLE_OK && !st.decided) st.decide();
    finish(r, easy_, code, errbuf, options_, traits, headers, st.why);
    r.bytes = st.attempt_bytes;
    const auto& d = st.decision;
    const std::uint64_t have = file.size();
    r.progressed = st.attempt_bytes > 0 && !file.validator().empty();

    auto fail = [&](http::verdict v, std::string why) {
      r.verdict = v;
      if (r.failure == http::transport::none) r.failure = http::transport::other;
      r.error = std::move(why);
      r.hint.reset();
      return r;
    };
    if (st.write_errno != 0) {
      r.progressed = false;
      return fail(http::verdict::permanent, "cannot write '" + shown + "': " + std::strerror(st.write_errno));
    }
    if (st.cannot_restart)
      return fail(http::verdict::permanent, "the server sent the file from the start, but " + std::to_string(have) +
                                                " bytes were already written to " + shown);
    if (st.why == interruption::too_big)
      return fail(http::verdict::permanent, "the file is larger than the limit of " + human_bytes(*options_.max_filesize));
    if (st.why == interruption::cancelled || st.why == interruption::stalled) {
      r.error += have > 0 ? " (" + human_bytes(have) + " kept)" : "";
      return r;
    }
    if (st.decided && d.action == http::body_action::restart) {
      if (!file.discard()) return fail(http::verdict::permanent, "cannot truncate '" + shown + "'");
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
    if (sum) {
      out.digest = file.digest(sum->algorithm);
      if (out.digest != sum->hex) {
        const std::string why = sum->algorithm + " mismatch: expected " + sum->hex + ", got " + out.digest;
        r.progressed = false;
        if (checksum_retried || file.is_stream()) {
          out.checksum_mismatch = true;
          file.discard();
          return fail(http::verdict::permanent, why);
        }
        checksum_retried = true;
        if (!file.discard()) return fail(http::verdict::permanent, "cannot truncate '" + shown + "'");
        ++st.restarts;
        return fail(http::verdict::retryable, why + "; starting over");
      }
    }
    r.verdict = http::verdict::success;
    r.error.clear();
    return r;
  };

  attempt_result last;
  out.reason = drive(options_, url, one, out.attempts, last);
  out.status = last.status;
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
  const bool keep = options_.keep_partial && out.reason != stop_reason::permanent && file.resumable();
  if (keep) out.partial = file.part_path();
  file.abandon(keep);
  return out;
}

}  // namespace backoff::curl
