// SPDX-License-Identifier: BSL-1.0
// backoff get: download a URL (or make an API call) with retries, Retry-After,
// resume and atomic output.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include <curl/curl.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <map>
#include <set>

#include "backoff/curl/async_client.hpp"
#include "backoff/curl/client.hpp"
#include "backoff/http/digest.hpp"
#include "cli.hpp"
#include "progress.hpp"
#include "metrics.hpp"
#include "report.hpp"
#ifdef BACKOFF_HAVE_REDIS
#include "share.hpp"
#endif

namespace backoff::cli {

namespace {

struct get_flags {
  policy_flags policy;
  metrics_options metrics;  // --metrics, --metrics-name, --push-metrics
  std::vector<std::string> urls, mirrors;
  std::string input_file, output_dir;
  unsigned parallel = 4;
  unsigned connections = 8;
  CLI::Option* connections_flag = nullptr;  // given on the command line
  std::string hedge_after;                  // DUR or "auto"
  unsigned hedge_max = 2;
  CLI::Option* hedge_max_flag = nullptr;
  std::string min_split_size = "1M";
  bool per_transfer_retry_after = false, host_wide_retry_after = false, ignore_quota = false;
  share_options share;  // --share redis[s]://[USER[:PASSWORD]@]HOST:PORT[/PREFIX], and its flags
  std::string url, output, timeout, stall_timeout = "30s", connect_timeout = "10s", max_retry_after = "1h", report;
  std::string max_filesize, checksum, method, data, data_binary, data_raw, json, idempotency_key, retry_on, no_retry_on;
  std::vector<std::string> headers;
  std::string user_agent, user;
  std::string cacert, capath, cert, key;
  bool insecure = false, compressed = false;
  bool quiet = false, show_error = false;
};

// One URL of a multi-URL get, and where it goes.
struct target {
  std::string url, output;
  std::vector<std::string> mirrors{};
};

// What the flags mean, checked before anything is fetched.
struct get_plan {
  std::string url, output;  // output "-" is standard output
  std::vector<std::string> mirrors;  // other sources of `url`
  std::vector<target> many;  // several URLs (or -i): downloaded at once, `parallel` at a time
  bool api = false;         // -X or -d: one request whose body is the output
  curl::request request{};
  curl::client_options client{};
  std::optional<duration> time_limit{};
  std::shared_ptr<latency_sketch> hedge_sketch{};  // --hedge-after auto: this run's times to a first byte
};

std::string default_output(const std::string& url) {
  std::string path = url;
  if (const auto q = path.find_first_of("?#"); q != std::string::npos) path.resize(q);
  if (const auto scheme = path.find("://"); scheme != std::string::npos) path = path.substr(scheme + 3);
  const auto slash = path.find('/');
  if (slash == std::string::npos) return "index.html";
  const auto last = path.substr(path.rfind('/') + 1);
  return last.empty() || last == "." || last == ".." ? "index.html" : last;
}

// The URL as messages and reports show it: the password of a URL that
// carries one (scheme://user:password@host/...) becomes "***", as wget shows
// it, so that terminals, logs and report files do not keep it.
std::string shown_url(const std::string& url) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const auto start = scheme + 3;
  const auto end = url.find_first_of("/?#", start);
  const auto at = url.rfind('@', end);
  if (at == std::string::npos || at < start) return url;
  const auto colon = url.find(':', start);
  if (colon == std::string::npos || colon > at) return url;  // a user name alone
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

// A timeout flag: 0 turns it off; anything else must be at least 1 ms, the
// resolution curl applies (a smaller value would silently mean "none").
std::chrono::milliseconds timeout_flag(const std::string& text, const std::string& flag) {
  const duration d = parse_duration(text, flag);
  if (d.count() > 0 && d < std::chrono::milliseconds{1})
    throw usage_error(flag + ": '" + text + "' is shorter than 1ms, the smallest timeout there is (0 turns it off)");
  return std::chrono::ceil<std::chrono::milliseconds>(d);
}

std::string read_data(const std::string& data) {
  if (!data.starts_with("@") || data == "@") return data;
  const std::string path = data.substr(1);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw usage_error("--data: cannot read '" + path + "': " + std::strerror(errno));
  std::ostringstream all;
  all << in.rdbuf();
  return all.str();
}

// What would help after a TLS failure, by curl's error code (empty: nothing to say).
std::string tls_advice(int curl_code) {
  switch (curl_code) {
    case CURLE_PEER_FAILED_VERIFICATION:
      return "the server's certificate is not trusted here: if it comes from a private CA, give that CA with "
             "--cacert FILE (or --capath DIR); --insecure skips the check, unsafely";
    case CURLE_SSL_CACERT_BADFILE:
      return "the CA certificates cannot be read: check --cacert and --capath (or CURL_CA_BUNDLE, SSL_CERT_FILE, "
             "SSL_CERT_DIR)";
    case CURLE_SSL_CERTPROBLEM:
      return "the client certificate or its key cannot be used: check --cert and --key";
    case CURLE_SSL_CONNECT_ERROR:
      return "the TLS handshake failed: if the server asks for a client certificate, give it with --cert FILE "
             "--key FILE";
    default: return {};
  }
}

// `what` went wrong in attempt `a`; after a TLS failure, with what would help.
std::string with_tls_advice(std::string what, const curl::attempt_log& a) {
  if (a.failure != http::transport::tls) return what;
  const std::string advice = tls_advice(a.curl_code);
  return advice.empty() ? what : what + " (" + advice + ")";
}

// The same for a request's last attempt.
std::string with_tls_advice(std::string what, const std::vector<curl::attempt_log>& attempts) {
  return attempts.empty() ? what : with_tls_advice(std::move(what), attempts.back());
}

void check_url(const std::string& url, const std::string& where) {
  if (url.find("://") == std::string::npos)
    throw usage_error(where + ": '" + url + "' has no scheme (expected http:// or https://)");
  if (url.find_first_of(" \t\r\n") != std::string::npos) throw usage_error(where + ": '" + url + "' has a blank in it");
}

// -i FILE: one file per line: its URL, then any mirrors (more words with
// "://", as aria2's tab-separated URIs), then optionally an output name;
// blank lines and lines starting with # are skipped.
std::vector<target> read_input_file(const std::string& path) {
  std::ifstream file;
  if (path != "-") {
    file.open(path);
    if (!file) throw usage_error("--input-file: cannot read '" + path + "': " + std::strerror(errno));
  }
  std::istream& in = path == "-" ? std::cin : file;
  std::vector<target> out;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::istringstream words(line);
    std::string url, word, name;
    if (!(words >> url) || url.starts_with("#")) continue;
    const std::string where = "--input-file: " + path + ":" + std::to_string(number);
    check_url(url, where);
    std::vector<std::string> mirrors;
    while (words >> word) {
      if (!name.empty())
        throw usage_error(where + ": expected 'URL [MIRROR...] [OUTPUT]', got '" + line + "'");
      if (word.find("://") != std::string::npos) {
        check_url(word, where);
        mirrors.push_back(word);
      } else {
        name = word;
      }
    }
    out.push_back({url, name, std::move(mirrors)});
  }
  return out;
}

// --hedge-after DUR|auto and --hedge-max N (client_options::hedge): a file
// hedged comes over one connection, to a file, from one source.
void plan_hedging(const get_flags& f, get_plan& p) {
  const bool max_given = f.hedge_max_flag && f.hedge_max_flag->count() > 0;
  if (f.hedge_after.empty()) {
    if (max_given) throw usage_error("--hedge-max: needs --hedge-after DUR|auto");
    return;
  }
  curl::client_options& o = p.client;
  if (f.hedge_max < 2 || f.hedge_max > 10)
    throw usage_error("--hedge-max: " + std::to_string(f.hedge_max) + " is not in 2..10 (copies at once, the first included)");
  if (!p.api && p.output == "-" && p.many.empty())
    throw usage_error("--hedge-after: standard output takes one request's bytes in order; save to a file with -o FILE");
  bool mirrors = !p.mirrors.empty();
  for (const auto& t : p.many) mirrors = mirrors || !t.mirrors.empty();
  if (mirrors) throw usage_error("--hedge-after: not with mirrors, which already spread a file over several sources");
  if (f.connections_flag && f.connections_flag->count() > 0 && f.connections > 1)
    throw usage_error("--hedge-after: a hedged file comes over one connection; drop --connections " +
                      std::to_string(f.connections));
  o.segments.connections = 1;
  o.hedge.max_attempts = f.hedge_max;
  if (f.hedge_after == "auto") {
    // The 95th percentile of this run's times to a first byte, at least 10 ms;
    // 1 s until 20 of them are known.
    p.hedge_sketch = std::make_shared<latency_sketch>();
    o.hedge.adaptive = p.hedge_sketch.get();
    o.hedge.delay = std::chrono::seconds(1);
  } else {
    const duration d = parse_duration(f.hedge_after, "--hedge-after");
    if (d < std::chrono::milliseconds(1) || d > std::chrono::hours(1))
      throw usage_error("--hedge-after: '" + f.hedge_after + "' is outside 1ms..1h (or give auto)");
    o.hedge.delay = d;
  }
}

get_plan plan_of(get_flags& f) {
  get_plan p;
  if (f.urls.empty() && f.input_file.empty())
    throw usage_error("url is required (give one or more URLs, or -i FILE)");
  for (const auto& u : f.urls) check_url(u, "url");
  const bool many = f.urls.size() > 1 || !f.input_file.empty();
  if (!many) f.url = f.urls.front();
  p.url = f.url;
  for (const auto& m : f.mirrors) check_url(m, "--mirror");
  if (!f.mirrors.empty() && many)
    throw usage_error("--mirror: the mirrors of one URL; for several files, list each file's mirrors on its line "
                      "in -i FILE ('URL MIRROR... [NAME]')");
  p.mirrors = f.mirrors;
  if (f.parallel < 1 || f.parallel > 1000) throw usage_error("--parallel: " + std::to_string(f.parallel) + " is not in 1..1000");
  // aria2 caps at 16 and its maintainers refused more: servers ban clients
  // that open many connections. 32 leaves room and keeps that promise.
  if (f.connections < 1 || f.connections > 32)
    throw usage_error("--connections: " + std::to_string(f.connections) + " is not in 1..32");
  p.client.segments.connections = f.connections;
  p.client.segments.min_split = parse_size(f.min_split_size, "--min-split-size");
  if (p.client.segments.min_split < 64 * 1024)
    throw usage_error("--min-split-size: '" + f.min_split_size + "' is below 64K, the smallest segment worth a request");
  if (many) {
    if (!f.output.empty()) throw usage_error("--output: one file for several URLs; use -O DIR (or names in -i FILE)");
    if (!f.method.empty()) throw usage_error("-X/--request: API calls take one URL");
    if (!f.checksum.empty()) throw usage_error("--checksum: one digest for several URLs; download them one by one");
    for (const auto& u : f.urls) p.many.push_back({u, "", {}});
    if (!f.input_file.empty())
      for (auto& t : read_input_file(f.input_file)) p.many.push_back(std::move(t));
    if (p.many.empty()) throw usage_error("--input-file: '" + f.input_file + "' lists no URL");
    // One file per URL: names are compared as the files they are ("out",
    // "./out", "sub/../out" and a symlink to it are one), or a later download
    // would replace an earlier one's file.
    std::map<std::string, std::string> seen;  // file → the name that gave it
    for (auto& t : p.many) {
      if (t.output.empty()) t.output = default_output(t.url);
      if (!f.output_dir.empty()) t.output = (std::filesystem::path(f.output_dir) / t.output).string();
      std::error_code ec;
      std::filesystem::path file = std::filesystem::weakly_canonical(std::filesystem::absolute(t.output), ec);
      if (ec) file = std::filesystem::absolute(t.output).lexically_normal();
      const auto [it, fresh] = seen.emplace(file.string(), t.output);
      if (!fresh)
        throw usage_error("two URLs would be saved as '" + t.output + "'" +
                          (it->second == t.output ? std::string() : ", which is also '" + it->second + "'") +
                          " (name one in -i FILE: 'URL NAME')");
    }
  }
  curl::client_options& o = p.client;
  o.policy = f.policy.build();
  if (!f.timeout.empty()) o.download_timeout = o.attempt_timeout = timeout_flag(f.timeout, "--timeout");
  else o.attempt_timeout = std::chrono::seconds{30};  // API calls keep a whole-request limit
  o.stall_timeout = timeout_flag(f.stall_timeout, "--stall-timeout");
  o.connect_timeout = timeout_flag(f.connect_timeout, "--connect-timeout");
  o.hints.max_hint = parse_duration(f.max_retry_after, "--max-retry-after");
  if (f.per_transfer_retry_after && f.host_wide_retry_after)
    throw usage_error("--host-wide-retry-after: contradicts --per-transfer-retry-after; give one");
  if (f.host_wide_retry_after) o.retry_after_scope = curl::hint_scope::host;
  if (f.per_transfer_retry_after) o.retry_after_scope = curl::hint_scope::request;
  if (!f.max_filesize.empty()) o.max_filesize = parse_size(f.max_filesize, "--max-filesize");
  if (!f.checksum.empty()) {
    try {
      o.expected_checksum = curl::parse_checksum(f.checksum);
    } catch (const std::invalid_argument& e) {
      throw usage_error(std::string("--checksum: ") + e.what());
    }
  }
  auto& statuses = o.classifier.retryable_statuses;
  if (!f.retry_on.empty())
    for (int c : parse_codes(f.retry_on, "--retry-on-http-error", 400, 599, "HTTP status code"))
      if (std::find(statuses.begin(), statuses.end(), c) == statuses.end()) statuses.push_back(c);
  if (!f.no_retry_on.empty()) {
    for (int c : parse_codes(f.no_retry_on, "--no-retry-on-http-error", 400, 599, "HTTP status code")) {
      std::erase(statuses, c);
      std::erase(o.classifier.throttled_statuses, c);
    }
  }
  for (const auto& h : f.headers) {
    const auto colon = h.find(':');
    if (colon == std::string::npos || colon == 0 || h.find_first_of(" \t") < colon)
      throw usage_error("--header: '" + h + "' is not 'Name: value'");
    if (h.find_first_of("\r\n") != std::string::npos) throw usage_error("--header: '" + h + "' has a line break");
    std::string value = h.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    p.request.headers.emplace_back(h.substr(0, colon), value);
  }
  if (!f.user_agent.empty()) {
    if (f.user_agent.find_first_of("\r\n") != std::string::npos)
      throw usage_error("--user-agent: '" + f.user_agent + "' has a line break");
    // As in curl, a User-Agent given with -H wins over -A.
    if (!http::find_header(p.request.headers, "User-Agent")) p.request.headers.emplace_back("User-Agent", f.user_agent);
  }
  // The body: -d, --data-binary, --data-raw or --json, once. curl joins several
  // with '&'; an API body is given once here, so that nothing is sent by surprise.
  int bodies = 0;
  std::string body_flag;
  for (const auto& [flag, value] : {std::pair{"--data", &f.data}, std::pair{"--data-binary", &f.data_binary},
                                    std::pair{"--data-raw", &f.data_raw}, std::pair{"--json", &f.json}})
    if (!value->empty()) {
      ++bodies;
      body_flag = flag;
    }
  if (bodies > 1) throw usage_error("give the request body once (one of -d, --data-binary, --data-raw, --json)");
  if (!f.user.empty()) {
    if (f.user.find(':') == std::string::npos)
      throw usage_error("--user: '" + f.user + "' has no password: give USER:PASSWORD (backoff does not prompt)");
    if (http::find_header(p.request.headers, "Authorization"))
      throw usage_error("--user: an Authorization header is given too (-H); give one of them");
    p.request.headers.emplace_back("Authorization", "Basic " + http::base64_encode(f.user));
  }
  const bool has_body = bodies > 0;
  if (many && has_body) throw usage_error(body_flag + ": API calls take one URL");
  p.api = !f.method.empty() || has_body;
  if (!f.idempotency_key.empty() && !p.api)
    throw usage_error("--idempotency-key: only for requests with -X or -d (downloads are GETs)");
  if (p.api) {
    p.request.url = f.url;
    p.request.method = !f.method.empty() ? f.method : "POST";
    for (const char c : p.request.method)
      if (!std::isupper(static_cast<unsigned char>(c)) && c != '-' && c != '_')
        throw usage_error("--request: '" + p.request.method + "' is not an HTTP method (GET, POST, PUT, PATCH, DELETE…)");
    if (!f.data.empty()) p.request.body = read_data(f.data);
    if (!f.data_binary.empty()) p.request.body = read_data(f.data_binary);
    if (!f.data_raw.empty()) p.request.body = f.data_raw;
    if (!f.json.empty()) {
      p.request.body = read_data(f.json);
      if (!http::find_header(p.request.headers, "Content-Type")) p.request.headers.emplace_back("Content-Type", "application/json");
      if (!http::find_header(p.request.headers, "Accept")) p.request.headers.emplace_back("Accept", "application/json");
    }
    if (f.idempotency_key == "auto") p.request.add_idempotency_key = true;
    else if (!f.idempotency_key.empty()) p.request.headers.emplace_back("Idempotency-Key", f.idempotency_key);
    if (!f.checksum.empty()) throw usage_error("--checksum: only for downloads, not with -X or -d");
  }
  // TLS as curl reads it: the flags, else CURL_CA_BUNDLE, else SSL_CERT_DIR and SSL_CERT_FILE.
  o.tls = {.ca_file = f.cacert, .ca_path = f.capath, .cert_file = f.cert, .key_file = f.key, .insecure = f.insecure};
  if (!f.key.empty() && f.cert.empty()) throw usage_error("--key: give the client certificate too (--cert FILE)");
  if (o.tls.ca_file.empty() && o.tls.ca_path.empty() && !o.tls.insecure) {
    if (const char* bundle = std::getenv("CURL_CA_BUNDLE"); bundle && *bundle) {
      o.tls.ca_file = bundle;
    } else {
      if (const char* dir = std::getenv("SSL_CERT_DIR"); dir && *dir) o.tls.ca_path = dir;
      if (const char* file = std::getenv("SSL_CERT_FILE"); file && *file) o.tls.ca_file = file;
    }
  }
  // Files, not FIFOs or devices: OpenSSL would wait on a FIFO, or read
  // /dev/zero until memory runs out, before the first request.
  for (const auto& [flag, path] : {std::pair{"--cacert", &f.cacert}, std::pair{"--cert", &f.cert}, std::pair{"--key", &f.key}}) {
    if (path->empty()) continue;
    if (::access(path->c_str(), R_OK) != 0)
      throw usage_error(std::string(flag) + ": cannot read '" + *path + "': " + std::strerror(errno));
    if (!std::filesystem::is_regular_file(*path))
      throw usage_error(std::string(flag) + ": '" + *path + "' is not a regular file");
  }
  if (!f.capath.empty() && !std::filesystem::is_directory(f.capath))
    throw usage_error("--capath: '" + f.capath + "' is not a directory");
  o.compressed = f.compressed;
  p.output = !f.output.empty() ? f.output : p.api ? "-" : default_output(f.url);
  if (!many && f.output.empty() && !p.api && !f.output_dir.empty())
    p.output = (std::filesystem::path(f.output_dir) / p.output).string();
  if (!p.mirrors.empty() && p.api) throw usage_error("--mirror: an API call (-X, -d) goes to one URL");
  if (!p.mirrors.empty() && p.output == "-")
    throw usage_error("--mirror: standard output is written in order from one source; save to a file with -o FILE");
  plan_hedging(f, p);
  p.time_limit = f.policy.time_limit();
  return p;
}

std::string event_text(const curl::attempt_log& a, std::uint32_t max_attempts, const std::string& url = {}) {
  std::string what = !a.error.empty() ? a.error
                     : a.status      ? "HTTP " + std::to_string(a.status)
                                     : std::string(http::to_string(a.failure));
  if (a.hint) what += " (Retry-After: " + format_duration(*a.hint) + ")";
  what = with_tls_advice(std::move(what), a);
  std::string line = "backoff: " + (url.empty() ? std::string() : shown_url(url) + ": ") + "attempt " + std::to_string(a.number) +
                     " failed: " + what;
  if (a.delay.count() > 0) {
    line += ". Will retry in " + format_duration(a.delay) + ".";
    line += retries_left(max_attempts, a.number);
  }
  return line;
}

nlohmann::json attempts_json(const std::vector<curl::attempt_log>& logs) {
  nlohmann::json attempts = nlohmann::json::array();
  for (const auto& a : logs)
    attempts.push_back({{"attempt", a.number},
                        {"start_s", seconds(a.start)},
                        {"duration_s", seconds(a.took)},
                        {"outcome", std::string(to_string(a.outcome))},
                        {"http_status", a.status ? nlohmann::json(a.status) : nlohmann::json()},
                        {"transport_error", a.failure == http::transport::none
                                                ? nlohmann::json()
                                                : nlohmann::json(std::string(http::to_string(a.failure)))},
                        {"error", a.error},
                        {"hint_s", a.hint ? nlohmann::json(seconds(*a.hint)) : nlohmann::json()},
                        {"delay_s", seconds(a.delay)},
                        {"bytes", a.bytes},
                        {"range", a.range.empty() ? nlohmann::json() : nlohmann::json(a.range)},
                        {"copy", a.copy},
                        {"url", shown_url(a.url)}});
  return attempts;
}

// A download's sources with mirrors: what each gave, and why one was left.
nlohmann::json sources_json(const std::vector<curl::source_log>& sources) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : sources)
    out.push_back({{"url", shown_url(s.url)},
                   {"bytes", s.bytes},
                   {"rate_bytes_per_s", s.rate},
                   {"dropped", s.dropped.empty() ? nlohmann::json() : nlohmann::json(s.dropped)}});
  return out;
}

