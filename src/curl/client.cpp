#include "backoff/curl/client.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <mutex>
#include <system_error>
#include <utility>

#include "backoff/http/idempotency.hpp"
#include "backoff/retry.hpp"
#include "backoff/stop.hpp"

namespace backoff::curl {

namespace {

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

// What one attempt produced, as the retry loop classifies it.
struct attempt_result {
  long status = 0;
  http::transport failure = http::transport::none;
  int curl_code = 0;
  std::string error;
  bool sent = true;  // some request bytes were written to a connection
  http::verdict verdict = http::verdict::success;
  bool resend_allowed = true;
  std::optional<duration> hint;
  std::uint64_t bytes = 0;
};

struct header_sink {
  std::vector<header>* headers;
};

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* sink = static_cast<header_sink*>(user);
  std::string_view line(data, size * n);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  if (line.starts_with("HTTP/")) {
    sink->headers->clear();  // a new response (after a redirect or 100 Continue)
  } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    sink->headers->emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return size * n;
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
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

// Timeouts for one attempt: the configured ones, cut to what is left before the deadline.
void set_timeouts(CURL* easy, const client_options& o, backoff::clock& clk) {
  std::chrono::nanoseconds attempt = o.attempt_timeout;
  if (o.deadline) {
    const auto left = *o.deadline - clk.now();
    if (attempt.count() == 0 || left < attempt) attempt = left;
  }
  if (attempt.count() != 0) curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, as_ms(attempt));
  if (o.connect_timeout.count() > 0) curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()));
}

// Fills status, failure and the retry decision from a finished curl_easy_perform.
void finish(attempt_result& r, CURL* easy, CURLcode code, const char* errbuf, const client_options& o,
            const http::request_traits& traits, const std::vector<header>& headers) {
  r.curl_code = code;
  r.failure = map_code(code);
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
  long request_size = 0;
  curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_size);
  r.sent = request_size > 0;
  if (code != CURLE_OK) {
    r.error = errbuf && *errbuf ? errbuf : curl_easy_strerror(code);
    r.verdict = o.classifier.classify(r.failure);
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

backoff::clock& clock_of(const client_options& o) {
  return o.clock ? *o.clock : static_cast<backoff::clock&>(real_clock::instance());
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
      .is_success = [](const attempt_result& r) { return r.verdict == http::verdict::success; },
      .retry_result =
          [](const attempt_result& r) {
            return (r.verdict == http::verdict::retryable || r.verdict == http::verdict::throttled) && r.resend_allowed;
          },
      .retry_exception = [](const std::exception_ptr&) { return false; },
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
  if (r.reason == stop_reason::permanent && r.value &&
      (last.verdict == http::verdict::retryable || last.verdict == http::verdict::throttled) && !last.resend_allowed)
    return stop_reason::not_idempotent;
  return r.reason;
}

}  // namespace

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
}

