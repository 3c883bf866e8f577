// SPDX-License-Identifier: BSL-1.0
// The inside of backoff::curl::async_client (private, not installed): libcurl's
// multi-socket API on an Asio executor, shared by the one-stream transfers
// (async_client.cpp) and the segmented downloads (segmented.cpp).
#pragma once

#include <curl/curl.h>

#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "backoff/curl/async_client.hpp"
#include "backoff/step.hpp"
#include "internal.hpp"

namespace backoff::curl {

struct async_client::impl {
  // What the client sees of a transfer, whatever it fetches.
  struct transfer_base {
    virtual ~transfer_base() = default;
    virtual void transferred(CURLcode code) = 0;
    virtual void abort() = 0;
  };
  // Adds `easy`, owned by `t`, to the multi handle.
  void add(CURL* easy, transfer_base* t) {
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
    live.insert(t);
    curl_multi_add_handle(multi, easy);
  }
  void remove(CURL* easy, transfer_base* t) {
    live.erase(t);
    curl_multi_remove_handle(multi, easy);
  }
  template <class Work>
  struct transfer;

  // A socket curl asked us to watch: the descriptor is not ours (curl closes
  // it), so it is released, never closed, when curl says it is done with it.
  struct watched {
    asio::posix::stream_descriptor sd;
    int what = 0;  // CURL_POLL_IN / OUT / INOUT
    bool reading = false, writing = false;
    std::uint64_t generation = 0;
  };

  impl(asio::any_io_executor ex, client_options o, long max_host)
      : executor(std::move(ex)), options(std::move(o)), curl_timer(executor) {
    detail::global_init();
    multi = curl_multi_init();
    if (!multi) throw std::runtime_error("backoff::curl::async_client: curl_multi_init failed");
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &impl::on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &impl::on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
    if (max_host > 0) curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host);
  }
  ~impl();

  asio::any_io_executor executor;
  client_options options;
  CURLM* multi = nullptr;
  asio::steady_timer curl_timer;
  std::unordered_map<curl_socket_t, std::unique_ptr<watched>> sockets;
  std::unordered_map<transfer_base*, std::shared_ptr<transfer_base>> transfers;
  // Whatever owns an easy handle in `multi` (a transfer, a segment's
  // connection), as CURLOPT_PRIVATE names it: collect() hands each only its own.
  std::unordered_set<transfer_base*> live;
  std::uint64_t generation = 0;
  // Handlers still queued when the client goes away find this expired.
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);

  static int on_socket(CURL*, curl_socket_t s, int what, void* userp, void*) {
    auto* self = static_cast<impl*>(userp);
    if (what == CURL_POLL_REMOVE) {
      if (auto it = self->sockets.find(s); it != self->sockets.end()) {
        asio::error_code ignored;
        it->second->sd.cancel(ignored);
        (void)it->second->sd.release();
        self->sockets.erase(it);
      }
      return 0;
    }
    auto& w = self->sockets[s];
    if (!w) {
      w = std::make_unique<watched>(watched{asio::posix::stream_descriptor(self->executor, s), 0, false, false,
                                            ++self->generation});
    }
    w->what = what;
    self->arm(s, *w);
    return 0;
  }

  void arm(curl_socket_t s, watched& w) {
    if ((w.what & CURL_POLL_IN) && !w.reading) {
      w.reading = true;
      w.sd.async_wait(asio::posix::stream_descriptor::wait_read,
                      [this, a = std::weak_ptr<bool>(alive), s, gen = w.generation](const asio::error_code& ec) {
                        if (!a.expired()) ready(s, gen, CURL_CSELECT_IN, ec);
                      });
    }
    if ((w.what & CURL_POLL_OUT) && !w.writing) {
      w.writing = true;
      w.sd.async_wait(asio::posix::stream_descriptor::wait_write,
                      [this, a = std::weak_ptr<bool>(alive), s, gen = w.generation](const asio::error_code& ec) {
                        if (!a.expired()) ready(s, gen, CURL_CSELECT_OUT, ec);
                      });
    }
  }

  void ready(curl_socket_t s, std::uint64_t gen, int direction, const asio::error_code& ec) {
    auto it = sockets.find(s);
    if (it == sockets.end() || it->second->generation != gen) return;  // curl is done with it
    (direction == CURL_CSELECT_IN ? it->second->reading : it->second->writing) = false;
    if (ec == asio::error::operation_aborted) return;
    int running = 0;
    curl_multi_socket_action(multi, s, ec ? CURL_CSELECT_ERR : direction, &running);
    collect();
    it = sockets.find(s);
    if (it != sockets.end() && it->second->generation == gen) arm(s, *it->second);
  }

  static int on_timer(CURLM*, long timeout_ms, void* userp) {
    auto* self = static_cast<impl*>(userp);
    if (timeout_ms < 0) {
      self->curl_timer.cancel();
      return 0;
    }
    self->curl_timer.expires_after(std::chrono::milliseconds(timeout_ms));
    self->curl_timer.async_wait([self, a = std::weak_ptr<bool>(self->alive)](const asio::error_code& ec) {
      if (ec || a.expired()) return;
      int running = 0;
      curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
      self->collect();
    });
    return 0;
  }

  // Hands every finished transfer to its download.
  void collect();
};


