// SPDX-License-Identifier: BSL-1.0
// backoff/curl/client.hpp — HTTP requests and downloads over libcurl, retried
// with backoff (target backoff::curl).
//
//   backoff::curl::client http({.policy = backoff::presets::google_cloud(),
//                               .attempt_timeout = 10s});
//   auto r = http.perform({.url = "https://api.example.com/v1/items"});
//   if (r.ok()) use(r.body); else log(r.describe());
//
//   auto d = http.download("https://example.com/big.iso", "big.iso");   // resumes, atomic
//
// Per attempt: the response is classified (backoff/http/classify.hpp); Retry-After
// or RateLimit-Reset stretch the next wait (clamped to hints.max_hint, and never
// past the deadline: the client gives up instead); POST and PATCH are re-sent only
// when provably unsent, marked idempotent, or carrying an Idempotency-Key, which
// stays the same on every attempt. One easy handle is reused, so attempts and
// requests share kept-alive connections — except requests that must not run
// twice, which take a fresh connection: libcurl would otherwise re-send them by
// itself when a reused connection turns out to be dead. A client is not thread-safe: use one
// per thread.
//
// Transfers run on a curl multi handle, so that options.stop_token ends an attempt
// in flight at once (not only a wait), and an attempt that receives nothing for
// stall_timeout ends even when the whole-attempt timeout is off.
//
// download() promises: the target is replaced only by a complete body of a 200,
// 203 or 206 (a resume), of the announced length and, when asked, the expected
// checksum; when the server sends Repr-Digest (or the older Digest) or
// Content-Digest with SHA-256 or SHA-512, the bytes match it (a mismatch starts
// over once, then fails with checksum_mismatch, as expected_checksum does), and
// every request asks for it with Want-Repr-Digest; bytes are appended only under the same strong validator (If-Range);
// a 201, 204, 304 or unfollowed redirect is a failure, never an empty file. Data
// in progress lives in `.NAME.backoff-part` beside the target, with its URL and
// validator in `.NAME.backoff-part.meta`: a download that fails (or is cancelled)
// keeps them, and the next download of the same URL to the same target resumes
// from there (starting over if the server's version changed). An attempt that
// added bytes to a resumable download does not count against the attempt limit
// and restarts the schedule at its first delay (see options::made_progress); what
// ends such a download is the deadline, a stall, or attempts that make no progress.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "backoff/gate.hpp"
#include "backoff/hedge.hpp"
#include "backoff/host_backoff.hpp"
#include "backoff/observer.hpp"
#include "backoff/quota.hpp"
#include "backoff/http/classify.hpp"
#include "backoff/http/hint.hpp"
#include "backoff/http/idempotency.hpp"
#include "backoff/policy.hpp"
#include "backoff/random.hpp"

typedef void CURL;
typedef void CURLM;

namespace backoff::curl {

namespace detail {
class download_file;
}

using http::header;

struct request {
  std::string method = "GET";
  std::string url{};
  std::vector<header> headers{};
  std::string body{};
  bool idempotent = false;         // vouch that a POST/PATCH may be repeated
  bool add_idempotency_key = false;  // add one Idempotency-Key (unless present), the same on every attempt
};

// One attempt as the client saw it, for progress displays and reports.
struct attempt_log {
  std::string url{};                // the request's URL (one client may run many requests)
  std::uint32_t number = 0;
  duration start{};                 // since the request began
  duration took{};
  long status = 0;                  // 0 when no response arrived
  http::transport failure = http::transport::none;
  int curl_code = 0;                // CURLcode
  std::string error{};              // what went wrong, for people: "HTTP 503", "no data for 30s",
                                    // "connection closed after 31.4 MiB of 48.0 MiB"; empty on success
  std::optional<duration> hint{};   // what the server asked for, after clamping
  duration delay{};                 // the wait that followed (0 for the last attempt)
  std::uint64_t bytes = 0;          // body bytes received in this attempt
  std::uint32_t copy = 1;           // hedged: which copy of its round this was (1: the first, 2: the first hedge)
  std::string range{};              // a segment's request, "bytes=1048576-2097151"; empty: the file from
                                    // where it stands (a whole download, or a resume)
  attempt_outcome outcome = attempt_outcome::success;  // as the retry loop classified it
};

struct response {
  long status = 0;
  std::vector<header> headers{};    // of the last response
  std::string body{};
  stop_reason reason = stop_reason::success;
  std::vector<attempt_log> attempts{};