// One download in --report (docs/reports.md).
nlohmann::json download_json(const std::string& url, const std::string& output, const curl::download_result& r,
                             stop_reason reason, const std::string& error) {
  return {{"url", shown_url(url)},
          {"output", output},
          {"reason", std::string(to_string(reason))},
          {"error", error},
          {"bytes", r.bytes},
          {"resumes", r.resumes},
          {"restarts", r.restarts},
          {"partial", r.partial.string()},
          {"verified", r.verified},
          {"connections", r.connections},
          {"single_stream_why", r.single_stream_why},
          {"sources", sources_json(r.sources)},
          {"attempts", attempts_json(r.attempts)}};
}

int exit_for(stop_reason reason, bool file_error, int signal) {
  if (reason == stop_reason::success) return exit_code::ok;
  if (signal) return 128 + signal;
  if (file_error) return exit_code::local_error;
  if (reason == stop_reason::permanent) return exit_code::permanent;
  return exit_code::gave_up;
}

// Writes an API response body to `output`: standard output, or a path with
// the download rules (backoff::curl::save_to). Returns an error or empty.
std::string save_body(const std::string& output, const std::string& body) {
  if (output != "-") return curl::save_to(output, body);
  if (!write_all(1, body.data(), body.size())) return std::string("cannot write to standard output: ") + std::strerror(errno);
  return {};
}