namespace detail {

// The end of an attempt in an asynchronous loop (async_client.cpp's
// transfers, segmented.cpp's downloads). `last` is the attempt's result, kept
// by the caller; it is logged as the next attempt, numbered by `logs`.
inline attempt_record log_attempt(std::vector<attempt_log>& logs, const backoff::options<attempt_result>& opts,
                                  const attempt_result& last, time_point start, time_point t0, time_point t1,
                                  std::string range = {}) {
  logs.push_back(log_of(static_cast<std::uint32_t>(logs.size() + 1), last));
  logs.back().range = std::move(range);
  const attempt_outcome outcome =
      last.verdict == http::verdict::success ? attempt_outcome::success : opts.classify(&last, nullptr);
  return attempt_record{logs.back().number, outcome, false, t0 - start, t1 - t0, duration{0}, duration{-1}};
}

// Tells the step how the attempt `rec` ended (with the server's hint and
// whether the work moved on) and runs the after_attempt hook with its wait.
// A cancelled loop stops without asking the step.
// `number` is the attempt as the observer heard it start (0: the count of
// attempts ended, which is the same unless hedged).
inline retry_step::decision decide_after(backoff::options<attempt_result>& opts, retry_step& step, attempt_record& rec,
                                         const attempt_result& last, time_point t1, bool cancelled, bool progressed,
                                         std::uint32_t number = 0) {
  const backoff::attempt<attempt_result> seen{rec, &last, {}, stop_reason::success, false};
  retry_step::report report{rec.outcome, t1, std::nullopt, false, false, rec.took};
  report.number = number;
  if (opts.gate && opts.is_timeout) report.timed_out = opts.is_timeout(seen);
  if (rec.outcome == attempt_outcome::retryable && !cancelled) {
    report.hint = opts.server_hint(seen);
    report.made_progress = progressed;
  }
  random_ref rng = opts.rng;
  const retry_step::decision d = cancelled ? retry_step::decision{true, stop_reason::cancelled, duration{0}, duration{-1}}
                                           : step.after(report, rng);
  rec.hint = d.hint;
  rec.delay = d.stop ? duration{0} : d.delay;
  opts.after_attempt(backoff::attempt<attempt_result>{rec, &last, {}, d.reason, d.stop});
  return d;
}

}  // namespace detail

// Starts a download of `url` to `target` over up to
// options.segments.connections connections, and one more per mirror (segmented.cpp).
void start_segmented(async_client::impl& owner, std::string url, std::vector<std::string> mirrors, std::string target,
                     std::vector<header> headers,
                     asio::cancellation_slot slot, async_client::completion<download_result> done);

}  // namespace backoff::curl