  bool ok() const noexcept { return reason == stop_reason::success; }
  // One line: what happened and why it stopped, e.g.
  // "gave up after 3 attempts (exhausted): HTTP 503".
  std::string describe() const;
};

struct progress {
  std::string_view url;             // the download's URL, valid during the callback
  std::uint32_t attempt;
  std::uint64_t bytes;              // of the whole file, including resumed bytes
  std::optional<std::uint64_t> total{};
  std::uint32_t connections = 1;    // transferring now (a segmented download: several)
};

// An expected digest, "sha256:HEX" or "sha512:HEX".
struct checksum {
  std::string algorithm{};  // "sha256" or "sha512"
  std::string hex{};        // lower-case
};
// Parses "sha256:HEX" / "sha512:HEX" (hex of the right length, any case).
// Throws std::invalid_argument naming what is wrong.
checksum parse_checksum(std::string_view text);

// TLS, as curl's options set it. Empty fields keep libcurl's defaults (the
// system's CA store). A certificate that fails verification is a permanent
// error: retrying cannot make it trusted.
struct tls_options {
  std::string ca_file{};    // PEM bundle of the CAs to trust instead of the system's (curl --cacert)
  std::string ca_path{};    // directory of hashed CA certificates (curl --capath)
  std::string cert_file{};  // client certificate, PEM (curl --cert)
  std::string key_file{};   // its private key, PEM (curl --key); empty: in cert_file
  bool insecure = false;    // skip verifying the server's certificate and name (curl -k): tests only
};

// Segmented downloads (async_client): one file over several HTTP/1.1
// connections, each fetching byte ranges, as aria2 -x N does.
// The first response decides (backoff/http/segments.hpp, may_split): a file
// splits only when the server proves ranges work (a 206, or Accept-Ranges:
// bytes with a length), names a strong validator for If-Range, applies no
// content coding, and the file is at least two min_split. Connections are then
// added while the total throughput rises (doubling, RFC 6249 §7: keep a
// connection only if it helps), up to `connections`; a 429, 503 or refused
// connection halves them. Every segment's response must be a 206 with exactly
// the range asked under the same validator: anything else never reaches the
// file (a changed file starts over; a server that ignores ranges, or lies
// about them three times, continues on one stream). The part file's metadata
// lists the extents that are complete, so that a later run fetches only the
// gaps. The blocking client always uses one stream.
struct segment_options {
  unsigned connections = 1;                  // per file; 1: one stream
  std::uint64_t min_split = std::uint64_t{1} << 20;  // no segment smaller, except the end game's
};

// Whom a server's wait (Retry-After and the like) holds when `hosts` is set.
// RFC 6585 §4: a 429's Retry-After is how long to wait "before making a new
// request" — any request; RFC 9110 §15.6.4: a 503's is how long to wait
// "before retrying the request" — that one. by_status reads them so: a 429
// (any throttled status) holds the whole host; another status's hint delays
// only its own retry, unless the host keeps failing (failing_host_threshold
// more failures than successes: every request to it is failing), when it
// holds the host too.
enum class hint_scope : std::uint8_t {
  by_status,  // the default, as above
  host,       // every hint holds the host (backoff get --host-wide-retry-after)
  request,    // no hint holds the host (backoff get --per-transfer-retry-after)
};
inline constexpr std::uint32_t failing_host_threshold = 3;

struct client_options {
  backoff::policy policy{};
  segment_options segments{};
  tls_options tls{};
  // perform(): ask for any content coding libcurl can decode and hand back the
  // decoded body (curl --compressed). Downloads ignore it: they fetch the
  // representation as stored, so that lengths, ranges and checksums hold.
  bool compressed = false;
  // perform(): the whole attempt, 0 = none. Downloads use download_timeout.
  std::chrono::milliseconds attempt_timeout{std::chrono::seconds{30}};
  // download(): the whole attempt, 0 = none (the default: a slow but healthy
  // download is not cut; stall_timeout ends a dead one).
  std::chrono::milliseconds download_timeout{0};
  // Any attempt: ends it when no byte arrives for this long, 0 = never.
  std::chrono::milliseconds stall_timeout{std::chrono::seconds{30}};
  std::chrono::milliseconds connect_timeout{std::chrono::seconds{10}};
  // Bodies larger than this fail permanently (curl's --max-filesize). perform()
  // keeps bodies in memory and caps them at 1 GiB when this is unset.
  std::optional<std::uint64_t> max_filesize{};
  // download(): verified before the file is renamed into place. A mismatch
  // starts the download over once; a second one fails with checksum_mismatch.
  std::optional<checksum> expected_checksum{};
  // download(): on failure, keep resumable partial data for a later call.
  bool keep_partial = true;
  std::optional<time_point> deadline{};  // overall, on the steady clock
  http::classifier classifier{};
  http::hint_options hints{};           // max_hint defaults to 1 h
  // Overload protection (backoff/gate.hpp): a budget, throttle or breaker shared
  // by every request to the same upstream. Asked before each retry, and before
  // first attempts too when gate_first_attempt is set.
  backoff::gate* gate = nullptr;
  bool gate_first_attempt = false;
  // Told every attempt, retry, gate denial and the end of each request
  // (backoff/observer.hpp; backoff::metrics counts them, as http.request.resend_count).
  backoff::observer* observer = nullptr;
  // Backoff shared per host (keyed by host_key(url), "host:port"): every
  // request waits for the host's release time, and failures and the hints
  // hint_scope says push it for all of them.
  backoff::host_backoff* hosts = nullptr;
  hint_scope retry_after_scope = hint_scope::by_status;
  // Pacing from the quota servers announce (backoff/quota.hpp; RateLimit,
  // X-RateLimit-*, OpenAI's headers, keyed like hosts): a request waits once its
  // host's window is spent, until the window resets, rather than meet a 429.
  backoff::quota_pacer* quotas = nullptr;
  // Hedged requests (async_client only; backoff/hedge.hpp): with
  // hedge.max_attempts > 1, an attempt whose answer has not begun after the
  // hedge delay gets another copy beside it, up to max_attempts copies at
  // once, each asking `gate` and the stop rule first as a retry would. The
  // first copy whose body is the file's (a download) or whose answer is a
  // success (perform) wins; the others are cancelled and wrote nothing. A
  // copy that fails while another runs starts the next at once. Only requests
  // safe to send twice are hedged: downloads, and perform() with GET, HEAD,
  // OPTIONS, TRACE, PUT, DELETE, request::idempotent or an Idempotency-Key;
  // never another POST or PATCH. Not for segmented downloads (they already
  // run several connections). hedge.adaptive learns the time to the first
  // byte of each winning copy. hedge.retry is not used: `policy` rules retries.
  hedge_policy hedge{.max_attempts = 1};
  backoff::clock* clock = nullptr;      // waits between attempts (transfers use real time)
  random_ref rng{};
  std::stop_token stop_token{};
  std::function<void(const attempt_log&)> on_attempt{};  // after each attempt
  std::function<void(const progress&)> on_progress{};    // during downloads
};

// One source of a download with mirrors: how much it gave, and why it was
// left when it was.
struct source_log {
  std::string url{};
  std::uint64_t bytes = 0;          // written from its responses
  double rate = 0;                  // bytes/s per connection, while its requests ran (0: unmeasured)
  std::string dropped{};            // why it was left for this download; empty: used to the end
};

struct download_result {
  std::filesystem::path path{};
  std::uint64_t bytes = 0;
  long status = 0;
  stop_reason reason = stop_reason::success;
  std::vector<attempt_log> attempts{};
  std::uint32_t resumes = 0;        // attempts that continued with a 206
  std::uint32_t restarts = 0;       // attempts that had to start over (200 or 416)
  std::string error{};              // why it failed, empty on success
  bool file_error = false;          // the failure was local: the file could not be created, written or moved
  bool checksum_mismatch = false;   // the body was complete twice but not what expected_checksum says
  std::string digest{};             // the body's digest, when expected_checksum was set
  // What the server's integrity fields verified (RFC 9530): "Repr-Digest sha-256",
  // "Digest sha-512" (RFC 3230), "Content-Digest sha-256"; empty when it sent none.
  std::vector<std::string> verified{};
  std::filesystem::path partial{};  // where resumable data was kept on failure (empty: none)
  std::uint32_t connections = 1;    // the most connections that transferred at once
  std::string single_stream_why{};  // a segmented download that stayed (or went back to) one stream: why
  std::vector<source_log> sources{};  // with mirrors: the URL first, then each mirror (empty without mirrors)

