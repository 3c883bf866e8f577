// SPDX-License-Identifier: BSL-1.0
// A segmented download on async_client: one file over several connections.
//
// The first connection is an ordinary download (download_job: a GET, or a
// resume under If-Range). Once its response proves that the file may split
// (http::may_split), the part file enters segmented mode and the first
// connection becomes one segment among others: it stops where the next
// connection begins. New connections take the largest range nobody fetches,
// or half of the busiest one (http::next_range); each asks for exactly its
// range under If-Range and writes at its offsets only when the response is
// a 206 for exactly that range under the same validator (http::check_segment).
//
// One retry_step decides for the whole download: the attempt limit and the
// deadline are the file's, not a segment's. A connection that fails while
// another already waits for a retry joins that wait instead of counting again,
// so that a server that drops every connection at once costs one attempt, not
// eight; bytes from any connection since the last failure count as progress.
// Everything runs on the client's executor, as the one-stream transfers do.
#include <algorithm>
#include <cstring>

#include "async_impl.hpp"
#include "backoff/http/segments.hpp"
#include "backoff/step.hpp"
#include "download_file.hpp"

namespace backoff::curl {

using namespace detail;

namespace {

// How often the connection count is reconsidered while it ramps up.
constexpr auto ramp_window = std::chrono::milliseconds(100);
constexpr auto first_byte_poll = std::chrono::milliseconds(20);
// The end game splits a straggler's range down to this size.
constexpr std::uint64_t end_game_floor = 64 * 1024;
// A server that answers this many ranges wrongly is left for one stream.
constexpr int max_lies = 3;
// Up to this many downloads at once, each connection reads with large buffers.
constexpr std::size_t few_downloads = 16;
// An error page to a segment is read up to this much (the connection can be kept).
constexpr std::uint64_t error_page_cap = 64 * 1024;
// Link: rel=duplicate adds mirrors up to this many sources in all.
constexpr std::size_t max_sources = 8;

double seconds_between(time_point a, time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string range_text(http::extent e) {
  return "bytes=" + std::to_string(e.begin) + "-" + std::to_string(e.end - 1);
}

}  // namespace

struct segmented_download final : async_client::impl::transfer_base,
                                  std::enable_shared_from_this<segmented_download> {
  using impl = async_client::impl;

  // One connection: the first one runs the download job (one stream, or the
  // first segment); the others fetch ranges.
  struct conn final : impl::transfer_base {
    conn(segmented_download& d, asio::any_io_executor ex) : owner(d), wait(ex), stall(ex) {}
    ~conn() override {
      if (easy) curl_easy_cleanup(easy);
    }
    segmented_download& owner;
    CURL* easy = nullptr;
    std::size_t src = 0;     // its source: index into sources
    std::string reject;      // a mirror's reply that drops it: why
    bool probe = false;      // this request is the download job's
    bool in_multi = false;
    bool waiting = false;    // for a retry
    std::uint32_t n = 0;     // the attempt number of its request
    time_point t0{};
    // A range request:
    http::extent asked{};
    std::uint64_t next = 0, end = 0;  // next byte to write; where to stop (a steal lowers it)
    std::vector<header> headers;
    std::unique_ptr<slist> request;
    char errbuf[CURL_ERROR_SIZE] = {0};
    header_sink hs{};
    activity act;
    interruption why = interruption::none;
    bool decided = false, overrun = false, first_byte = false, check_content = false;
    http::segment_verdict verdict = http::segment_verdict::not_a_body;
    std::uint64_t bytes = 0, dropped = 0;
    int write_errno = 0;
    asio::steady_timer wait, stall;

    void transferred(CURLcode code) override { owner.ended(*this, code); }
    void abort() override {}  // the download aborts its connections
  };

  segmented_download(impl& o, async_client::completion<download_result> d)
      : owner(o), done(std::move(d)), ramp(o.executor), start_wait(o.executor) {}

  // Where the file comes from: the URL, then the mirrors (RFC 6249).
  struct source {
    std::string url;
    std::string validator;  // a mirror's own, learnt from its first reply (home: `validator`)
    std::string dropped;    // why it was left for this download; empty: in use
    std::uint64_t bytes = 0;
    double busy = 0;        // seconds its requests ran, summed over its connections
    double rate() const { return busy > 0 ? static_cast<double>(bytes) / busy : 0; }
  };

  impl& owner;
  async_client::completion<download_result> done;
  std::string url, target;
  std::vector<std::string> mirrors;
  std::vector<source> sources;
  std::size_t home = 0;              // the first connection's source, whose connections ramp up
  std::uint64_t mirror_moved = 0;    // bytes written from other sources than home
  std::optional<stop_reason> home_gave_up;  // the step stopped home's retries while mirrors worked
  std::vector<header> user_headers;
  download_file file;
  std::unique_ptr<download_job> job;
  std::unique_ptr<wiring> w;
  backoff::options<attempt_result> opts;
  std::unique_ptr<retry_step> step;
  std::vector<attempt_log> logs;
  attempt_result last;
  bool has_last = false;
  time_point start{};
  std::uint32_t attempts = 0;
  asio::cancellation_slot slot;
  bool cancelled = false, finished = false;
  std::vector<std::unique_ptr<conn>> conns;

  // Segmented state.
  bool segmented = false;
  bool no_split = false;           // ranges refused or wrong: one stream from now on
  std::string validator;
  std::uint64_t length = 0;
  std::vector<header> repr;         // the Repr-Digest (or Digest) the file must match
  int lies = 0;
  bool checksum_retried = false;
  unsigned cap = 1;                 // connections allowed now
  std::uint64_t moved_ranges = 0;     // bytes written by range requests, ever
  std::uint64_t moved_probe_base = 0; // … and by the first connection's finished requests
  std::uint64_t moved_at_report = 0;
  bool segment_digests = false;       // a Content-Digest of a segment matched
  steady::time_point retry_at{};    // a retry the step granted: later failures join it
  bool rechecking = false;          // retry_at waits for the gate to be asked again
  download_result out;
  // Ramp-up (and the wait before the first request).
  asio::steady_timer ramp, start_wait;
  bool ramp_done = false, ramp_measuring = false;
  std::vector<conn*> ramp_new;  // the connections the last round added
  double ramp_rate = 0;
  steady::time_point ramp_mark{};
  std::uint64_t ramp_bytes = 0;

  static time_point now() { return real_clock::instance().now(); }
  // curl's receive buffer: the blocking client's 512 KiB (fewer, larger reads)
  // while the client runs a few downloads; curl's 16 KiB when it runs many at
  // once (get -P 1000), as async_client's one-stream transfers always do.
  long buffer_size() const { return owner.transfers.size() <= few_downloads ? receive_buffer : CURL_MAX_WRITE_SIZE; }
  const client_options& options() const { return owner.options; }
  conn& first() { return *conns.front(); }

  // Home's connections that transfer or wait to retry (the ramp's cap counts these).
  unsigned active() const {
    unsigned k = 0;
    for (const auto& c : conns) k += c->src == home && (c->in_multi || c->waiting);
    return k;
  }
  unsigned transferring_home() const {
    unsigned k = 0;
    for (const auto& c : conns) k += c->src == home && c->in_multi;
    return k;
  }
  unsigned transferring() const {
    unsigned k = 0;
    for (const auto& c : conns) k += c->in_multi;
    return k;
  }
  bool mirror_alive() const {
    for (std::size_t k = 0; k < sources.size(); ++k)
      if (k != home && sources[k].dropped.empty()) return true;
    return false;
  }
  // A digest the assembled file must match: what lets mirrors found in Link
  // headers take part (RFC 6249 §6).
  bool digest_known() const { return !repr.empty() || options().expected_checksum.has_value(); }
  std::uint64_t done_bytes() const { return segmented ? file.extents().done_bytes() : file.size(); }
  // Bytes written by every connection so far (for the ramp and for progress).
  std::uint64_t moved() const {
    const conn& f = *conns.front();
    return moved_ranges + moved_probe_base + (f.probe && f.in_multi ? job->attempt_bytes() : 0);
  }
  std::uint64_t moved_home() const { return moved() - mirror_moved; }

  // --- start -----------------------------------------------------------------------------
  void begin(asio::cancellation_slot cancel_slot) {
    if (auto err = file.open(target, url); !err.empty()) return fail_early(std::move(err), true);
    sources.push_back({url, {}, {}, 0, 0});
    for (auto& m : mirrors) add_source(std::move(m), SIZE_MAX);
    job = std::make_unique<download_job>(options(), url, file, user_headers);
    job->on_body_decided = [this](long status, const std::vector<header>& h) { body_decided(status, h); };
    job->on_bytes = [this] { bytes_written(); };
    conns.push_back(std::make_unique<conn>(*this, owner.executor));
    first().easy = curl_easy_init();
    if (!first().easy) return fail_early("curl_easy_init failed", false);
    w = std::make_unique<wiring>(options(), url);
    opts = loop_options<attempt_result>(*w, logs, [](const attempt_result& r) -> const attempt_result& { return r; });
    step = std::make_unique<retry_step>(w->policy, retry_step::config{opts.gate, opts.gate_first_attempt, opts.observer});
    slot = cancel_slot;
    if (slot.is_connected()) slot.assign([weak = weak_from_this()](asio::cancellation_type) {
      if (auto t = weak.lock()) t->cancel();
    });
    w->policy.validate();
    start = now();
    step->started_at(start);
    const auto go = step->start(start);
    if (!go.allowed) return conclude(go.reason);
    // A segmented download that a previous run left: fetch only its gaps.
    if (const auto& saved = file.saved_extents(); saved && file.length() && worth_splitting(*file.length())) {
      enter_segments(*saved, file.validator(), {});
      return when_allowed(go, [this] {
        grow(1);
        start_mirrors();
      });
    }
    when_allowed(go, [this] { start_probe(first()); });
  }

  // Runs `then` once the gate's first decision lets the download start: after
  // its wait, asking it again while it says recheck.
  template <class F>
  void when_allowed(retry_step::first_decision go, F then) {
    after(go.not_before - now(), [this, go, then] {
      if (!go.recheck) return then();
      const auto again = step->recheck(now());
      if (!again.allowed) return conclude(again.reason);
      when_allowed(again, then);
    });
  }

  // Adds a source not yet listed, while there are fewer than `most`.
  void add_source(std::string u, std::size_t most) {
    if (u.empty() || sources.size() >= most) return;
    for (const auto& s : sources)
      if (s.url == u) return;
    sources.push_back({std::move(u), {}, {}, 0, 0});
  }

  bool worth_splitting(std::uint64_t len) const {
    const auto min = options().segments.min_split;
    // A FIFO or device is written in order: it cannot take segments.
    return !no_split && !file.is_stream() && (options().segments.connections > 1 || mirror_alive()) && min > 0 &&
           len / 2 >= min;
  }

  void fail_early(std::string error, bool file_error) {
    download_result r;
    r.path = target;
    r.reason = stop_reason::permanent;
    r.error = std::move(error);
    r.file_error = file_error;
    finish(std::move(r));
  }

  // Runs `then` after `d` (at once, on the next turn, when d <= 0).
  template <class F>
  void after(duration d, F then) {
    if (d <= duration{0}) {
      return asio::post(owner.executor, [weak = weak_from_this(), then]() {
        if (auto t = weak.lock(); t && !t->finished) then();
      });
    }
    start_wait.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(d));
    start_wait.async_wait([weak = weak_from_this(), then](const asio::error_code& ec) {
      auto t = weak.lock();
      if (!t || t->finished || ec) return;
      if (t->cancelled) return t->conclude(stop_reason::cancelled);
      then();
    });
  }

