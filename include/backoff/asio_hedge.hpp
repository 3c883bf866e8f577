// SPDX-License-Identifier: BSL-1.0
// backoff/asio_hedge.hpp — hedged requests on Asio: start an operation; if it
// has not completed after the hedge delay, start another copy beside it; the
// first copy that succeeds wins and the others are cancelled.
//
//   static backoff::latency_sketch latency;   // per key: the adaptive delay reads its p95
//   const backoff::hedge_policy hedge{.max_attempts = 2, .adaptive = &latency};
//   auto [ec, reply] = co_await backoff::asio::async_hedge(
//       ex, hedge, [&](auto&& token) { return client.async_get(url, std::forward<decltype(token)>(token)); },
//       asio::as_tuple(asio::use_awaitable));
//
// Rules, as gRPC A6's hedgingPolicy and Polly's hedging strategy have them:
//  - a round starts one copy, and another each hedge delay while fewer than
//    max_attempts run; a copy that fails retryably (with no server hint) starts
//    the next at once; a permanent failure ends the operation;
//  - the first success wins: every other copy is cancelled through its own
//    cancellation slot (terminal), and the operation completes once they have
//    all completed, with the winner's arguments;
//  - every extra copy asks the gate first, as a retry does (budget, breaker,
//    host hold, quota): a gate that denies, or asks to wait, stops hedging for
//    the round — hedging never sends past the budget;
//  - when every copy of a round failed, the retry loop decides as async_retry
//    does (hedge_policy::retry, the options' classifier, hint, gate): wait,
//    then a new round; or give up with the last copy's error.
// Attempts are copies: a stop rule's after_attempts(n) counts each one.
//
// The hedge timer runs on `ex`, and each copy completes where op completes
// it: the operation's state is not locked, so on a thread pool, pass a strand
// as `ex` and give op the same one. The operation honours the completion handler's cancellation
// slot: cancelled, it cancels every copy and completes with the reason
// cancelled (asio::error::operation_aborted, or the last copy's error).
#pragma once

#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/dispatch.hpp>
#include <asio/post.hpp>

#include <memory>
#include <optional>

#include "backoff/asio.hpp"
#include "backoff/hedge.hpp"

namespace backoff::asio {

namespace detail {

template <class Executor, class Op, class Timer, class Handler, class E, class... Ts>
class hedge_op : public std::enable_shared_from_this<hedge_op<Executor, Op, Timer, Handler, E, Ts...>> {
 public:
  using result = attempt_result<E, Ts...>;
  using clock_type = typename Timer::clock_type;

  hedge_op(const Executor& ex, Handler h, Op op, const hedge_policy& hp, bool borrowed_policy,
           const options<result>* o, bool borrowed_options)
      : handler_(std::move(h)),
        op_(std::move(op)),
        own_policy_(borrowed_policy ? nullptr : std::make_unique<hedge_policy>(hp)),
        own_options_(borrowed_options || !o ? nullptr : std::make_unique<options<result>>(*o)),
        hp_(own_policy_ ? *own_policy_ : hp),
        o_(own_options_ ? *own_options_ : o ? *o : no_options()),
        ex_(ex),
        timer_(ex),
        step_(hp_.retry, {o_.gate, o_.gate_first_attempt, o_.observer}),
        copies_(std::make_unique<copy[]>(hp_.max_attempts)) {}

  void begin() {
    auto slot = net::get_associated_cancellation_slot(handler_);
    if (slot.is_connected())
      slot.assign([weak = this->weak_from_this()](net::cancellation_type) {
        if (auto s = weak.lock()) s->cancel();
      });
    start_ = now();
    step_.started_at(start_);
    if (o_.gate && o_.gate_first_attempt) {
      const auto d = step_.start(start_);
      if (!d.allowed) return finish_without_attempt(d.reason);
      if (d.not_before > start_ || d.recheck) {
        initiating_ = false;
        return wait_until(d.not_before, d.recheck, true);
      }
    }
    start_round();
    initiating_ = false;
  }

