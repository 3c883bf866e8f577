// SPDX-License-Identifier: BSL-1.0
// backoff/curl/async_client.hpp — many downloads at once on one thread: libcurl's
// multi-socket API driven by an Asio executor (target backoff::curl, when Asio
// is found).
//
//   asio::io_context ctx;
//   backoff::curl::async_client http(ctx.get_executor(), {.policy = backoff::policy{}});
//   for (auto& [url, path] : files)
//     http.async_download(url, path, [](backoff::curl::download_result r) { report(r); });
//   ctx.run();                                   // every transfer and every wait on this thread
//
//   auto r = co_await http.async_download(url, "a.bin", asio::use_awaitable);   // a coroutine
//
// async_perform(request, token) does the same for a request whose body is kept
// in memory, with client::perform's rules on what may be re-sent.
// Each download follows exactly the rules of client::download (backoff/http/
// resume.hpp, atomic output, part files that a later call resumes, checksums),
// because both run the same download job and the same decision step
// (backoff/step.hpp). curl's sockets and timers become Asio waits: no thread
// per transfer, no polling. The retry waits are timers on the executor.
// options.hosts and options.gate are shared by every transfer of the client
// (and by other clients), so one host's Retry-After holds back all of its
// transfers. A stall (options.stall_timeout) ends an
// attempt; options.stop_token is not used: cancel through the completion
// handler's cancellation slot, which ends a transfer in flight at once.
//
// The client and every handler run on one thread (the executor's); destroying
// the client cancels what is still running (handlers get reason cancelled).
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/dispatch.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/prefer.hpp>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backoff/curl/client.hpp"

namespace backoff::curl {

class async_client {
 public:
  struct impl;  // the inside (src/curl/async_impl.hpp)
  // max_host_connections: connections open at once to one host (0: no limit).
  explicit async_client(asio::any_io_executor ex, client_options options = {}, long max_host_connections = 0);
  ~async_client();
  async_client(const async_client&) = delete;
  async_client& operator=(const async_client&) = delete;

  const asio::any_io_executor& get_executor() const noexcept { return executor_; }
  const client_options& options() const noexcept;
  // Downloads in progress (transferring or waiting to retry).
  std::size_t active() const noexcept;

  // A move-only completion that runs on its handler's executor.
  template <class Result>
  class completion {
   public:
    completion() = default;
    template <class Handler, class Executor>
    completion(Handler h, Executor work) : p_(std::make_unique<holder<Handler, Executor>>(std::move(h), std::move(work))) {}
    void operator()(Result r) {
      auto p = std::move(p_);
      p->run(std::move(r));
    }

   private:
    struct base {
      virtual ~base() = default;
      virtual void run(Result r) = 0;
    };
    template <class Handler, class Executor>
    struct holder final : base {
      holder(Handler h, Executor w) : handler(std::move(h)), work(std::move(w)) {}
      void run(Result r) override {
        asio::dispatch(work, [h = std::move(handler), r = std::move(r)]() mutable { std::move(h)(std::move(r)); });
      }
      Handler handler;
      Executor work;
    };
    std::unique_ptr<base> p_;
  };

  // Downloads `url` to `target` (see client::download), over several
  // connections when options().segments allows it. Completes with
  // void(download_result).
  template <class Token>
  auto async_download(std::string url, std::filesystem::path target, Token&& token) {
    return async_download(std::move(url), std::move(target), std::vector<header>{}, std::forward<Token>(token));
  }
  // The same with extra request headers (sent on every request of it).
  template <class Token>
  auto async_download(std::string url, std::filesystem::path target, std::vector<header> headers, Token&& token) {
    return asio::async_initiate<Token, void(download_result)>(
        [this](auto handler, std::string u, std::filesystem::path t, std::vector<header> h) {
          auto slot = asio::get_associated_cancellation_slot(handler);
          auto work = asio::prefer(asio::get_associated_executor(handler, executor_),
                                   asio::execution::outstanding_work.tracked);
          start_download(std::move(u), {}, std::move(t), std::move(h), slot,
                         completion<download_result>(std::move(handler), std::move(work)));
        },
        token, std::move(url), std::move(target), std::move(headers));
  }

  // The same from several sources of one file (RFC 6249 mirrors): `url`
  // first, then `mirrors`, each with one connection of its own once the file
  // splits. Every source must agree on the length (and on Repr-Digest where it
  // sends one); a source that fails, stalls or disagrees is dropped for this
  // download and its ranges go to the others, so the download succeeds while
  // any source works. Each source's validator is its own (ETags differ between
  // hosts) and guards only its own ranges. Without a digest (Repr-Digest from
  // the server, or options().expected_checksum) sources are trusted to serve
  // the same bytes when they agree on the length; a whole-file digest that
  // fails after mirrors contributed starts over from `url` alone.
  // `Link: <URI>; rel=duplicate` in the first response adds mirrors only when
  // such a digest is known.
  template <class Token>
  auto async_download(std::string url, std::vector<std::string> mirrors, std::filesystem::path target,
                      std::vector<header> headers, Token&& token) {
    return asio::async_initiate<Token, void(download_result)>(
        [this](auto handler, std::string u, std::vector<std::string> m, std::filesystem::path t, std::vector<header> h) {
          auto slot = asio::get_associated_cancellation_slot(handler);
          auto work = asio::prefer(asio::get_associated_executor(handler, executor_),
                                   asio::execution::outstanding_work.tracked);
          start_download(std::move(u), std::move(m), std::move(t), std::move(h), slot,
                         completion<download_result>(std::move(handler), std::move(work)));
        },
        token, std::move(url), std::move(mirrors), std::move(target), std::move(headers));
  }

  // One request under the retry policy (see client::perform: what may be
  // re-sent, Idempotency-Key, Retry-After). Completes with void(response).
  template <class Token>
  auto async_perform(request r, Token&& token) {
    return asio::async_initiate<Token, void(response)>(
        [this](auto handler, request rq) {
          auto slot = asio::get_associated_cancellation_slot(handler);
          auto work = asio::prefer(asio::get_associated_executor(handler, executor_),
                                   asio::execution::outstanding_work.tracked);
          start_perform(std::move(rq), slot, completion<response>(std::move(handler), std::move(work)));
        },
        token, std::move(r));
  }

 private:
  void start_download(std::string url, std::vector<std::string> mirrors, std::filesystem::path target,
                      std::vector<header> headers,
                      asio::cancellation_slot slot, completion<download_result> done);
  void start_perform(request r, asio::cancellation_slot slot, completion<response> done);

  asio::any_io_executor executor_;
  std::unique_ptr<impl> impl_;
};

}  // namespace backoff::curl
