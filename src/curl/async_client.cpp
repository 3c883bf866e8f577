// SPDX-License-Identifier: BSL-1.0
#include "backoff/curl/async_client.hpp"

#include "async_impl.hpp"
#include "backoff/step.hpp"
#include "download_file.hpp"

namespace backoff::curl {

using namespace detail;

// A download: its file and its job.
struct download_work {
  using result_type = download_result;
  using job_type = download_job;
  std::string url;
  std::string target;  // not a std::filesystem::path: see download_file
  std::vector<header> headers;
  download_file file;
  std::unique_ptr<download_job> job;

  // Opens the file and makes the job; a result when that already failed.
  std::optional<result_type> open(const client_options& o) {
    if (url.empty()) return failed("the URL is empty", false);
    if (auto err = file.open(target, url); !err.empty()) return failed(std::move(err), true);
    job = std::make_unique<download_job>(o, url, file, headers);
    job->buffer_size = CURL_MAX_WRITE_SIZE;  // thousands at once: curl's default, not the sync client's 512 KiB
    return std::nullopt;
  }
  result_type failed(std::string error, bool file_error) const {
    result_type r;
    r.path = target;
    r.reason = stop_reason::permanent;
    r.error = std::move(error);
    r.file_error = file_error;
    return r;
  }
  result_type cancelled() const {
    result_type r;
    r.path = target;
    r.reason = stop_reason::cancelled;
    return r;
  }
  result_type conclude(stop_reason reason, std::vector<attempt_log> logs, const attempt_result* last) {
    result_type r = job->conclude(reason, std::move(logs), last);
    if (r.path.empty()) r.path = target;
    return r;
  }
};

// A request: its job.
struct request_work {
  using result_type = response;
  using job_type = request_job;
  request rq;
  std::string url;
  std::unique_ptr<request_job> job;

  std::optional<result_type> open(const client_options& o) {
    try {
      job = std::make_unique<request_job>(o, rq);
    } catch (const std::invalid_argument& e) {
      result_type r;
      r.reason = stop_reason::permanent;
      attempt_log log;
      log.url = rq.url;
      log.error = e.what();
      r.attempts.push_back(std::move(log));
      return r;
    }
    return std::nullopt;
  }
  result_type cancelled() const {
    result_type r;
    r.reason = stop_reason::cancelled;
    return r;
  }
  result_type conclude(stop_reason reason, std::vector<attempt_log> logs, const attempt_result* last) {
    return job->conclude(reason, std::move(logs), last);
  }
};

// One transfer and the retry loop around its attempts: the same decision step
// (retry_step) and loop options as the blocking client's.
template <class Work>
struct async_client::impl::transfer final : transfer_base, std::enable_shared_from_this<transfer<Work>> {
  using result_type = typename Work::result_type;
  transfer(impl& o, completion<result_type> d) : owner(o), done(std::move(d)), wait(o.executor), stall(o.executor) {}

  impl& owner;
  Work work;
  completion<result_type> done;
  std::unique_ptr<wiring> w;
  backoff::options<attempt_result> opts;
  std::unique_ptr<retry_step> step;
  std::vector<attempt_log> logs;
  CURL* easy = nullptr;
  bool in_multi = false;
  bool cancelled = false;
  bool finished = false;
  asio::cancellation_slot slot;
  asio::steady_timer wait;
  asio::steady_timer stall;  // ends an attempt that receives nothing for options.stall_timeout
  std::uint32_t n = 0;
  time_point start{}, t0{};
  attempt_result last;
  bool has_last = false;

  static time_point now() { return real_clock::instance().now(); }
  typename Work::job_type& job() { return *work.job; }

  void begin(asio::cancellation_slot cancel_slot) {
    if (auto early = work.open(owner.options)) return finish(std::move(*early));
    easy = curl_easy_init();
    if (!easy) {
      result_type r = work.cancelled();
      r.reason = stop_reason::permanent;
      return finish(std::move(r));
    }
    w = std::make_unique<wiring>(owner.options, work.url);
    opts = loop_options<attempt_result>(*w, logs, [](const attempt_result& r) -> const attempt_result& { return r; });
    step = std::make_unique<retry_step>(w->policy, retry_step::config{opts.gate, opts.gate_first_attempt, opts.observer});
    slot = cancel_slot;
    if (slot.is_connected()) slot.assign([weak = this->weak_from_this()](asio::cancellation_type) {
      if (auto t = weak.lock()) t->cancel();
    });
    w->policy.validate();
    start = now();
    step->started_at(start);
    const auto first = step->start(start);
    if (!first.allowed) return conclude(first.reason);
    if (first.not_before > start || first.recheck) return wait_then_attempt(first.not_before - start, first.recheck);
    start_attempt();
  }