  // --- the first connection: the download job --------------------------------------------
  void start_probe(conn& c) {
    if (finished || cancelled) return;
    c.probe = true;
    c.waiting = false;
    c.n = ++attempts;
    c.t0 = now();
    tell_start(c);
    job->stop_at = UINT64_MAX;
    job->buffer_size = buffer_size();
    attempt_result early;
    if (!job->prepare(c.easy, c.n, early)) {
      return asio::post(owner.executor, [weak = weak_from_this(), early]() mutable {
        if (auto t = weak.lock(); t && !t->finished) t->one_stream_attempted(t->first(), std::move(early));
      });
    }
    c.in_multi = true;
    owner.add(c.easy, &c);
    watch_stall(c);
  }

  // The job's response is the file's body: split it when it may.
  void body_decided(long status, const std::vector<header>& headers) {
    if (!segmented && (repr_digest_of(headers) || options().expected_checksum)) {
      // The server's own mirrors, now that the bytes can be checked whoever sends them.
      for (auto& m : http::duplicate_links(headers)) add_source(std::move(m), max_sources);
    }
    if (segmented || !file.length() || !worth_splitting(*file.length())) return;
    const auto d = http::may_split(static_cast<int>(status), headers, options().segments.min_split);
    if (!d.split) {
      out.single_stream_why = d.why_not;
      return;
    }
    http::extent_map have(d.length);
    if (file.size() > 0) have.add({0, file.size()});
    std::vector<header> digest;
    if (const auto r = repr_digest_of(headers)) digest.emplace_back(r->first, http::joined_header(headers, r->first.c_str()));
    enter_segments(std::move(have), d.validator, std::move(digest));
    job->stop_at = length;
    // Measure this connection alone first; the ramp adds the next ones. Each
    // mirror starts its one connection at once: it is another host.
    asio::post(owner.executor, [weak = weak_from_this()] {
      if (auto t = weak.lock(); t && !t->finished) {
        t->arm_ramp(first_byte_poll);
        t->start_mirrors();
      }
    });
  }