// One request on an async client on this thread, cancelled by the first
// signal: `start(http, done)` starts it, `done` bound to the cancellation slot.
template <class Result, class Start>
Result run_async(const curl::client_options& o, signal_watch& signals, Start start) {
  asio::io_context ctx;
  asio::cancellation_signal cancel;
  std::stop_callback on_signal(signals.token(), [&] {
    asio::post(ctx, [&] { cancel.emit(asio::cancellation_type::terminal); });
  });
  curl::async_client http(ctx.get_executor(), o, 0);
  Result out;
  start(http, asio::bind_cancellation_slot(cancel.slot(), [&](Result r) { out = std::move(r); }));
  ctx.run();
  return out;
}

// One file over several connections, or hedged.
curl::download_result download_async(const get_plan& plan, const curl::client_options& o, signal_watch& signals) {
  return run_async<curl::download_result>(o, signals, [&](curl::async_client& http, auto done) {
    http.async_download(plan.url, plan.mirrors, plan.output, plan.request.headers, std::move(done));
  });
}

// One API call, hedged.
curl::response perform_async(const get_plan& plan, const curl::client_options& o, signal_watch& signals) {
  return run_async<curl::response>(o, signals,
                                   [&](curl::async_client& http, auto done) { http.async_perform(plan.request, std::move(done)); });
}