  // One copy completed (on ex).
  void copy_ended(std::uint32_t i, E ec, Ts... values) {
    copy& c = copies_[i];
    c.running = false;
    --running_;
    const time_point t1 = now();
    if (finishing_) {
      // A copy cancelled by us: another won, the operation failed or was cancelled.
      if (o_.observer) o_.observer->attempt_cancelled(c.number, t1 - c.t0);
      if (reason_ == stop_reason::cancelled) {
        last_ = result{std::move(ec), std::tuple<Ts...>(std::move(values)...)};
        has_last_ = true;
      }
      if (running_ == 0) conclude();
      return;
    }
    result r{std::move(ec), std::tuple<Ts...>(std::move(values)...)};
    std::exception_ptr thrown;
    attempt_outcome outcome;
    if constexpr (std::is_same_v<E, std::exception_ptr>) {
      thrown = r.ec;
      outcome = thrown ? o_.classify(nullptr, &thrown) : o_.classify(&r, nullptr);
    } else {
      outcome = o_.classify(&r, nullptr);
    }
    last_ = std::move(r);
    has_last_ = true;
    rec_ = attempt_record{c.number, outcome, static_cast<bool>(thrown), c.t0 - start_, t1 - c.t0, duration{0}, duration{-1}};
    const backoff::attempt<result> seen{rec_, &last_, thrown, stop_reason::success, false};
    retry_step::report report{outcome, t1, std::nullopt, false, false, t1 - c.t0};
    report.number = c.number;  // hedged copies end out of order: the observer pairs it with its start
    if (o_.gate && o_.is_timeout) report.timed_out = o_.is_timeout(seen);
    if (outcome == attempt_outcome::retryable) {
      if (o_.server_hint) report.hint = o_.server_hint(seen);
      if (o_.made_progress) report.made_progress = o_.made_progress(seen);
    }

    if (outcome == attempt_outcome::success) {
      // The request's latency as its caller sees it, from the round's first
      // copy: above the hedge delay exactly when a hedge was sent, so the
      // sketch's quantile stays where the hedges keep it.
      if (hp_.adaptive) hp_.adaptive->add(t1 - round_start_);
      random_ref rng = o_.rng;
      step_.after(report, rng);
      const backoff::attempt<result> a{rec_, &last_, {}, stop_reason::success, true};
      if (o_.after_attempt) o_.after_attempt(a);
      if (o_.on_success) o_.on_success(a);
      return finish(stop_reason::success);
    }
    if (outcome == attempt_outcome::permanent) {
      random_ref rng = o_.rng;
      step_.after(report, rng);
      return give_up(stop_reason::permanent, thrown);
    }
    // Retryable. A hint is the server's "not now": no further copy this round.
    if (report.hint) refused_ = true;
    if (running_ > 0 || may_hedge()) {
      step_.note(report);
      if (o_.after_attempt) o_.after_attempt(seen);
      // The next copy at once, whether or not others still run.
      if (!hedge() && running_ == 0) return round_failed(report, thrown, true);
      return;
    }
    return round_failed(report, thrown, false);
  }

 private:
  struct copy {
    net::cancellation_signal signal;
    std::uint32_t number = 0;
    time_point t0{};
    bool running = false;
  };

  // The completion handler of one copy.
  struct copy_done {
    std::shared_ptr<hedge_op> s;
    std::uint32_t index;
    void operator()(E ec, Ts... values) { s->copy_ended(index, std::move(ec), std::move(values)...); }
  };

  static const options<result>& no_options() {
    static const options<result> none{};
    return none;
  }
  static time_point now() noexcept { return to_backoff<clock_type>(clock_type::now()); }

  void start_round() {
    started_ = 0;
    round_start_ = now();
    refused_ = false;
    launch();
    if (!may_hedge()) return;
    // The hedge timer is armed one turn later, and only if the copy is still
    // running: a copy that completes at once (a cached answer, an immediate
    // error) costs no timer. The delay still counts from the copy's start.
    net::post(ex_, [s = this->shared_from_this(), gen = timer_gen_] {
      if (gen == s->timer_gen_ && !s->finishing_ && !s->waiting_ && s->running_ > 0) s->arm_hedge();
    });
  }

  bool may_hedge() const noexcept { return !refused_ && started_ < hp_.max_attempts; }

  // Another copy beside the running ones, if the gate allows it now.
  bool hedge() {
    if (!may_hedge()) return false;
    if (!step_.hedge(now(), n_)) {
      refused_ = true;
      return false;
    }
    if (o_.observer) o_.observer->hedged(started_ + 1, now());
    launch();
    arm_hedge();
    return true;
  }

  void launch() {
    const std::uint32_t i = started_++;
    copy& c = copies_[i];
    c.running = true;
    c.number = ++n_;
    c.t0 = now();
    ++running_;
    if (o_.observer) o_.observer->attempt_started(c.number, c.t0);
    op_(net::bind_cancellation_slot(c.signal.slot(), copy_done{this->shared_from_this(), i}));
  }