  // Waits `d`, then attempts, or first asks the gate again when it said `recheck`.
  void wait_then_attempt(duration d, bool recheck) {
    wait.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::max(d, duration{0})));
    wait.async_wait([weak = this->weak_from_this(), recheck](const asio::error_code& ec) {
      auto t = weak.lock();
      if (!t || t->finished) return;
      if (ec || t->cancelled) {
        t->step->abandon();
        return t->conclude(stop_reason::cancelled);
      }
      if (recheck) {
        const time_point at = now();
        const auto d2 = t->step->recheck(at);
        if (!d2.allowed) return t->conclude(d2.reason);
        if (d2.recheck || d2.not_before > at) return t->wait_then_attempt(d2.not_before - at, d2.recheck);
      }
      t->start_attempt();
    });
  }

  void start_attempt() {
    ++n;
    t0 = now();
    if (opts.observer) opts.observer->attempt_started(n, t0);
    attempt_result early;
    if (!job().prepare(easy, n, early)) {
      // No transfer to make: finish the attempt on the next turn, not inside this call.
      return asio::post(owner.executor, [weak = this->weak_from_this(), early]() mutable {
        if (auto t = weak.lock(); t && !t->finished) t->attempted(std::move(early));
      });
    }
    in_multi = true;
    owner.add(easy, this);
    watch_stall();
  }

  // Wakes when the attempt would have gone stall_timeout without a byte; a
  // byte since then moves the wake-up, nothing ends the attempt.
  void watch_stall() {
    const auto limit = owner.options.stall_timeout;
    if (limit.count() <= 0) return;
    stall.expires_at(job().act.last + limit);
    stall.async_wait([weak = this->weak_from_this(), attempt = n, limit](const asio::error_code& ec) {
      auto t = weak.lock();
      if (ec || !t || t->finished || !t->in_multi || t->n != attempt) return;
      if (steady::now() - t->job().act.last < limit) return t->watch_stall();
      t->job().why = interruption::stalled;
      t->transferred(CURLE_OPERATION_TIMEDOUT);
    });
  }

  // curl finished (or was stopped): classify the attempt and decide.
  void transferred(CURLcode code) override {
    stall.cancel();
    if (in_multi) {
      owner.remove(easy, this);
      in_multi = false;
    }
    attempted(job().complete(easy, code));
  }

  void attempted(attempt_result res) {
    const time_point t1 = now();
    last = std::move(res);
    has_last = true;
    w->arrived(last);
    attempt_record rec = log_attempt(logs, opts, last, start, t0, t1);
    const retry_step::decision d = decide_after(opts, *step, rec, last, t1, cancelled, last.progressed);
    if (d.stop) return conclude(d.reason);
    wait_then_attempt(d.delay, d.recheck);
  }

  // Ends the transfer in flight at once, or the wait (its handler concludes).
  void cancel() {
    if (cancelled || finished) return;
    cancelled = true;
    if (in_multi) {
      job().why = interruption::cancelled;
      transferred(CURLE_ABORTED_BY_CALLBACK);
    } else {
      wait.cancel();
    }
  }

  // The client is going away: finish now, whatever the state.
  void abort() override {
    if (finished) return;
    cancelled = true;
    if (in_multi) {
      job().why = interruption::cancelled;
      return transferred(CURLE_ABORTED_BY_CALLBACK);
    }
    if (step) step->abandon();
    if (work.job) return conclude(stop_reason::cancelled);
    finish(work.cancelled());
  }

  void conclude(stop_reason reason) {
    finish(work.conclude(final_reason(reason, has_last ? &last : nullptr), std::move(logs), has_last ? &last : nullptr));
  }

  // Hands the result to the caller and forgets this transfer.
  void finish(result_type r) {
    finished = true;
    if (slot.is_connected()) slot.clear();
    if (in_multi) {
      owner.remove(easy, this);
      in_multi = false;
    }
    if (easy) {
      curl_easy_cleanup(easy);
      easy = nullptr;
    }
    completion<result_type> d = std::move(done);
    std::shared_ptr<transfer> self = this->shared_from_this();  // lives until this call returns
    owner.transfers.erase(this);
    d(std::move(r));
  }
};

void async_client::impl::collect() {
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
    if (m->msg != CURLMSG_DONE) continue;
    transfer_base* t = nullptr;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &t);
    const CURLcode code = m->data.result;
    if (t && live.count(t)) t->transferred(code);
  }
}

async_client::impl::~impl() {
  // Cancel what is still running: each handler gets its result (cancelled).
  while (!transfers.empty()) transfers.begin()->second->abort();
  alive.reset();
  curl_multi_cleanup(multi);
}

async_client::async_client(asio::any_io_executor ex, client_options options, long max_host_connections)
    : executor_(ex), impl_(std::make_unique<impl>(std::move(ex), std::move(options), max_host_connections)) {}

async_client::~async_client() = default;

const client_options& async_client::options() const noexcept { return impl_->options; }
std::size_t async_client::active() const noexcept { return impl_->transfers.size(); }

void async_client::start_download(std::string url, std::vector<std::string> mirrors, std::filesystem::path target,
                                  std::vector<header> headers, asio::cancellation_slot slot,
                                  completion<download_result> done) {
  if ((impl_->options.segments.connections > 1 || !mirrors.empty()) && !url.empty())
    return start_segmented(*impl_, std::move(url), std::move(mirrors), target.string(), std::move(headers), slot,
                           std::move(done));
  auto t = std::make_shared<impl::transfer<download_work>>(*impl_, std::move(done));
  t->work.url = std::move(url);
  t->work.target = target.string();
  t->work.headers = std::move(headers);
  impl_->transfers.emplace(t.get(), t);
  t->begin(slot);
}

void async_client::start_perform(request r, asio::cancellation_slot slot, completion<response> done) {
  auto t = std::make_shared<impl::transfer<request_work>>(*impl_, std::move(done));
  t->work.url = r.url;
  t->work.rq = std::move(r);
  impl_->transfers.emplace(t.get(), t);
  t->begin(slot);
}

}  // namespace backoff::curl