  void enter_segments(http::extent_map have, std::string v, std::vector<header> digest) {
    segmented = true;
    validator = std::move(v);
    length = have.length();
    repr = std::move(digest);
    file.begin_segments(std::move(have));
    out.single_stream_why.clear();
    cap = 1;
    ramp_done = false;
    ramp_rate = 0;
    ramp_measuring = false;
    ramp_mark = steady::now();
    ramp_bytes = moved_home();
  }

  // --- connections ------------------------------------------------------------------------
  // Adds up to `k` connections (within `connections`), then measures.
  void grow(unsigned k) {
    if (finished || cancelled || !segmented) return;
    const unsigned max = options().segments.connections;
    const unsigned before = active();
    cap = std::min(max, std::max(cap, before + k));
    ramp_new.clear();
    for (unsigned i = 0; i < k && active() < cap; ++i) {
      conn* idle = nullptr;
      for (auto& c : conns)
        if (!c->in_multi && !c->waiting && c->src == home) idle = c.get();
      if (!idle) idle = new_conn(home);
      if (!idle || !assign(*idle)) break;
      ramp_new.push_back(idle);
    }
    if (!ramp_done) arm_ramp(first_byte_poll);
  }

  conn* new_conn(std::size_t src) {
    conns.push_back(std::make_unique<conn>(*this, owner.executor));
    conn* c = conns.back().get();
    c->src = src;
    c->easy = curl_easy_init();
    if (!c->easy) {
      conns.pop_back();
      return nullptr;
    }
    return c;
  }

  // One connection for each mirror that has none and is still in use.
  void start_mirrors() {
    if (finished || cancelled || !segmented) return;
    for (std::size_t k = 0; k < sources.size(); ++k) {
      if (k == home || !sources[k].dropped.empty()) continue;
      bool has = false;
      for (const auto& c : conns) has |= c->src == k;
      if (has) continue;
      if (conn* c = new_conn(k)) assign(*c);
    }
  }

  void arm_ramp(std::chrono::milliseconds d) {
    ramp.expires_after(d);
    ramp.async_wait([weak = weak_from_this()](const asio::error_code& ec) {
      if (auto t = weak.lock(); t && !ec && !t->finished) t->ramp_tick();
    });
  }

  // Keeps doubling the connections while the total rate rises by at least a
  // quarter of what the new ones would add at the old per-connection rate.
  void ramp_tick() {
    if (!segmented || ramp_done || cancelled) return;
    const auto t = steady::now();
    if (!ramp_measuring) {
      for (const auto& c : conns)
        if (c->in_multi && !c->probe && !c->first_byte) return arm_ramp(first_byte_poll);
      ramp_measuring = true;
      ramp_mark = t;
      ramp_bytes = moved_home();
      return arm_ramp(ramp_window);
    }
    const double secs = std::chrono::duration<double>(t - ramp_mark).count();
    const double rate = secs > 0 ? static_cast<double>(moved_home() - ramp_bytes) / secs : 0;
    const unsigned now_active = transferring_home();
    const unsigned added = static_cast<unsigned>(ramp_new.size());
    const unsigned before = now_active > added ? now_active - added : 1;
    const bool rose = ramp_rate == 0 || http::connections_paid_off(ramp_rate, rate, before, added);
    ramp_measuring = false;
    if (!rose) {
      // The last ones did not help: close them now (RFC 6249 §7: keep a
      // connection only if it raises the throughput).
      cap = std::max(1u, before);
      ramp_done = true;
      for (conn* c : ramp_new) drop(*c);
      return;
    }
    ramp_rate = rate;
    // New connections split ranges at min_split; smaller work is the end game's.
    bool worth = false;
    for (const auto& e : in_flight(nullptr).ranges) worth |= e.size() >= 2 * options().segments.min_split;
    for (const auto& g : file.extents().missing()) worth |= g.size() >= 2 * options().segments.min_split;
    if (!worth || now_active >= options().segments.connections || file.extents().complete()) {
      ramp_done = true;
      return;
    }
    grow(std::max(1u, now_active));
  }