  void arm_hedge() {
    ++timer_gen_;
    if (!may_hedge()) {
      timer_.cancel();
      return;
    }
    const copy& newest = copies_[started_ - 1];
    const duration left = hp_.hedge_delay() - (now() - newest.t0);
    timer_.expires_after(std::chrono::duration_cast<typename clock_type::duration>(std::max(left, duration{0})));
    timer_.async_wait([s = this->shared_from_this(), gen = timer_gen_](const std::error_code& ec) {
      if (ec || gen != s->timer_gen_ || s->finishing_ || s->waiting_) return;
      s->hedge();
    });
  }

  // Every copy of the round failed: the retry step decides.
  void round_failed(const retry_step::report& report, const std::exception_ptr& thrown, bool noted) {
    random_ref rng = o_.rng;
    const retry_step::decision d = noted ? step_.decide(report, rng) : step_.after(report, rng);
    rec_.hint = d.hint;
    if (d.stop) return give_up(d.reason, thrown);
    rec_.delay = d.delay;
    if (!noted && o_.after_attempt)
      o_.after_attempt(backoff::attempt<result>{rec_, &last_, thrown, stop_reason::success, false});
    wait_until(now() + d.delay, d.recheck, false);
  }

  // Waits until `at` (asking the gate again first when `recheck`), then a round.
  void wait_until(time_point at, bool recheck, bool first) {
    waiting_ = true;
    ++timer_gen_;
    const time_point t = now();
    timer_.expires_after(std::chrono::duration_cast<typename clock_type::duration>(at > t ? at - t : duration{0}));
    timer_.async_wait(
        [s = this->shared_from_this(), gen = timer_gen_, recheck, first](const std::error_code&) {
          if (gen == s->timer_gen_) s->wait_ended(recheck, first);
        });
  }

  void wait_ended(bool recheck, bool first) {
    if (cancelled_) {
      step_.abandon();
      if (!has_last_) return finish_without_attempt(stop_reason::cancelled);
      if (o_.on_give_up) o_.on_give_up(backoff::attempt<result>{rec_, &last_, {}, stop_reason::cancelled, true});
      return complete(stop_error<E>(stop_reason::cancelled), std::move(last_.values));
    }
    if (recheck) {
      const auto d = step_.recheck(now());
      if (!d.allowed) {
        if (!has_last_) return finish_without_attempt(d.reason);
        if (o_.on_give_up) o_.on_give_up(backoff::attempt<result>{rec_, &last_, {}, d.reason, true});
        return complete(std::move(last_.ec), std::move(last_.values));
      }
      if (d.recheck || d.not_before > now()) return wait_until(d.not_before, d.recheck, first);
    }
    waiting_ = false;
    if (first) {
      start_ = now();
      step_.started_at(start_);
    } else if (o_.before_retry) {
      o_.before_retry(backoff::attempt<result>{rec_, &last_, {}, stop_reason::success, false});
    }
    start_round();
  }

  void give_up(stop_reason why, const std::exception_ptr& thrown) {
    const backoff::attempt<result> a{rec_, &last_, thrown, why, true};
    if (o_.after_attempt) o_.after_attempt(a);
    if (why == stop_reason::permanent && o_.fallback) {
      last_ = o_.fallback(a);
      if (o_.on_give_up) o_.on_give_up(backoff::attempt<result>{rec_, &last_, thrown, stop_reason::fallback, true});
    } else if (o_.on_give_up) {
      o_.on_give_up(a);
    }
    finish(why);
  }

  // The outcome is known: cancel the copies still running, and complete once
  // they have all completed.
  void finish(stop_reason why) {
    finishing_ = true;
    reason_ = why;
    ++timer_gen_;
    timer_.cancel();
    for (std::uint32_t i = 0; i < started_; ++i) {
      if (copies_[i].running) copies_[i].signal.emit(net::cancellation_type::terminal);
    }
    if (running_ == 0) conclude();
  }

  // The caller's cancellation: a wait ends at once; copies in flight are
  // cancelled, and the operation completes when they have.
  void cancel() {
    if (finishing_ || done_) return;
    cancelled_ = true;
    if (waiting_) {
      timer_.cancel();
      return;
    }
    step_.abandon();
    if (o_.on_give_up && has_last_)
      o_.on_give_up(backoff::attempt<result>{rec_, &last_, {}, stop_reason::cancelled, true});
    finish(stop_reason::cancelled);
  }

  void conclude() {
    if (reason_ == stop_reason::cancelled && (!has_last_ || !last_.ec))
      return complete(stop_error<E>(stop_reason::cancelled), std::move(last_.values));
    complete(std::move(last_.ec), std::move(last_.values));
  }

  void finish_without_attempt(stop_reason why) {
    if (o_.on_give_up)
      o_.on_give_up(
          backoff::attempt<result>{{0, attempt_outcome::permanent, false, {}, {}, {}, duration{-1}}, nullptr, {}, why, true});
    complete(stop_error<E>(why), std::tuple<Ts...>{});
  }