// Several URLs on one thread: an async_client on an io_context, at most
// --parallel transfers at once, one Retry-After per host shared by all of them.
int get_many(get_plan& plan, const get_flags& f, run_record& report) {
  asio::io_context ctx;
  // Shared by every transfer: a host's Retry-After holds back all of its
  // transfers. Failures alone do not (each transfer has its own backoff).
  host_backoff hosts({.schedule = constant{.delay = duration{0}}});
  curl::client_options& o = plan.client;
  if (!f.per_transfer_retry_after && !o.hosts) o.hosts = &hosts;  // --share brings its own
  fast_rng seeded{f.policy.seed.value_or(0)};
  if (f.policy.seed) o.rng = seeded;
  if (plan.time_limit) o.deadline = std::chrono::steady_clock::now() + *plan.time_limit;
  const std::size_t n = plan.many.size();
  progress_bar bar("", !f.quiet);
  const std::uint32_t max_attempts = o.policy.stop.max_attempts();
  std::map<std::string, std::pair<std::uint64_t, std::optional<std::uint64_t>>, std::less<>> seen;  // url → bytes, total
  std::size_t done = 0;
  auto draw = [&] {
    std::uint64_t bytes = 0, total = 0;
    bool all_known = seen.size() == n;
    for (const auto& [url, bt] : seen) {
      bytes += bt.first;
      if (bt.second) total += *bt.second;
      else all_known = false;
    }
    bar.update_set(done, n, bytes, all_known ? std::optional<std::uint64_t>(total) : std::nullopt);
  };
  o.on_progress = [&](const curl::progress& pr) {
    auto it = seen.find(pr.url);
    if (it == seen.end()) it = seen.emplace(std::string(pr.url), std::pair{pr.bytes, pr.total}).first;
    it->second = {pr.bytes, pr.total};
    draw();
  };
  o.on_attempt = [&](const curl::attempt_log& a) {
    if (!a.error.empty()) bar.event(event_text(a, max_attempts, a.url));
  };

  signal_watch signals;
  std::vector<std::unique_ptr<asio::cancellation_signal>> cancel(n);
  for (auto& c : cancel) c = std::make_unique<asio::cancellation_signal>();
  std::stop_callback on_signal(signals.token(), [&] {
    asio::post(ctx, [&] {
      for (auto& c : cancel) c->emit(asio::cancellation_type::terminal);
    });
  });

  curl::async_client http(ctx.get_executor(), o, 0);
  std::vector<curl::download_result> results(n);
  std::size_t next = 0;
  std::function<void()> launch = [&] {
    const std::size_t i = next++;
    http.async_download(plan.many[i].url, plan.many[i].mirrors, plan.many[i].output, plan.request.headers,
                        asio::bind_cancellation_slot(cancel[i]->slot(), [&, i](curl::download_result r) {
                          results[i] = std::move(r);
                          ++done;
                          draw();
                          if (next < n && !signals.signal()) launch();
                        }));
  };
  for (std::size_t k = 0; k < std::min<std::size_t>(f.parallel, n); ++k) launch();
  ctx.run();
  bar.finish();

  int worst = exit_code::ok;
  std::size_t failed = 0;
  nlohmann::json downloads = nlohmann::json::array();
  for (std::size_t i = 0; i < n; ++i) {
    const auto& r = results[i];
    const bool started = i < next;
    const stop_reason reason = started ? r.reason : stop_reason::cancelled;
    downloads.push_back(download_json(plan.many[i].url, plan.many[i].output, r, reason, started ? r.error : "not started"));
    if (started && r.ok()) continue;
    ++failed;
    const int code = !started ? 128 + signals.signal() : exit_for(r.reason, r.file_error, signals.signal());
    worst = std::max(worst, code);
  }
  if (report) report->write({{"downloads", downloads}});
  if (!f.quiet || (f.show_error && failed > 0)) {
    if (failed == 0) {
      std::cerr << "backoff: saved " << n << (n == 1 ? " file" : " files") << "\n";
    } else {
      std::cerr << "backoff: " << failed << " of " << n << " downloads failed:\n";
      for (std::size_t i = 0; i < n; ++i) {
        if (i < next && results[i].ok()) continue;
        std::cerr << "  " << shown_url(plan.many[i].url) << ": "
                  << (i < next ? std::string(to_string(results[i].reason)) + ": " +
                                     with_tls_advice(results[i].error, results[i].attempts)
                               : "not started")
                  << "\n";
      }
    }
  }
  return worst;
}

}  // namespace