  // The connections' ranges now: [next, end) of each transferring one.
  struct flight {
    std::vector<http::extent> ranges;
    std::vector<conn*> owners;
  };
  flight in_flight(const conn* except) {
    flight f;
    for (auto& c : conns) {
      if (!c->in_multi || c.get() == except) continue;
      const http::extent e = c->probe ? http::extent{file.size(), std::min(job->stop_at, length)} : http::extent{c->next, c->end};
      if (e.empty()) continue;
      f.ranges.push_back(e);
      f.owners.push_back(c.get());
    }
    return f;
  }

  // Gives `c` its next range; false when there is none (c stays idle).
  bool assign(conn& c) {
    c.waiting = false;
    if (finished || cancelled || !segmented) return false;
    if (!sources[c.src].dropped.empty()) return idle(c);
    if (c.src == home && active() >= cap) return idle(c);  // a mirror has its one connection besides
    const auto& map = file.extents();
    if (map.complete()) return idle(c);
    flight f = in_flight(&c);
    auto a = http::next_range(map, f.ranges, options().segments.min_split);
    if (!a) a = http::next_range(map, f.ranges, end_game_floor);  // the end game
    if (!a) return idle(c);
    if (a->steal_from) {
      conn& victim = *f.owners[*a->steal_from];
      // A slower source does not take the tail of a faster connection.
      if (!http::worth_stealing(sources[c.src].rate(), current_rate(victim))) return idle(c);
      if (victim.probe) job->stop_at = a->range.begin;
      else victim.end = a->range.begin;
    }
    start_range(c, a->range);
    return true;
  }

  // What `c`'s request moves now, in bytes/s.
  double current_rate(const conn& c) const {
    const double secs = std::chrono::duration<double>(now() - c.t0).count();
    const std::uint64_t b = c.probe ? job->attempt_bytes() : c.bytes;
    return secs > 0 ? static_cast<double>(b) / secs : 0;
  }

  bool idle(conn& c) {
    c.waiting = false;
    if (segmented && transferring() == 0 && file.extents().complete()) complete();
    return false;
  }

  // Ends `c`'s request early: its range's rest goes back to the pool. The
  // first connection, asked for the whole rest of the file, runs on through
  // it when it was to stop where `c` began.
  void drop(conn& c) {
    if (!c.in_multi || c.probe) return;
    detach(c);
    attempt_result closed;
    curl_easy_getinfo(c.easy, CURLINFO_RESPONSE_CODE, &closed.status);
    closed.bytes = c.bytes;
    log_attempt(c, closed, range_text(c.asked));
    conn& f = first();
    if (f.in_multi && f.probe && job->stop_at == c.asked.begin) job->stop_at = c.end;
  }