  // Completes through the handler's executor: posted when this runs inside
  // the initiating function, dispatched otherwise (we run on ex already).
  void complete(E ec, std::tuple<Ts...> values) {
    if (done_) return;
    done_ = true;
    auto slot = net::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.clear();
    auto hex = net::get_associated_executor(handler_, ex_);
    auto call = [h = std::move(handler_), ec = std::move(ec), values = std::move(values)]() mutable {
      std::apply([&](Ts&... v) { std::move(h)(std::move(ec), std::move(v)...); }, values);
    };
    if (initiating_) net::post(hex, std::move(call));
    else net::dispatch(hex, std::move(call));
  }

  Handler handler_;
  Op op_;
  std::unique_ptr<hedge_policy> own_policy_;
  std::unique_ptr<options<result>> own_options_;
  const hedge_policy& hp_;
  const options<result>& o_;
  Executor ex_;
  Timer timer_;
  retry_step step_;
  std::unique_ptr<copy[]> copies_;
  std::uint32_t started_ = 0;   // copies started in this round
  std::uint32_t running_ = 0;   // copies running now
  std::uint32_t n_ = 0;         // attempts made, every round
  std::uint64_t timer_gen_ = 0; // tells a stale timer completion from the current one
  bool refused_ = false;        // no further copy this round (the gate said no, or a hint)
  bool waiting_ = false;        // between rounds (or before the first)
  bool finishing_ = false;
  bool cancelled_ = false;
  bool done_ = false;
  bool initiating_ = true;  // inside async_hedge's call: complete() must post
  bool has_last_ = false;
  stop_reason reason_ = stop_reason::success;
  time_point start_{}, round_start_{};
  result last_{};
  attempt_record rec_{0, attempt_outcome::permanent, false, {}, {}, {}, duration{-1}};
};

template <class Timer, class Op, class Executor, class E, class... Ts, class Token>
auto start_hedge(void (*)(E, Ts...), const Executor& ex, const hedge_policy& hp, bool borrowed_policy, Op&& op,
                 const options<attempt_result<E, Ts...>>* o, bool borrowed_options, Token&& token) {
  hp.validate();
  using op_type = std::conditional_t<coroutine_fn<std::remove_cvref_t<Op>>, spawn_each<std::decay_t<Op>>, std::decay_t<Op>>;
  auto wrap = [&]() -> op_type {
    if constexpr (coroutine_fn<std::remove_cvref_t<Op>>) return op_type{net::any_io_executor(ex), std::forward<Op>(op)};
    else return op_type(std::forward<Op>(op));
  };
  return net::async_initiate<Token, void(E, Ts...)>(
      [&ex, &hp, borrowed_policy, o, borrowed_options](auto handler, op_type f) {
        using impl = hedge_op<Executor, op_type, Timer, decltype(handler), E, Ts...>;
        std::make_shared<impl>(ex, std::move(handler), std::move(f), hp, borrowed_policy, o, borrowed_options)->begin();
      },
      token, wrap());
}

}  // namespace detail

// Runs op hedged (see the top). The hedge policy and options are copied into
// the operation; pass std::cref(...) to share ones that outlive it.
template <class Timer = net::steady_timer, class Executor, class Op, class Token>
  requires(!std::is_convertible_v<Token, const options<result_of<Op>>&>)
auto async_hedge(const Executor& ex, const hedge_policy& hp, Op&& op, Token&& token) {
  return detail::start_hedge<Timer>(static_cast<detail::signature_of<Op>*>(nullptr), ex, hp, false, std::forward<Op>(op),
                                    static_cast<const options<result_of<Op>>*>(nullptr), true, std::forward<Token>(token));
}
template <class Timer = net::steady_timer, class Executor, class Op, class Token>
auto async_hedge(const Executor& ex, const hedge_policy& hp, Op&& op, const options<result_of<Op>>& o, Token&& token) {
  return detail::start_hedge<Timer>(static_cast<detail::signature_of<Op>*>(nullptr), ex, hp, false, std::forward<Op>(op),
                                    &o, false, std::forward<Token>(token));
}
template <class Timer = net::steady_timer, class Executor, class Op, class Token>
auto async_hedge(const Executor& ex, std::reference_wrapper<const hedge_policy> hp, Op&& op,
                 std::reference_wrapper<const options<result_of<Op>>> o, Token&& token) {
  return detail::start_hedge<Timer>(static_cast<detail::signature_of<Op>*>(nullptr), ex, hp.get(), true,
                                    std::forward<Op>(op), &o.get(), true, std::forward<Token>(token));
}

}  // namespace backoff::asio