  bool ok() const noexcept { return reason == stop_reason::success; }
};

class client {
 public:
  explicit client(client_options options = {});
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  const client_options& options() const noexcept { return options_; }

  // Performs one request under the retry policy.
  response perform(const request& r);

  // Downloads `url` to `target` (see the top of this header). On failure the
  // target is left untouched.
  download_result download(const std::string& url, const std::filesystem::path& target,
                           const std::vector<header>& headers = {});
  // The same into an open descriptor (standard output, a pipe), written in order.
  // Resumes need the server's Range support; a response that would make the
  // download start over after bytes were written fails instead.
  download_result download(const std::string& url, int fd, const std::vector<header>& headers = {});

 private:
  download_result download_into(const std::string& url, detail::download_file& out, download_result result,
                                const std::vector<header>& headers);

  client_options options_;
  CURL* easy_;
  CURLM* multi_;
};

// Writes `bytes` to `target` the way download() places a file: a regular file
// is replaced atomically (keeping its mode), a symlink's target is written (or
// created), a FIFO or device is written directly. Returns an error message, or
// empty on success.
std::string save_to(const std::filesystem::path& target, std::string_view bytes);

// Retries a caller-configured easy handle: URL, method, body, callbacks and all
// stay as the caller set them; each attempt runs on a multi handle of this call,
// so that options.stop_token ends it at once (stall_timeout is not applied: the
// callbacks are the caller's). Retry-After
// is read with curl_easy_header. `before_retry` runs before each new attempt (reset
// your write buffer there). `traits` decide whether a failed attempt may be re-sent.
response perform_with_retry(CURL* easy, const client_options& options, http::request_traits traits,
                            const std::function<void(CURL*)>& before_retry = {});

// The key client_options::hosts uses for a URL: "host:port", the port being
// the scheme's default when the URL names none ("example.com:443"). Empty
// when the URL cannot be parsed.
std::string host_key(const std::string& url);

}  // namespace backoff::curl
