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
  // A download is a GET: always safe to hedge. A copy's job shares the file,
  // and only the copy that claims the body writes to it.
  bool may_hedge() const { return true; }
  std::unique_ptr<download_job> twin(const client_options& o) {
    auto j = std::make_unique<download_job>(o, url, file, headers);
    j->buffer_size = CURL_MAX_WRITE_SIZE;
    return j;
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
  bool may_hedge() const { return job->may_hedge(); }
  std::unique_ptr<request_job> twin(const client_options&) { return job->twin(); }
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
//
// Hedged (options.hedge.max_attempts > 1): an attempt is a round of copies.
// The first runs on `easy` and `work.job`; each further copy, started after
// the hedge delay (or at once when a copy failed beside a running one), has
// its own handle and job in `copies`. A download's copy claims the file when
// its body begins: the first claim wins, a later one is refused before it
// writes, and the losers are removed on the next turn. A perform's copy wins
// by succeeding. The copy that decides the round moves into the first slot,
// so that the retry loop after it sees one attempt as without hedging.
template <class Work>
struct async_client::impl::transfer final : transfer_base, std::enable_shared_from_this<transfer<Work>> {
  using result_type = typename Work::result_type;
  using job_type = typename Work::job_type;
  transfer(impl& o, completion<result_type> d)
      : owner(o), done(std::move(d)), wait(o.executor), stall(o.executor), hedge_timer(o.executor) {}

  // A further copy of the current attempt.
  struct copy final : transfer_base {
    explicit copy(transfer& o) : t(o) {}
    ~copy() override {
      if (in_multi) t.owner.remove(easy, this);
      if (easy) curl_easy_cleanup(easy);
    }
    void transferred(CURLcode code) override { t.ended(this, code); }
    void abort() override { t.abort(); }
    transfer& t;
    CURL* easy = nullptr;
    std::unique_ptr<job_type> job;
    bool in_multi = false;
    std::uint32_t number = 0;  // its attempt number
    std::uint32_t index = 2;   // its place in the round: 2 for the first hedge
    time_point t0{};
  };

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
  std::uint32_t n = 0;       // attempts started, every copy counted
  std::uint64_t round = 0;   // attempts made, a hedged round counted once
  time_point start{}, t0{};
  attempt_result last;
  bool has_last = false;
  // Hedging.
  bool hedging = false;
  asio::steady_timer hedge_timer;
  std::vector<std::unique_ptr<copy>> copies;
  std::uint32_t in_round = 1;     // copies started in this round
  std::uint32_t first_index = 1;  // the place in its round of the copy in the first slot
  std::uint32_t first_number = 0; // and its attempt number
  const job_type* body_owner = nullptr;  // the job that claimed the file in this round

  static time_point now() { return real_clock::instance().now(); }
  job_type& job() { return *work.job; }

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
    hedging = owner.options.hedge.max_attempts > 1 && work.may_hedge();
    if (hedging) owner.options.hedge.validate();
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

  // The claim of a download's copy on the file (download_job::claim), from
  // inside curl's callback: the first wins; the losers go on the next turn.
  void set_claim(job_type& j, time_point copy_started) {
    if constexpr (requires { j.claim; }) {
      if (!hedging) return;
      j.claim = [this, &j, copy_started] {
        if (body_owner) return body_owner == &j;
        body_owner = &j;
        if (auto* sketch = owner.options.hedge.adaptive) sketch->add(now() - copy_started);
        hedge_timer.cancel();
        asio::post(owner.executor, [weak = this->weak_from_this(), r = round] {
          if (auto t = weak.lock(); t && !t->finished && t->round == r) t->drop_losers();
        });
        return true;
      };
    }
  }

  void start_attempt() {
    ++n;
    ++round;
    t0 = now();
    in_round = 1;
    first_index = 1;
    first_number = n;
    body_owner = nullptr;
    if (opts.observer) opts.observer->attempt_started(n, t0);
    attempt_result early;
    if (!job().prepare(easy, n, early)) {
      // No transfer to make: finish the attempt on the next turn, not inside this call.
      return asio::post(owner.executor, [weak = this->weak_from_this(), early]() mutable {
        if (auto t = weak.lock(); t && !t->finished) t->attempted(std::move(early));
      });
    }
    set_claim(job(), t0);
    in_multi = true;
    owner.add(easy, this);
    watch_stall();
    if (hedging) arm_hedge(owner.options.hedge.hedge_delay());
  }

  // The next copy after `d`, while the round is undecided.
  void arm_hedge(duration d) {
    hedge_timer.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::max(d, duration{0})));
    hedge_timer.async_wait([weak = this->weak_from_this(), r = round](const asio::error_code& ec) {
      auto t = weak.lock();
      if (ec || !t || t->finished || t->cancelled || t->round != r || t->body_owner) return;
      if (t->start_copy() && t->in_round < t->owner.options.hedge.max_attempts)
        t->arm_hedge(t->owner.options.hedge.hedge_delay());
    });
  }

  // Starts one more copy of this round when the stop rule and the gate allow
  // it now (retry_step::hedge); false when they do not.
  bool start_copy() {
    if (in_round >= owner.options.hedge.max_attempts || body_owner) return false;
    const time_point at = now();
    if (!step->hedge(at, n)) return false;
    auto c = std::make_unique<copy>(*this);
    c->easy = curl_easy_init();
    if (!c->easy) return false;
    c->job = work.twin(owner.options);
    c->number = ++n;
    c->index = ++in_round;
    c->t0 = at;
    if (opts.observer) {
      opts.observer->hedged(c->index, at);
      opts.observer->attempt_started(c->number, at);
    }
    attempt_result early;
    if (!c->job->prepare(c->easy, c->number, early)) return false;
    set_claim(*c->job, at);
    c->in_multi = true;
    owner.add(c->easy, c.get());
    copies.push_back(std::move(c));
    watch_stall();
    return true;
  }

  std::size_t running() const {
    std::size_t k = in_multi ? 1 : 0;
    for (const auto& c : copies) k += c->in_multi ? 1 : 0;
    return k;
  }

  // Wakes when the quietest running copy would have gone stall_timeout without
  // a byte; a byte since then moves the wake-up.
  void watch_stall() {
    const auto limit = owner.options.stall_timeout;
    if (limit.count() <= 0 || running() == 0) return;
    auto quietest = steady::time_point::max();
    if (in_multi) quietest = job().act.last;
    for (const auto& c : copies)
      if (c->in_multi) quietest = std::min(quietest, c->job->act.last);
    stall.expires_at(quietest + limit);
    stall.async_wait([weak = this->weak_from_this(), r = round, limit](const asio::error_code& ec) {
      auto t = weak.lock();
      if (ec || !t || t->finished || t->round != r || t->running() == 0) return;
      const auto at = steady::now();
      if (t->in_multi && at - t->job().act.last >= limit) {
        t->job().why = interruption::stalled;
        return t->transferred(CURLE_OPERATION_TIMEDOUT);
      }
      for (const auto& c : t->copies)
        if (c->in_multi && at - c->job->act.last >= limit) {
          c->job->why = interruption::stalled;
          return t->ended(c.get(), CURLE_OPERATION_TIMEDOUT);
        }
      t->watch_stall();
    });
  }

  // curl finished the first slot's transfer (or it was stopped).
  void transferred(CURLcode code) override { ended(nullptr, code); }

  // A copy of the round ended (`c`; null: the first slot): classify it, and
  // let it decide the round, or note its failure while the others go on.
  void ended(copy* c, CURLcode code) {
    job_type& j = c ? *c->job : job();
    unplug(c);
    if (body_owner && body_owner != &j) {  // refused the file: it wrote nothing
      lost(c);
      if (c) forget(c);
      return;
    }
    attempt_result res = j.complete(c ? c->easy : easy, code);
    const attempt_outcome outcome =
        res.verdict == http::verdict::success ? attempt_outcome::success : opts.classify(&res, nullptr);
    const bool decides = !hedging || cancelled || body_owner == &j || outcome != attempt_outcome::retryable ||
                         running() == 0;
    if (!decides) {
      // Failed beside a copy still running: counted, and the next copy starts at once.
      w->arrived(res);
      const time_point t1 = now();
      logs.push_back(log_of(static_cast<std::uint32_t>(logs.size() + 1), res));
      logs.back().copy = c ? c->index : first_index;
      attempt_record rec{logs.back().number, outcome, false, (c ? c->t0 : t0) - start, t1 - (c ? c->t0 : t0),
                         duration{0}, duration{-1}};
      step->note({outcome, t1, std::nullopt, false, false, rec.took, c ? c->number : first_number});
      opts.after_attempt(backoff::attempt<attempt_result>{rec, &res, {}, stop_reason::success, false});
      if (c) forget(c);
      start_copy();
      return watch_stall();
    }
    if (c) adopt(*c);
    drop_copies();
    if (hedging && outcome == attempt_outcome::success && !body_owner)
      if (auto* sketch = owner.options.hedge.adaptive) sketch->add(now() - t0);
    attempted(std::move(res));
  }

  // The copy `c` decides the round: it takes the first slot (its handle, job,
  // start and place), and the first slot's go to `c`, to be dropped (a first
  // slot still running lost).
  void adopt(copy& c) {
    std::swap(easy, c.easy);
    std::swap(work.job, c.job);
    std::swap(in_multi, c.in_multi);
    std::swap(t0, c.t0);
    std::swap(first_number, c.number);
    first_index = c.index;
    if (c.in_multi) {
      owner.remove(c.easy, this);  // its handle still names the transfer
      c.in_multi = false;
      lost(&c);  // (told as the copy it now is; dropped with the others)
    }
  }

  // Takes copy `c` (null: the first slot) out of the multi handle; true when it was in.
  bool unplug(copy* c) {
    bool& in = c ? c->in_multi : in_multi;
    if (!in) return false;
    if (c) owner.remove(c->easy, c);
    else owner.remove(easy, this);
    in = false;
    return true;
  }

  // A copy that lost (null: the first slot): it ends with no outcome and wrote nothing.
  void lost(const copy* c) {
    if (opts.observer) opts.observer->attempt_cancelled(c ? c->number : first_number, now() - (c ? c->t0 : t0));
    w->arrived(attempt_result{});
  }

  void forget(copy* c) {
    std::erase_if(copies, [c](const std::unique_ptr<copy>& p) { return p.get() == c; });
  }

  // After a claim: every copy but the owner's stops now.
  void drop_losers() {
    if (body_owner != work.job.get() && unplug(nullptr)) lost(nullptr);
    for (std::size_t i = copies.size(); i-- > 0;) {
      copy* c = copies[i].get();
      if (body_owner != c->job.get() && unplug(c)) {
        lost(c);
        forget(c);
      }
    }
    watch_stall();
  }

  // Every further copy goes (cancelled if running); the round is over.
  void drop_copies() {
    hedge_timer.cancel();
    for (auto& c : copies)
      if (unplug(c.get())) lost(c.get());
    copies.clear();
  }

  void attempted(attempt_result res) {
    const time_point t1 = now();
    last = std::move(res);
    has_last = true;
    w->arrived(last);
    attempt_record rec = log_attempt(logs, opts, last, start, t0, t1);
    logs.back().copy = first_index;
    const retry_step::decision d = decide_after(opts, *step, rec, last, t1, cancelled, last.progressed, first_number);
    if (cancelled) {
      // Stopped in flight: the attempt has no outcome, and the operation ends cancelled.
      if (opts.observer) opts.observer->attempt_cancelled(first_number, t1 - t0);
      step->abandon();
    }
    if (d.stop) return conclude(d.reason);
    wait_then_attempt(d.delay, d.recheck);
  }

  // Ends the transfer in flight at once, or the wait (its handler concludes).
  void cancel() {
    if (cancelled || finished) return;
    cancelled = true;
    interrupt();
  }

  // Stops what runs. The copy that ends the round as cancelled is the one that
  // owns the file (a download's body began), else the first slot, else any
  // running copy; the others go as losers. Nothing running: the wait ends.
  void interrupt() {
    hedge_timer.cancel();
    auto may_keep = [this](const job_type* j) { return !body_owner || body_owner == j; };
    const bool first = in_multi && may_keep(work.job.get());
    copy* keep = nullptr;
    if (!first)
      for (auto& c : copies)
        if (c->in_multi && may_keep(c->job.get())) {
          keep = c.get();
          break;
        }
    if (!first && unplug(nullptr)) lost(nullptr);
    for (auto& c : copies)
      if (c.get() != keep && unplug(c.get())) lost(c.get());
    std::erase_if(copies, [keep](const std::unique_ptr<copy>& p) { return p.get() != keep; });
    if (keep) {
      keep->job->why = interruption::cancelled;
      return ended(keep, CURLE_ABORTED_BY_CALLBACK);
    }
    if (in_multi) {
      job().why = interruption::cancelled;
      return transferred(CURLE_ABORTED_BY_CALLBACK);
    }
    wait.cancel();
  }

  // The client is going away: finish now, whatever the state.
  void abort() override {
    if (finished) return;
    cancelled = true;
    if (running() > 0) return interrupt();
    drop_copies();
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
    drop_copies();
    unplug(nullptr);
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