client::~client() { curl_easy_cleanup(easy_); }

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
  backoff::clock& clk = clock_of(options_);

  response out;
  attempt_result last;
  auto one = [&](std::uint32_t) {
    attempt_result r;
    out.body.clear();
    out.headers.clear();
    char errbuf[CURL_ERROR_SIZE] = {0};
    header_sink hs{&out.headers};
    curl_easy_reset(easy_);  // keeps the connection cache: attempts reuse kept-alive connections
    curl_easy_setopt(easy_, CURLOPT_URL, rq.url.c_str());
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(easy_, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(easy_, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, header_list.list);
    curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, &out.body);
    curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy_, CURLOPT_HEADERDATA, &hs);
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
    set_timeouts(easy_, options_, clk);
    const CURLcode code = curl_easy_perform(easy_);
    finish(r, easy_, code, errbuf, options_, traits, out.headers);
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
  response out;
  attempt_result last;
  auto one = [&](std::uint32_t n) {
    if (n > 1 && before_retry) before_retry(easy);
    attempt_result r;
    const CURLcode code = curl_easy_perform(easy);
    // Read only the headers that matter, without taking over the caller's callbacks.
    std::vector<header> hints;
    for (const char* name : {"Retry-After", "RateLimit-Reset"}) {
      curl_header* h = nullptr;
      if (curl_easy_header(easy, name, 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h) hints.emplace_back(name, h->value);
    }
    finish(r, easy, code, nullptr, options, traits, hints);
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

// Download state shared by the curl callbacks of one attempt.
struct download_state {
  int fd = -1;
  std::uint64_t offset = 0;           // bytes of the file on disk
  std::optional<std::uint64_t> total; // the full size, once known
  std::string validator;              // ETag or Last-Modified for If-Range
  CURL* easy = nullptr;
  bool decided = false;               // this attempt's response is classified
  bool to_file = false;               // this attempt's body goes to the file
  bool range_mismatch = false;        // a 206 that does not continue where we are
  bool write_failed = false;
  int write_errno = 0;
  std::uint32_t attempt = 0;
  std::uint32_t resumes = 0, restarts = 0;
  std::uint64_t attempt_bytes = 0;
  std::vector<header>* headers = nullptr;
  const std::function<void(const progress&)>* on_progress = nullptr;

  void restart() {
    if (offset > 0) ++restarts;
    offset = 0;
    total.reset();
    if (fd >= 0 && ::ftruncate(fd, 0) != 0) {
      write_failed = true;
      write_errno = errno;
    }
  }
};

// "bytes 100-199/1000" → {100, 1000}; total may be "*".
std::optional<std::pair<std::uint64_t, std::optional<std::uint64_t>>> parse_content_range(std::string_view v) {
  if (!v.starts_with("bytes ")) return std::nullopt;
  v.remove_prefix(6);
  const auto dash = v.find('-'), slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) return std::nullopt;
  std::uint64_t first = 0, total = 0;
  if (std::from_chars(v.data(), v.data() + dash, first).ec != std::errc{}) return std::nullopt;
  const auto t = v.substr(slash + 1);
  if (t == "*") return std::pair{first, std::optional<std::uint64_t>{}};
  if (std::from_chars(t.data(), t.data() + t.size(), total).ec != std::errc{}) return std::nullopt;
  return std::pair{first, std::optional<std::uint64_t>{total}};
}

std::size_t on_download(char* data, std::size_t size, std::size_t n, void* user) {
  auto* s = static_cast<download_state*>(user);
  const std::size_t len = size * n;
  if (!s->decided) {
    s->decided = true;
    long status = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status == 206) {
      const auto cr = http::find_header(*s->headers, "Content-Range");
      const auto parsed = cr ? parse_content_range(*cr) : std::nullopt;
      if (!parsed || parsed->first != s->offset) {
        s->range_mismatch = true;
        return 0;  // abort; the next attempt starts over
      }
      if (s->offset > 0) ++s->resumes;
      s->total = parsed->second;
      s->to_file = true;
    } else if (status == 200) {
      s->restart();  // the server sent the whole file: start over
      curl_off_t length = -1;
      curl_easy_getinfo(s->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
      if (length >= 0) s->total = static_cast<std::uint64_t>(length);
      s->to_file = true;
    }
  }
  if (!s->to_file) return len;  // an error page: not part of the file
  std::size_t done = 0;
  while (done < len) {
    const ssize_t w = ::pwrite(s->fd, data + done, len - done, static_cast<off_t>(s->offset + done));
    if (w < 0) {
      if (errno == EINTR) continue;
      s->write_failed = true;
      s->write_errno = errno;
      return 0;
    }
    done += static_cast<std::size_t>(w);
  }
  s->offset += len;
  s->attempt_bytes += len;
  if (s->on_progress && *s->on_progress) (*s->on_progress)(progress{s->attempt, s->offset, s->total});
  return len;
}

}  // namespace