  void start_range(conn& c, http::extent r) {
    c.probe = false;
    c.n = ++attempts;
    c.t0 = now();
    tell_start(c);
    c.asked = r;
    c.next = r.begin;
    c.end = r.end;
    c.headers.clear();
    c.decided = c.overrun = c.first_byte = c.check_content = false;
    c.reject.clear();
    c.verdict = http::segment_verdict::not_a_body;
    c.bytes = c.dropped = 0;
    c.write_errno = 0;
    c.why = interruption::none;
    c.errbuf[0] = 0;
    c.act.last = steady::now();
    c.hs = header_sink{&c.headers, &c.act};
    std::vector<header> h = user_headers;
    if (!http::find_header(h, "Want-Repr-Digest")) h.emplace_back("Want-Repr-Digest", std::string(http::want_repr_digest));
    h.emplace_back("Range", range_text(r));
    // A mirror's first range goes without If-Range: its validator is its own, learnt from the reply.
    const std::string& v = c.src == home ? validator : sources[c.src].validator;
    if (!v.empty()) h.emplace_back("If-Range", v);
    c.request = std::make_unique<slist>(h);
    CURL* e = c.easy;
    curl_easy_reset(e);  // keeps the connection: the next range reuses it
    curl_easy_setopt(e, CURLOPT_URL, sources[c.src].url.c_str());
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c.errbuf);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, max_redirects);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    // One TCP connection per segment: HTTP/2 would multiplex them onto one,
    // and a per-connection rate limit would apply to all of them.
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c.request->list);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, buffer_size());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &segmented_download::on_range_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &c.hs);
    set_timeouts(e, options(), options().download_timeout);
    set_tls(e, options().tls);
    c.in_multi = true;
    owner.add(e, &c);
    out.connections = std::max(out.connections, transferring());
    watch_stall(c);
  }

  static std::size_t on_range_body(char* data, std::size_t size, std::size_t n, void* user) {
    auto& c = *static_cast<conn*>(user);
    return c.owner.range_body(c, data, size * n);
  }

  std::size_t range_body(conn& c, const char* data, std::size_t len) {
    c.act.last = steady::now();
    c.first_byte = true;
    if (!c.decided) {
      c.decided = true;
      long status = 0;
      curl_easy_getinfo(c.easy, CURLINFO_RESPONSE_CODE, &status);
      if (c.src == home) {
        c.verdict = http::check_segment(static_cast<int>(status), c.headers, c.asked, validator, length);
      } else {
        http::mirror_reply m = http::check_mirror_segment(static_cast<int>(status), c.headers, c.asked,
                                                          sources[c.src].validator, length);
        c.verdict = m.verdict;
        c.reject = std::move(m.why);
        if (c.verdict == http::segment_verdict::write && m.validator.empty() && !digest_known()) {
          c.verdict = http::segment_verdict::lies;
          c.reject = "it names no strong validator, and no digest can check its bytes";
        }
        if (c.verdict == http::segment_verdict::write) sources[c.src].validator = std::move(m.validator);
      }
      if (c.verdict == http::segment_verdict::write && !repr.empty()) {
        // The whole file's digest must not change between responses, nor differ between sources.
        const auto mine = repr_digest_of(c.headers);
        const auto want = repr_digest_of(repr);
        if (mine && want && mine->second.algorithm == want->second.algorithm && mine->second.hex != want->second.hex) {
          c.verdict = c.src == home ? http::segment_verdict::changed : http::segment_verdict::lies;
          c.reject = "its " + mine->first + " differs from the first source's";
        }
      }
      if (c.verdict == http::segment_verdict::write && repr.empty())
        if (const auto r = repr_digest_of(c.headers)) repr.emplace_back(r->first, http::joined_header(c.headers, r->first.c_str()));
      c.check_content = !http::joined_header(c.headers, "Content-Digest").empty();
      if (c.verdict != http::segment_verdict::write && c.verdict != http::segment_verdict::not_a_body) return 0;
    }
    if (c.verdict == http::segment_verdict::not_a_body) {
      c.dropped += len;
      return c.dropped > error_page_cap ? 0 : len;
    }
    if (c.next + len > c.asked.end) {  // more than the Content-Range said
      c.overrun = true;
      return 0;
    }
    const std::size_t take = c.next >= c.end ? 0 : static_cast<std::size_t>(std::min<std::uint64_t>(len, c.end - c.next));
    if (take > 0) {
      if (const int e = file.write_at(c.next, data, take); e != 0) {
        c.write_errno = e;
        return 0;
      }
      // Bytes a Content-Digest covers count once the whole range matched it.
      if (!c.check_content) file.mark_done({c.next, c.next + take});
      c.next += take;
      c.bytes += take;
      moved_ranges += take;
      if (c.src != home) mirror_moved += take;
      bytes_written();
    }
    if (take < len || (c.next >= c.end && c.end < c.asked.end)) {
      c.why = interruption::split;  // the rest is another connection's
      return 0;
    }
    return len;
  }

  // Progress, for the caller (the first connection's job reports through here too).
  void bytes_written() {
    if (!options().on_progress) return;
    const std::uint64_t have = done_bytes();
    options().on_progress(progress{url, step ? step->attempts() + 1 : 1, have,
                                   segmented ? std::optional<std::uint64_t>(length) : file.length(),
                                   std::max(1u, transferring())});
  }
  void watch_stall(conn& c) {
    const auto limit = options().stall_timeout;
    if (limit.count() <= 0) return;
    activity& a = c.probe ? job->act : c.act;
    c.stall.expires_at(a.last + limit);
    c.stall.async_wait([weak = weak_from_this(), cp = &c, attempt = c.n, limit](const asio::error_code& ec) {
      auto t = weak.lock();
      if (ec || !t || t->finished || !cp->in_multi || cp->n != attempt) return;
      activity& act = cp->probe ? t->job->act : cp->act;
      if (steady::now() - act.last < limit) return t->watch_stall(*cp);
      (cp->probe ? t->job->why : cp->why) = interruption::stalled;
      t->ended(*cp, CURLE_OPERATION_TIMEDOUT);
    });
  }

  void detach(conn& c) {
    c.stall.cancel();
    if (c.in_multi) {
      owner.remove(c.easy, &c);
      c.in_multi = false;
    }
  }

  // --- a request ended --------------------------------------------------------------------
  void ended(conn& c, CURLcode code) {
    // curl's completion holds no reference: finishing here must not free this mid-call.
    const std::shared_ptr<segmented_download> keep = shared_from_this();
    detach(c);
    source& s = sources[c.src];
    s.busy += seconds_between(c.t0, now());
    if (c.probe) {
      moved_probe_base += job->attempt_bytes();
      s.bytes += job->attempt_bytes();
      return probe_ended(c, code);
    }
    s.bytes += c.bytes;
    range_ended(c, code);
  }

  void probe_ended(conn& c, CURLcode code) {
    c.probe = false;
    if (!segmented) {
      attempt_result r = job->complete(c.easy, code);
      // Before the file split, a source that fails hands the download to the next one at once.
      if (r.verdict != http::verdict::success && !cancelled && !job->local_failure() && !segmented && mirror_alive())
        return fail_over(c, std::move(r));
      return one_stream_attempted(c, std::move(r));
    }
    // The first connection was a segment: it ended at its stop, or failed.
    const std::uint64_t stop = std::min(job->stop_at, length);
    if (job->why == interruption::split || (code == CURLE_OK && file.size() >= stop)) {
      attempt_result ok;
      curl_easy_getinfo(c.easy, CURLINFO_RESPONSE_CODE, &ok.status);
      ok.bytes = job->attempt_bytes();
      log_attempt(c, ok, {});
      return (void)assign(c);
    }
    attempt_result r = job->complete(c.easy, code);
    if (r.verdict == http::verdict::success) {  // it ended short of its range without an error
      r.verdict = http::verdict::retryable;
      r.failure = http::transport::connection_dropped;
      r.error = "connection closed after " + human_bytes(file.size());
    }
    failed(c, r, {});
  }

  void range_ended(conn& c, CURLcode code) {
    attempt_result r;
    detail::finish(r, c.easy, code, c.errbuf, options(), http::request_traits{"GET", false, false}, c.headers, c.why);
    r.bytes = c.bytes;
    const std::string range = range_text(c.asked);
    if (c.write_errno != 0) {
      out.file_error = true;
      r.verdict = http::verdict::permanent;
      r.error = "cannot write '" + file.part_path().string() + "': " + std::strerror(c.write_errno);
      return failed(c, r, range);
    }
    const bool wrote = c.decided && c.verdict == http::segment_verdict::write && !c.overrun;
    if (wrote && (c.why == interruption::split || (code == CURLE_OK && c.next >= c.end))) {
      if (c.check_content) {
        // Content-Digest covers the whole range asked: check it when all of it came.
        if (c.next < c.asked.end) {
          r.error.clear();
        } else {
          const std::string bad = check_segment_digest(c);
          if (!bad.empty()) {
            r.verdict = http::verdict::retryable;
            r.failure = http::transport::other;
            r.error = bad + " (bytes " + std::to_string(c.asked.begin) + "-" + std::to_string(c.asked.end - 1) + ")";
            r.progressed = false;
            if (c.src != home) return leave_source(c, std::move(r), range, bad);
            return failed(c, r, range);
          }
          file.mark_done(c.asked);
          segment_digests = true;
        }
      }
      r.verdict = http::verdict::success;
      r.failure = http::transport::none;
      r.error.clear();
      log_attempt(c, r, range);
      return (void)assign(c);
    }
    if (c.src != home) {
      // A mirror that fails, stalls or disagrees is left; its range goes to the others.
      std::string why = c.reject;
      if (why.empty()) why = r.error;
      if (why.empty() || (wrote && code == CURLE_OK && c.next < c.end))
        why = "it sent " + std::to_string(c.next - c.asked.begin) + " of " + std::to_string(c.asked.size()) +
              " bytes of " + range;
      return leave_source(c, std::move(r), range, std::move(why));
    }
    if (c.decided && c.verdict == http::segment_verdict::changed) {
      r.error = "the file changed on the server (another validator or digest for " + range + "); starting over";
      return restart(c, r, range);
    }
    if (c.decided && c.verdict == http::segment_verdict::ranges_refused) {
      r.error = "the server answered a range with the whole file; continuing on one stream";
      return to_one_stream(c, r, range);
    }
    if ((c.decided && c.verdict == http::segment_verdict::lies) || c.overrun) {
      ++lies;
      r.verdict = http::verdict::retryable;
      r.failure = http::transport::other;
      r.error = "the server's answer to " + range + " is not that range (" +
                describe_range_reply(c) + ")";
      if (lies >= max_lies) {
        r.error += "; continuing on one stream";
        return to_one_stream(c, r, range);
      }
      return failed(c, r, range);
    }
    if (wrote && code == CURLE_OK && c.next < c.end) {  // a short 206 that curl did not notice
      r.verdict = http::verdict::retryable;
      r.failure = http::transport::connection_dropped;
      r.error = "the server sent " + std::to_string(c.next - c.asked.begin) + " of " + std::to_string(c.asked.size()) +
                " bytes of " + range;
    } else if (wrote && (r.failure == http::transport::connection_dropped || r.failure == http::transport::connection_reset)) {
      r.error = "connection closed after " + std::to_string(c.next - c.asked.begin) + " of " +
                std::to_string(c.asked.size()) + " bytes of " + range;
    }
    r.progressed = c.bytes > 0;
    failed(c, r, range);
  }

  // The range's bytes against the response's Content-Digest: a mismatch, worded, or empty.
  std::string check_segment_digest(const conn& c) {
    const auto members = http::parse_digest_field(http::joined_header(c.headers, "Content-Digest"));
    const auto best = members ? http::strongest(*members) : std::nullopt;
    if (!best) return {};
    const std::string got = file.digest(best->algorithm == "sha-512" ? "sha512" : "sha256", c.asked.begin, c.asked.end);
    return got == best->hex ? std::string() : "Content-Digest " + best->algorithm + " mismatch: expected " + best->hex + ", got " + got;
  }

  static std::string describe_range_reply(const conn& c) {
    const auto cr = http::find_header(c.headers, "Content-Range");
    if (c.overrun) return "more bytes than asked";
    return cr ? "Content-Range: " + std::string(*cr) : "no Content-Range";
  }

  // --- decisions ----------------------------------------------------------------------------
  // Logs how `c`'s request ended; `r` becomes the download's last result.
  attempt_record record(conn& c, attempt_result r, const std::string& range) {
    w->log_url = sources[c.src].url;
    last = std::move(r);
    has_last = true;
    if (c.src == home) w->arrived(last);  // a mirror's quota is its own host's, not paced here
    return detail::log_attempt(logs, opts, last, start, c.t0, now(), range);
  }

  // The observer hears every request start and end. Those the retry step
  // judges are told by the step; the others (a part done, a request dropped,
  // a failure that joins a wait already chosen) are told here.
  void tell_start(const conn& c) {
    if (opts.observer) opts.observer->attempt_started(c.n, c.t0);
  }
  void tell_end(const attempt_record& rec) {
    if (opts.observer)
      opts.observer->attempt_ended(
          {rec.number, rec.outcome, rec.took, last.failure == http::transport::timeout, now()});
  }

  // A request that did its part: logged, no decision to make.
  void log_attempt(conn& c, attempt_result r, const std::string& range) {
    attempt_record rec = record(c, std::move(r), range);
    tell_end(rec);
    opts.after_attempt(backoff::attempt<attempt_result>{rec, &last, {}, stop_reason::success, false});
  }

  // A request failed: one decision for the download, then this connection
  // retries (or closes, when the connections were cut).
  void failed(conn& c, attempt_result r, const std::string& range) {
    attempt_record rec = record(c, std::move(r), range);
    const auto steady_now = steady::now();
    if (rec.outcome == attempt_outcome::retryable && !cancelled && segmented && steady_now < retry_at) {
      // Another connection's failure already decided the wait: join it.
      if (last.hint) opts.server_hint(backoff::attempt<attempt_result>{rec, &last, {}, stop_reason::success, false});
      rec.delay = std::chrono::duration_cast<duration>(retry_at - steady_now);
      tell_end(rec);
      opts.after_attempt(backoff::attempt<attempt_result>{rec, &last, {}, stop_reason::success, false});
      cut_connections(last);
      return retry_later(c, rec.delay);
    }
    const bool progressed = moved() > moved_at_report || last.progressed;
    moved_at_report = moved();
    const retry_step::decision d = decide_after(opts, *step, rec, last, now(), cancelled, progressed);
    if (d.stop && d.reason != stop_reason::cancelled && c.src == home && segmented && !out.file_error &&
        mirror_alive()) {
      // Home is given up, but the file can still come from the mirrors.
      home_gave_up = d.reason;
      sources[home].dropped = "gave up: " + last.error;
      for (auto& h : conns) {
        if (h->src != home) continue;
        if (h->in_multi) {
          if (h->probe) moved_probe_base += job->attempt_bytes();
          detach(*h);
          h->probe = false;
        }
        h->waiting = false;
        h->wait.cancel();
      }
      ramp.cancel();
      return refill();
    }
    if (d.stop) return conclude(d.reason);
    retry_at = steady_now + std::chrono::duration_cast<steady::duration>(d.delay);
    cut_connections(last);
    retry_later(c, d.delay, d.recheck);
  }

  // A mirror is left for this download: its range goes back to the others.
  void leave_source(conn& c, attempt_result r, const std::string& range, std::string why) {
    sources[c.src].dropped = why;
    r.verdict = http::verdict::retryable;  // logged as such; the download's step is not asked
    if (r.failure == http::transport::none) r.failure = http::transport::other;
    r.error = "left this mirror: " + why;
    r.progressed = c.bytes > 0;
    r.hint.reset();
    log_attempt(c, std::move(r), range);
    // The first connection, asked for the rest of the file, runs on through a range next to it.
    conn& f = first();
    if (f.in_multi && f.probe && job->stop_at == c.asked.begin) job->stop_at = c.end;
    refill();
  }

  // Gives every free connection of a source in use its next range (home's
  // within the cap); ends the download when nothing can move any more.
  void refill() {
    if (finished || !segmented) return;
    for (std::size_t i = 0; i < conns.size(); ++i) {
      conn& c = *conns[i];
      if (!c.in_multi && !c.waiting && sources[c.src].dropped.empty()) assign(c);
      if (finished || !segmented) return;
    }
    while (sources[home].dropped.empty() && active() < cap) {
      conn* c = new_conn(home);
      if (!c || !assign(*c)) break;
    }
    if (finished || !segmented) return;
    bool moving = false;
    for (const auto& c : conns) moving |= c->in_multi || c->waiting;
    if (moving) return;
    if (file.extents().complete()) return complete();
    conclude(home_gave_up.value_or(stop_reason::permanent));
  }

  // The first connection's source failed before the file split: the next
  // source in use takes over at once (no wait: another host).
  void fail_over(conn& c, attempt_result r) {
    const std::string why = r.error.empty() ? (r.status ? "HTTP " + std::to_string(r.status) : "failed") : r.error;
    sources[home].dropped = why;
    r.error = "left this source: " + why;
    log_attempt(c, std::move(r), {});
    for (std::size_t k = 0; k < sources.size(); ++k) {
      if (sources[k].dropped.empty()) {
        home = k;
        break;
      }
    }
    c.src = home;
    job->retarget(sources[home].url);
    start_probe(c);
  }

  // A 429, 503 or refused connection: halve the connections (once per wait).
  void cut_connections(const attempt_result& r) {
    const bool overload = r.verdict == http::verdict::throttled || r.status == 503 ||
                          r.failure == http::transport::connect_failed;
    if (!overload || !segmented) return;
    ramp_done = true;
    ramp.cancel();
    const unsigned now_active = active();
    cap = std::max(1u, std::min(cap, (now_active + 1) / 2));
  }

  // Waits `d`, then resumes the connection. `recheck`: this connection's wait
  // was decided by a gate that asks to be asked again; the others that joined
  // the wait follow its answer (retry_at).
  void retry_later(conn& c, duration d, bool recheck = false) {
    c.waiting = true;
    if (recheck) rechecking = true;
    c.wait.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::max(d, duration{0})));
    c.wait.async_wait([weak = weak_from_this(), cp = &c, recheck](const asio::error_code& ec) {
      auto t = weak.lock();
      if (!t || t->finished || ec) return;  // stopped by stop_all, or re-armed
      cp->waiting = false;
      if (t->cancelled) {
        t->step->abandon();
        return t->conclude(stop_reason::cancelled);
      }
      if (recheck) {
        const time_point at = now();
        const auto again = t->step->recheck(at);
        if (!again.allowed) {
          t->rechecking = false;
          return t->conclude(again.reason);
        }
        t->rechecking = again.recheck;
        if (again.recheck || again.not_before > at) {
          t->retry_at = steady::now() + std::chrono::duration_cast<steady::duration>(again.not_before - at);
          return t->retry_later(*cp, again.not_before - at, again.recheck);
        }
      } else if (t->rechecking || t->retry_at > steady::now() + std::chrono::milliseconds(1)) {
        // Another connection waits for the gate's answer (or for the wait it
        // gave, which came later than this one's): so does this one.
        const auto left = std::chrono::duration_cast<duration>(t->retry_at - steady::now());
        return t->retry_later(*cp, std::max(left, duration{std::chrono::milliseconds(10)}));
      }
      if (!t->segmented) return t->start_probe(t->first());
      t->assign(*cp);  // past the cap, this connection closes; its range goes to the others
    });
  }

  // One-stream attempts of the download job: as async_client's transfers.
  void one_stream_attempted(conn& c, attempt_result res, const std::string& range = {}) {
    if (segmented) return;  // a probe that split ended through probe_ended
    attempt_record rec = record(c, std::move(res), range);
    const retry_step::decision d = decide_after(opts, *step, rec, last, now(), cancelled, last.progressed);
    if (d.stop) return conclude(d.reason);
    retry_later(first(), d.delay, d.recheck);
  }

  // Stops every connection but `keep` (null: all).
  void stop_all(conn* keep) {
    for (auto& c : conns) {
      if (c.get() == keep) continue;
      if (c->in_multi) {
        if (c->probe) moved_probe_base += job->attempt_bytes();
        detach(*c);
        c->probe = false;
      }
      c->waiting = false;
      c->wait.cancel();
    }
    ramp.cancel();
    start_wait.cancel();
  }

  // The file changed (or its digest did not match): everything starts over on one stream.
  void restart(conn& c, attempt_result r, const std::string& range) {
    stop_all(nullptr);
    if (!options().expected_checksum) {
      for (std::size_t k = 0; k < sources.size(); ++k)
        if (k != home && sources[k].dropped.empty())
          sources[k].dropped = "the file changed; without --checksum nothing shows that a mirror has the new version";
    }
    segmented = false;
    repr.clear();
    lies = 0;
    if (!file.discard()) {
      r.verdict = http::verdict::permanent;
      r.error = "cannot truncate '" + file.part_path().string() + "'";
    } else {
      ++out.restarts;
      r.verdict = http::verdict::retryable;
    }
    r.failure = http::transport::other;
    r.progressed = false;
    moved_at_report = moved();
    retry_at = {};
    one_stream_attempted(c, std::move(r), range);
  }

  // Ranges refused or wrong: keep what is complete from the start, go on as one stream.
  void to_one_stream(conn& c, attempt_result r, const std::string& range) {
    no_split = true;
    out.single_stream_why = r.error;
    conn* stream = first().in_multi && first().probe ? &first() : nullptr;
    stop_all(stream);
    segmented = false;
    file.end_segments();
    r.verdict = http::verdict::retryable;
    r.failure = http::transport::other;
    if (stream) {
      job->stop_at = UINT64_MAX;  // the first connection carries on with the whole rest
      log_attempt(c, r, range);
      return;
    }
    r.progressed = true;  // not the server failing: no attempt is spent on the switch
    one_stream_attempted(c, std::move(r), range);
  }

  // --- the end ----------------------------------------------------------------------------
  // Every extent is written: check what must match, then rename into place.
  void complete() {
    if (finished) return;
    stop_all(nullptr);
    const std::string mismatch = check_digests(file, options(), repr, nullptr, 0, out);
    if (segment_digests) out.verified.push_back("Content-Digest (each segment)");
    if (!mismatch.empty()) {
      attempt_result r;
      r.status = 206;
      r.failure = http::transport::other;
      if (checksum_retried) {
        out.checksum_mismatch = true;
        file.discard();
        r.verdict = http::verdict::permanent;
        r.error = mismatch;
        first().t0 = now();
        record(first(), std::move(r), {});
        return conclude(stop_reason::permanent);
      }
      checksum_retried = true;
      r.error = mismatch + "; starting over";
      if (mirror_moved > 0) {
        // Some bytes came from mirrors: the next try takes them from home alone.
        r.error += " from the first source alone";
        for (std::size_t k = 0; k < sources.size(); ++k)
          if (k != home && sources[k].dropped.empty()) sources[k].dropped = "the assembled file failed its digest";
        mirror_moved = 0;
      }
      first().t0 = now();
      return restart(first(), r, {});
    }
    download_result r = std::move(out);
    r.reason = stop_reason::success;
    r.attempts = std::move(logs);
    r.status = 206;
    r.bytes = length;
    if (job) job->take_counts(r);
    if (auto err = file.commit(); !err.empty()) {
      r.reason = stop_reason::permanent;
      r.file_error = true;
      r.error = std::move(err);
      file.abandon(false);
    } else {
      r.path = file.final_path();
    }
    finish(std::move(r));
  }

  void conclude(stop_reason reason) {
    if (finished) return;
    stop_all(nullptr);
    const stop_reason why = final_reason(reason, has_last ? &last : nullptr);
    if (sources.size() > 1 && sources[home].dropped.empty())
      sources[home].dropped = std::string(to_string(why)) + (has_last && !last.error.empty() ? ": " + last.error : "");
    if (!segmented) {
      download_result r = job->conclude(why, std::move(logs), has_last ? &last : nullptr);
      if (r.path.empty()) r.path = target;
      r.restarts += out.restarts;
      r.connections = out.connections;
      r.single_stream_why = out.single_stream_why;
      if (r.verified.empty()) r.verified = out.verified;
      return finish(std::move(r));
    }
    download_result r = std::move(out);
    r.reason = why;
    r.attempts = std::move(logs);
    r.status = has_last ? last.status : 0;
    r.bytes = file.extents().done_bytes();
    r.path = target;
    job->take_counts(r);
    if (!r.attempts.empty()) r.error = r.attempts.back().error;
    if (r.error.empty()) r.error = std::string(to_string(r.reason));
    const bool keep = options().keep_partial && why != stop_reason::permanent && file.resumable();
    if (keep) r.partial = file.part_path();
    file.abandon(keep);
    finish(std::move(r));
  }

  void cancel() {
    if (cancelled || finished) return;
    cancelled = true;
    if (first().in_multi && first().probe && !segmented) {
      job->why = interruption::cancelled;
      return ended(first(), CURLE_ABORTED_BY_CALLBACK);
    }
    if (step) step->abandon();
    conclude(stop_reason::cancelled);
  }

  void transferred(CURLcode) override {}  // the connections report, not the download
  void abort() override {
    if (finished) return;
    cancelled = true;
    if (!job) return finish(download_result{.path = target, .reason = stop_reason::cancelled});
    if (step) step->abandon();
    conclude(stop_reason::cancelled);
  }

  void finish(download_result r) {
    finished = true;
    if (step) step->finished(r.reason, attempts);
    if (sources.size() > 1 && r.sources.empty())
      for (const auto& s : sources) r.sources.push_back({s.url, s.bytes, s.rate(), s.dropped});
    if (slot.is_connected()) slot.clear();
    if (job) stop_all(nullptr);
    ramp.cancel();
    auto d = std::move(done);
    std::shared_ptr<segmented_download> self = shared_from_this();  // lives until this call returns
    owner.transfers.erase(this);
    d(std::move(r));
  }
};

void start_segmented(async_client::impl& owner, std::string url, std::vector<std::string> mirrors, std::string target,
                     std::vector<header> headers, asio::cancellation_slot slot,
                     async_client::completion<download_result> done) {
  auto t = std::make_shared<segmented_download>(owner, std::move(done));
  t->url = std::move(url);
  t->mirrors = std::move(mirrors);
  t->target = std::move(target);
  t->user_headers = std::move(headers);
  owner.transfers.emplace(t.get(), t);
  t->begin(slot);
}

}  // namespace backoff::curl