// The work of `backoff get`, its report document left in `report`.
int get_run(const std::shared_ptr<get_flags>& f, run_record& report) {
    get_plan plan = plan_of(*f);
    if (f->insecure)
      std::cerr << "backoff: warning: --insecure: the server's certificate is not checked; anyone on the path can "
                   "read and change this transfer\n";
    if (!f->output_dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(f->output_dir, ec);
      if (ec) throw usage_error("--output-dir: cannot create '" + f->output_dir + "': " + ec.message());
    }
#ifdef BACKOFF_HAVE_REDIS
    std::unique_ptr<shared_gates> shared;
    if (!f->share.url.empty()) {
      if (f->per_transfer_retry_after) throw usage_error("--share: a fleet shares Retry-After; drop --per-transfer-retry-after");
      const std::string first = plan.many.empty() ? plan.url : plan.many.front().url;
      const std::string key = curl::host_key(first);
      if (key.empty()) throw usage_error("--share: cannot tell the host of '" + first + "'");
      shared = std::make_unique<shared_gates>(f->share, key, f->quiet);
      for (const auto& t : plan.many) shared->watch(curl::host_key(t.url));
      plan.client.hosts = &shared->hosts();
      plan.client.gate = &shared->gates();
      plan.client.gate_first_attempt = true;
    }
#endif
    // Pacing from announced quotas, for every transfer of this process (with
    // --share, its share of the fleet's).
    quota_pacer quotas;
    if (!f->ignore_quota) plan.client.quotas = &quotas;
#ifdef BACKOFF_HAVE_REDIS
    if (shared && !f->ignore_quota) {
      shared->share_quota(curl::host_key(plan.many.empty() ? plan.url : plan.many.front().url));
      for (const auto& t : plan.many) shared->share_quota(curl::host_key(t.url));
      plan.client.quotas = &shared->quotas();
    }
#endif
    if (!plan.many.empty()) return get_many(plan, *f, report);

    signal_watch signals;
    curl::client_options& o = plan.client;
    o.stop_token = signals.token();
    fast_rng seeded{f->policy.seed.value_or(0)};
    if (f->policy.seed) o.rng = seeded;
    if (plan.time_limit) o.deadline = std::chrono::steady_clock::now() + *plan.time_limit;

    const bool to_stdout = plan.output == "-";
    progress_bar bar(to_stdout ? std::string("-") : plan.output, !f->quiet);
    const std::uint32_t max_attempts = o.policy.stop.max_attempts();
    o.on_progress = [&](const curl::progress& pr) { bar.update(pr.attempt, pr.bytes, pr.total); };
    o.on_attempt = [&](const curl::attempt_log& a) {
      if (a.error.empty()) return;
      bar.event(event_text(a, max_attempts, a.url != plan.url ? a.url : std::string()));
    };
    curl::client http(o);

    if (plan.api) {
      if (o.hedge.max_attempts > 1 && !http::may_resend({plan.request.method, false, plan.request.add_idempotency_key ||
                                                            http::find_header(plan.request.headers, "Idempotency-Key")},
                                                           http::transport::none) && !f->quiet)
        std::cerr << "backoff: warning: --hedge-after: a " << plan.request.method
                  << " without an Idempotency-Key is sent once, never hedged (--idempotency-key auto allows it)\n";
      const auto r = o.hedge.max_attempts > 1 ? perform_async(plan, o, signals) : http.perform(plan.request);
      bar.finish();
      std::string save_error;
      if (r.ok() || !r.body.empty()) save_error = save_body(plan.output, r.body);
      if (report)
        report->write({{"url", shown_url(plan.url)},
                       {"method", plan.request.method},
                       {"output", plan.output},
                       {"reason", std::string(to_string(r.reason))},
                       {"http_status", r.status},
                       {"attempts", attempts_json(r.attempts)}});
      if (!save_error.empty()) {
        std::cerr << "backoff: " << save_error << "\n";
        return exit_code::local_error;
      }
      if (r.ok()) return exit_code::ok;
      if (!f->quiet || f->show_error)
        std::cerr << "backoff: giving up on " << plan.request.method << " " << shown_url(plan.url) << ": "
                  << with_tls_advice(r.describe(), r.attempts) << "\n";
      return exit_for(r.reason, false, signals.signal());
    }

    const bool segments = !to_stdout && (o.segments.connections > 1 || !plan.mirrors.empty());
    const bool hedged = o.hedge.max_attempts > 1;
    if (segments)
      o.on_progress = [&](const curl::progress& pr) { bar.update(pr.attempt, pr.bytes, pr.total, pr.connections); };
    const auto r = to_stdout  ? http.download(plan.url, 1, plan.request.headers)
                   : segments || hedged ? download_async(plan, o, signals)
                              : http.download(plan.url, plan.output, plan.request.headers);
    bar.finish();
    if (report) {
      nlohmann::json one = download_json(plan.url, plan.output, r, r.reason, r.error);
      one["digest"] = r.digest;
      report->write(one);
    }

    if (r.ok()) {
      if (!f->quiet)
        std::cerr << "backoff: saved " << (to_stdout ? std::string("to standard output") : r.path.string()) << " ("
                  << human_bytes(static_cast<double>(r.bytes)) << ", " << r.attempts.size()
                  << (r.attempts.size() == 1 ? " attempt" : " attempts") << ")\n";
      return exit_code::ok;
    }
    if (!f->quiet || f->show_error) {
      std::cerr << "backoff: giving up on " << shown_url(plan.url) << " (" << to_string(r.reason)
                << "): " << with_tls_advice(r.error, r.attempts) << "\n";
      if (!r.partial.empty())
        std::cerr << "backoff: kept " << human_bytes(static_cast<double>(r.bytes)) << " in " << r.partial.string()
                  << "; run the same command again to resume\n";
    }
    if (r.checksum_mismatch) return exit_code::checksum;
    return exit_for(r.reason, r.file_error, signals.signal());
}