download_result client::download(const std::string& url, const std::filesystem::path& target,
                                 const std::vector<header>& user_headers) {
  if (url.empty()) throw std::invalid_argument("backoff::curl::client::download: url must not be empty");
  if (target.empty() || !target.has_filename())
    throw std::invalid_argument("backoff::curl::client::download: target '" + target.string() + "' is not a file path");
  download_result out;
  out.path = target;

  const auto dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  std::string temp = (dir / ("." + target.filename().string() + ".backoff-part-XXXXXX")).string();
  const int fd = ::mkstemp(temp.data());
  if (fd < 0) {
    out.reason = stop_reason::permanent;
    out.error = "cannot create a temporary file in '" + dir.string() + "': " + std::strerror(errno);
    out.file_error = true;
    return out;
  }
  ::fchmod(fd, 0644);

  download_state st;
  st.fd = fd;
  st.easy = easy_;
  st.on_progress = &options_.on_progress;
  std::vector<header> headers;
  st.headers = &headers;
  backoff::clock& clk = clock_of(options_);
  const http::request_traits traits{"GET", false, false};

  attempt_result last;
  auto one = [&](std::uint32_t n) {
    attempt_result r;
    st.attempt = n;
    st.decided = st.to_file = st.range_mismatch = false;
    st.attempt_bytes = 0;
    headers.clear();
    if (st.offset > 0 && st.validator.empty()) st.restart();  // cannot resume safely without a validator
    std::vector<header> h = user_headers;
    if (st.offset > 0) {
      h.emplace_back("Range", "bytes=" + std::to_string(st.offset) + "-");
      h.emplace_back("If-Range", st.validator);
    }
    const slist list(h);
    char errbuf[CURL_ERROR_SIZE] = {0};
    header_sink hs{&headers};
    curl_easy_reset(easy_);
    curl_easy_setopt(easy_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(easy_, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(easy_, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(easy_, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, list.list);
    curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, on_download);
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, &st);
    curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy_, CURLOPT_HEADERDATA, &hs);
    set_timeouts(easy_, options_, clk);
    const CURLcode code = curl_easy_perform(easy_);
    finish(r, easy_, code, errbuf, options_, traits, headers);
    r.bytes = st.attempt_bytes;

    if (r.status == 200 || r.status == 206) {
      // Remember how to ask for the rest: a strong ETag, else Last-Modified.
      const auto etag = http::find_header(headers, "ETag");
      const auto modified = http::find_header(headers, "Last-Modified");
      if (etag && !etag->starts_with("W/")) st.validator = std::string(*etag);
      else if (modified) st.validator = std::string(*modified);
      else st.validator.clear();
    }
    if (st.write_failed) {
      r.verdict = http::verdict::permanent;
      r.failure = http::transport::other;
      r.error = "cannot write '" + temp + "': " + std::strerror(st.write_errno);
      return r;
    }
    if (st.range_mismatch) {
      st.restart();
      r.verdict = http::verdict::retryable;
      r.error = "the server's Content-Range does not continue at byte " + std::to_string(st.offset);
      return r;
    }
    if (code == CURLE_OK && r.status == 416) {
      if (st.total && st.offset == *st.total) {
        r.verdict = http::verdict::success;  // we already have every byte
        r.error.clear();
      } else {
        st.restart();
        r.verdict = http::verdict::retryable;
        r.error = "HTTP 416: the range no longer fits the file; starting over";
      }
      return r;
    }
    if (code == CURLE_OK && (r.status == 200 || r.status == 206) && st.total && st.offset != *st.total) {
      r.verdict = http::verdict::retryable;
      r.failure = http::transport::connection_dropped;
      r.error = "received " + std::to_string(st.offset) + " of " + std::to_string(*st.total) + " bytes";
    }
    return r;
  };

  out.reason = drive(options_, url, one, out.attempts, last);
  out.status = last.status;
  out.resumes = st.resumes;
  out.restarts = st.restarts;
  out.bytes = st.offset;

  bool placed = false;
  if (out.ok()) {
    if (::fsync(fd) != 0) {
      out.error = "cannot flush '" + temp + "': " + std::strerror(errno);
    } else if (::close(fd) != 0) {
      out.error = "cannot close '" + temp + "': " + std::strerror(errno);
      st.fd = -1;
    } else {
      st.fd = -1;
      std::error_code ec;
      std::filesystem::rename(temp, target, ec);
      if (ec) out.error = "cannot move the download to '" + target.string() + "': " + ec.message();
      else placed = true;
    }
    if (!placed) {
      out.reason = stop_reason::permanent;
      out.file_error = true;
    }
  } else if (!out.attempts.empty()) {
    out.error = out.attempts.back().error;
    out.file_error = st.write_failed;
  }
  if (st.fd >= 0) ::close(st.fd);
  if (!placed) ::unlink(temp.c_str());
  return out;
}

}  // namespace backoff::curl