subcommand get_command(CLI::App& app) {
  auto f = std::make_shared<get_flags>();
  auto* cmd = app.add_subcommand("get", "Download a URL (or call an API), retrying failures and resuming broken transfers");
  cmd->footer(
      "Exit status: 0 when every URL was saved; 3 when retries did not help; 4 on a permanent error (404, a redirect "
      "loop, a status with no body to save); 5 when the output could not be written; 6 when the file did not match "
      "--checksum twice; 128+N when stopped by signal N (130 for Ctrl-C); 2 for a bad flag or value (nothing was "
      "fetched). With several URLs, the worst of theirs.");
  f->policy.add_to(*cmd);
  cmd->add_option("url", f->urls, "The URL(s) to download");
  cmd->add_option("-i,--input-file", f->input_file, "Download the URLs listed in FILE ('URL [NAME]' per line; - for stdin)");
  cmd->add_option("-P,--parallel", f->parallel,
                  "Transfers at once with several URLs (default 4). Not wget's -P DIR: that is -O DIR here");
  f->connections_flag = cmd->add_option("--connections", f->connections,
                  "Connections per file, 1..32 (default 8): a file whose server supports ranges is fetched in "
                  "segments, adding connections while they speed it up; 1 fetches it as one stream");
  cmd->add_option("--mirror", f->mirrors,
                  "Another URL of the same file (repeat for more): each mirror adds one connection, must agree on the "
                  "length and digest, and is dropped if it fails or disagrees");
  cmd->add_option("--hedge-after", f->hedge_after,
                  "When an answer has not begun after DUR (e.g. 300ms), send the same request again beside it and "
                  "keep the first to answer; auto: after this run's 95th percentile time to a first byte. Each copy "
                  "is counted as an attempt. GETs, and requests with -X PUT/DELETE or an Idempotency-Key; never "
                  "another POST. A hedged file comes over one connection");
  f->hedge_max_flag = cmd->add_option("--hedge-max", f->hedge_max,
                                      "With --hedge-after: copies of one request at once, the first included (default 2)");
  cmd->add_option("--min-split-size", f->min_split_size,
                  "Smallest segment, e.g. 4M (default 1M); files under twice this use one connection");
  cmd->add_option("-O,--output-dir", f->output_dir,
                  "Save under DIR, each file under its URL's name. Not curl's -O (the URL's name is the default "
                  "here) nor wget's -O FILE (that is -o FILE)");
#ifdef BACKOFF_HAVE_REDIS
  cmd->add_option("--share", f->share.url,
                  "Share Retry-After, a retry budget and a circuit breaker for the URL's host with every backoff "
                  "using the same Redis: redis://[USER[:PASSWORD]@]HOST:PORT[/PREFIX], rediss:// for TLS (or the "
                  "password in BACKOFF_REDIS_PASSWORD)");
  f->share.add_to(*cmd);
#endif
  cmd->add_flag("--per-transfer-retry-after", f->per_transfer_retry_after,
                "With several URLs: a Retry-After holds back only the transfer that got it (default: a 429's holds "
                "every transfer to that host, a 503's only its own unless the host keeps failing)");
  cmd->add_flag("--host-wide-retry-after", f->host_wide_retry_after,
                "Every Retry-After (a 503's too) holds back every transfer to that host");
  cmd->add_flag("--ignore-quota", f->ignore_quota,
                "Do not pace by the quota servers announce (RateLimit, X-RateLimit-*, ...): send until a 429 "
                "(default: once a host's quota is spent, its transfers wait for the window to reset)");
  cmd->add_option("-o,--output", f->output,
                  "Where to write it: a file (replaced only when complete), '-' for standard output "
                  "(default: the URL's file name; standard output with -X/-d)");
  // Options that repeat take one value each time, so that `-H 'K: v' URL`
  // leaves the URL a URL (CLI11 would give a vector option every word up to the next flag).
  cmd->add_option("-H,--header", f->headers, "An extra request header, 'Name: value' (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("-A,--user-agent", f->user_agent, "Send this User-Agent header");
  cmd->add_option("-u,--user", f->user, "USER:PASSWORD for HTTP Basic authentication (never shown in messages)");
  cmd->add_option("--cacert", f->cacert,
                  "Trust the CAs in this PEM file instead of the system's (default: $CURL_CA_BUNDLE, else "
                  "$SSL_CERT_FILE, as curl reads them)");
  cmd->add_option("--capath", f->capath, "Trust the CAs in this directory of hashed certificates (default: $SSL_CERT_DIR)");
  cmd->add_option("--cert", f->cert, "Client certificate (PEM) for servers that ask for one");
  cmd->add_option("--key", f->key, "The client certificate's private key (PEM), when not in the --cert file");
  cmd->add_flag("-k,--insecure", f->insecure,
                "Do not verify the server's certificate or name (a warning is printed every time)");
  cmd->add_flag("--compressed", f->compressed,
                "API calls (-X, -d, --json): ask for a compressed response and save it decoded. Downloads always "
                "fetch the file as stored, so that resume and checksums hold");
  // curl's -L and -f: what get does anyway, so they bind to nothing.
  cmd->add_flag("-L,--location")->description("Follow redirects (always done; accepted for curl's habit)");
  cmd->add_flag("-f,--fail")->description(
      "Fail on HTTP errors (always done: an error page is never saved; accepted for curl's habit)");
  cmd->add_option("--stall-timeout", f->stall_timeout, "End an attempt that receives nothing for this long (default 30s)");
  cmd->add_option("--timeout", f->timeout, "Time limit for each whole attempt (default: none for downloads, 30s for -X/-d)");
  cmd->add_option("--connect-timeout", f->connect_timeout, "Time limit for connecting (default 10s)");
  cmd->add_option("--max-retry-after", f->max_retry_after, "Longest Retry-After to obey (default 1h)");
  cmd->add_option("--max-filesize", f->max_filesize, "Fail on bodies larger than this, e.g. 500M (default: no limit)");
  cmd->add_option("--checksum", f->checksum, "Verify the file before it is saved: sha256:HEX or sha512:HEX");
  cmd->add_option("--retry-on-http-error", f->retry_on, "Also retry these statuses, e.g. 404,520-527");
  cmd->add_option("--no-retry-on-http-error", f->no_retry_on, "Never retry these statuses, e.g. 503");
  cmd->add_option("-X,--request", f->method, "Make one API call with this method instead of a download");
  cmd->add_option("-d,--data", f->data,
                  "Request body: TEXT, or @FILE sent unchanged (implies POST; unlike curl's -d, line breaks are kept)");
  cmd->add_option("--data-binary", f->data_binary, "Request body: TEXT or @FILE, unchanged (as -d)");
  cmd->add_option("--data-raw", f->data_raw, "Request body: TEXT as given, a leading @ included");
  cmd->add_option("--json", f->json,
                  "JSON request body: TEXT or @FILE, with Content-Type and Accept: application/json (implies POST)");
  cmd->add_option("--idempotency-key", f->idempotency_key,
                  "Send an Idempotency-Key ('auto' for a random one), the same on every attempt; lets a POST be retried");
  cmd->add_option("--report", f->report, "Write the attempt history as JSON to FILE");
  f->metrics.add_to(*cmd);
  cmd->add_flag("-q,--quiet,-s,--silent", f->quiet, "No progress, retry or error messages");
  cmd->add_flag("-S,--show-error", f->show_error, "With -q or -s: still say why it failed (curl's -sS)");
  return {cmd, [f]() -> int {
    run_record report;
    if (!f->report.empty()) report.file.emplace(f->report);  // fails now, not after the download
    f->metrics.check("get");
    const auto started = std::chrono::system_clock::now();
    const int code = get_run(f, report);
    finish_metrics(f->metrics, report.doc, code, started);
    return code;
  }};
}

}  // namespace backoff::cli
