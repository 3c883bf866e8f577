// SPDX-License-Identifier: BSL-1.0
// backoff/asio.hpp — retries that hold no thread: the retry loop as an Asio
// composed operation (target backoff::asio, standalone Asio 1.22+).
//
//   auto [ec] = co_await backoff::asio::async_retry(
//       ex, policy, [&](auto&& token) { return socket.async_connect(endpoint, std::forward<decltype(token)>(token)); },
//       asio::as_tuple(asio::use_awaitable));
//
//   backoff::asio::async_retry(ex, policy, op, [](std::error_code ec, std::size_t n) { ... });  // a callback
//   int value = co_await backoff::asio::async_retry(ex, policy, [&]() -> asio::awaitable<int> { ... },
//                                                   asio::use_awaitable);                   // a coroutine op
//
// `op(token)` starts one attempt; async_retry completes with op's own
// signature, void(E, T...) with E a std::error_code or std::exception_ptr:
// with the successful attempt's arguments, or the last attempt's when the loop
// gives up, or — when no attempt was made (a gate denied the first, or it was
// cancelled before) — with an error naming the stop reason (backoff::asio::error
// category, or a retry_error in the exception_ptr). Any completion token works:
// a callback, use_awaitable, use_future, experimental::deferred.
//
// The decision is backoff::retry_step's (backoff/step.hpp), as in the sync
// loop: options<attempt_result<E, T...>> gives the classifier, hooks, server
// hint, gate and fallback; on_give_up and on_success see the stop reason. Waits
// are timers on the executor (Timer, default asio::steady_timer), never a
// blocked thread. options::clock and options::stop_token are not used: time is
// the Timer's clock, and cancellation comes through Asio's per-operation
// cancellation slot — during a wait it ends the loop at once (reason cancelled,
// asio::error::operation_aborted), during an attempt it is passed to the attempt.
//
// For tests, backoff::asio::manual_timer runs on virtual time: whenever Asio
// computes how long it may wait for its earliest timer, the clock jumps to that
// timer, so a 64 s backoff completes in microseconds and every run of a
// single-threaded io_context is the same.
#pragma once

#include <asio/associated_cancellation_slot.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/basic_waitable_timer.hpp>
#include <asio/co_spawn.hpp>
#include <asio/compose.hpp>
#include <asio/error.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/experimental/prepend.hpp>
#include <asio/steady_timer.hpp>

#include <atomic>
#include <memory>
#include <chrono>
#include <exception>
#include <functional>
#include <string>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

#include "backoff/error.hpp"
#include "backoff/retry.hpp"
#include "backoff/step.hpp"

namespace backoff::asio {

namespace net = ::asio;

// What one attempt produced: op's completion arguments. Expected-like, so that
// the default classifier counts an attempt without error as a success and
// on_error_codes({...}) works as a retry_value predicate.
template <class E, class... Ts>
struct attempt_result {
  E ec{};
  std::tuple<Ts...> values{};

  bool has_value() const noexcept { return !ec; }
  const E& error() const noexcept { return ec; }
};

// Errors for a loop that ended without any attempt's error to report.
enum class error { gate_denied = 1, no_attempt = 2 };

inline const std::error_category& error_category() noexcept {
  struct category final : std::error_category {
    const char* name() const noexcept override { return "backoff"; }
    std::string message(int v) const override {
      return v == static_cast<int>(error::gate_denied) ? "a gate denied the first attempt" : "no attempt was made";
    }
  };
  static const category c;
  return c;
}
inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), error_category()}; }

// A clock on virtual time, for deterministic tests of async retries (see the top).
struct manual_clock {
  using rep = std::int64_t;
  using period = std::nano;
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<manual_clock>;
  static constexpr bool is_steady = true;

  static time_point now() noexcept { return time_point(duration(offset().load(std::memory_order_acquire))); }
  static void advance(duration d) noexcept { offset().fetch_add(d.count(), std::memory_order_acq_rel); }
  static void reset() noexcept { offset().store(std::chrono::hours{24}.count(), std::memory_order_release); }

 private:
  static std::atomic<std::int64_t>& offset() noexcept {
    static std::atomic<std::int64_t> v{std::chrono::hours{24}.count()};
    return v;
  }
};

// Asio asks how long it may wait until its earliest timer is due (when it
// schedules a timer or is about to block): the virtual clock jumps there, so
// nothing ever blocks on it.
struct manual_wait_traits {
  static manual_clock::duration to_wait_duration(const manual_clock::duration& d) {
    if (d.count() > 0) manual_clock::advance(d);
    return manual_clock::duration::zero();
  }
  static manual_clock::duration to_wait_duration(const manual_clock::time_point& t) {
    return to_wait_duration(t - manual_clock::now());
  }
};

using manual_timer = net::basic_waitable_timer<manual_clock, manual_wait_traits>;

namespace detail {

template <class T>
struct signature_of_deferred;
template <class Sig, class Init, class... A>
struct signature_of_deferred<net::experimental::deferred_async_operation<Sig, Init, A...>> {
  using type = Sig;
};
template <class T>
struct awaitable_value;
template <class T, class Ex>
struct awaitable_value<net::awaitable<T, Ex>> {
  using type = T;
};
// A coroutine op: called with no arguments, returns asio::awaitable<T>.
template <class Op>
concept coroutine_fn = std::invocable<Op&> && requires { typename awaitable_value<std::invoke_result_t<Op&>>::type; };

template <class Op>
struct op_signature {
  // The completion signature of op(token), found by asking op for a deferred operation.
  using type = typename signature_of_deferred<
      std::decay_t<decltype(std::declval<Op&>()(net::experimental::deferred))>>::type;
};
template <coroutine_fn Op>
struct op_signature<Op> {
  using value = typename awaitable_value<std::invoke_result_t<Op&>>::type;
  using type = std::conditional_t<std::is_void_v<value>, void(std::exception_ptr), void(std::exception_ptr, value)>;
};
template <class Op>
using signature_of = typename op_signature<std::remove_cvref_t<Op>>::type;

template <class Sig>
struct signature_traits;
template <class E, class... Ts>
struct signature_traits<void(E, Ts...)> {
  static_assert(std::is_same_v<E, std::error_code> || std::is_same_v<E, std::exception_ptr>,
                "async_retry: op must complete with void(std::error_code, T...) or void(std::exception_ptr, T...)");
  using result = attempt_result<E, Ts...>;
  using error_type = E;
};

template <class E>
E stop_error(stop_reason why) {
  if constexpr (std::is_same_v<E, std::exception_ptr>) {
    return std::make_exception_ptr(retry_error(why, nullptr, history{}, "no attempt was made"));
  } else {
    if (why == stop_reason::cancelled) return net::error::operation_aborted;
    return make_error_code(why == stop_reason::success ? error::no_attempt : error::gate_denied);
  }
}

template <class Clock>
time_point to_backoff(typename Clock::time_point t) noexcept {
  return time_point{std::chrono::duration_cast<duration>(t.time_since_epoch())};
}

struct wait_done {};  // tags the timer's completion apart from the attempt's

template <class Op, class Timer, class E, class... Ts>
class retry_op {
 public:
  using result = attempt_result<E, Ts...>;
  using clock_type = typename Timer::clock_type;

  // `p` and `o` are copied unless `borrowed_*`: then they must outlive the operation.
  retry_op(Op op, const policy& p, bool borrowed_policy, const options<result>* o, bool borrowed_options, Timer timer)
      : s_(std::make_unique<state>(std::move(op), p, borrowed_policy, o, borrowed_options, std::move(timer))) {}

  // Started by async_compose.
  template <class Self>
  void operator()(Self& self) {
    state& s = *s_;
    s.policy.validate();
    s.start = now();
    s.step.started_at(s.start);
    if (s.options.gate && s.options.gate_first_attempt) {
      const auto d = s.step.start(s.start);
      if (!d.allowed) return finish_without_attempt(self, d.reason);
      if (d.not_before > s.start || d.recheck) {
        s.phase = phase::first_wait;
        return wait_until(self, d.not_before, d.recheck);
      }
    }
    start_attempt(self);
  }

  // A wait ended (or was cancelled).
  template <class Self>
  void operator()(Self& self, wait_done, std::error_code) {
    state& s = *s_;
    if (self.get_cancellation_state().cancelled() != net::cancellation_type::none) {
      s.step.abandon();
      if (!s.has_last) return finish_without_attempt(self, stop_reason::cancelled);
      if (s.options.on_give_up)
        s.options.on_give_up(backoff::attempt<result>{s.rec, &s.last, {}, stop_reason::cancelled, true});
      return complete_with(self, stop_error<E>(stop_reason::cancelled), std::move(s.last.values));
    }
    if (s.recheck) {
      // The gate asked to be asked again once the wait ended.
      const auto d = s.step.recheck(now());
      if (!d.allowed) {
        if (!s.has_last) return finish_without_attempt(self, d.reason);
        if (s.options.on_give_up) s.options.on_give_up(backoff::attempt<result>{s.rec, &s.last, {}, d.reason, true});
        return complete_with(self, std::move(s.last.ec), std::move(s.last.values));
      }
      if (d.recheck || d.not_before > now()) return wait_until(self, d.not_before, d.recheck);
      s.recheck = false;
    }
    if (s.phase == phase::first_wait) {
      s.start = now();
      s.step.started_at(s.start);
    } else if (s.options.before_retry) {
      s.options.before_retry(backoff::attempt<result>{s.rec, &s.last, {}, stop_reason::success, false});
    }
    start_attempt(self);
  }

  // An attempt ended.
  template <class Self>
  void operator()(Self& self, E ec, Ts... values) {
    state& s = *s_;
    const time_point t1 = now();
    s.last = result{std::move(ec), std::tuple<Ts...>(std::move(values)...)};
    s.has_last = true;
    std::exception_ptr thrown;
    attempt_outcome outcome;
    if constexpr (std::is_same_v<E, std::exception_ptr>) {
      thrown = s.last.ec;
      outcome = thrown ? s.options.classify(nullptr, &thrown) : s.options.classify(&s.last, nullptr);
    } else {
      outcome = s.options.classify(&s.last, nullptr);
    }
    s.rec = attempt_record{s.n, outcome, static_cast<bool>(thrown), s.t0 - s.start, t1 - s.t0, duration{0}, duration{-1}};
    const backoff::attempt<result> seen{s.rec, &s.last, thrown, stop_reason::success, false};

    // An attempt that ended because the whole loop was cancelled ends it.
    if (outcome != attempt_outcome::success &&
        self.get_cancellation_state().cancelled() != net::cancellation_type::none)
      return give_up(self, stop_reason::cancelled, thrown);

    retry_step::report report{outcome, t1, std::nullopt, false, false, t1 - s.t0};
    if (s.options.gate && s.options.is_timeout) report.timed_out = s.options.is_timeout(seen);
    if (outcome == attempt_outcome::retryable) {
      if (s.options.server_hint) report.hint = s.options.server_hint(seen);
      if (s.options.made_progress) report.made_progress = s.options.made_progress(seen);
    }
    random_ref rng = s.options.rng;
    const retry_step::decision d = s.step.after(report, rng);
    s.rec.hint = d.hint;
    if (d.stop) {
      if (d.reason == stop_reason::success) {
        const backoff::attempt<result> a{s.rec, &s.last, {}, stop_reason::success, true};
        if (s.options.after_attempt) s.options.after_attempt(a);
        if (s.options.on_success) s.options.on_success(a);
        return complete_with(self, std::move(s.last.ec), std::move(s.last.values));
      }
      return give_up(self, d.reason, thrown);
    }
    s.rec.delay = d.delay;
    if (s.options.after_attempt)
      s.options.after_attempt(backoff::attempt<result>{s.rec, &s.last, thrown, stop_reason::success, false});
    s.phase = phase::wait;
    s.recheck = d.recheck;
    s.timer.expires_after(std::chrono::duration_cast<typename clock_type::duration>(d.delay));
    s.timer.async_wait(net::experimental::prepend(std::move(self), wait_done{}));
  }

 private:
  enum class phase : std::uint8_t { first_wait, attempting, wait };

  // Everything the loop owns, at a fixed address: the composed operation is
  // moved with every handler, and the timer, the op and the step's pointer to
  // the policy must not move while an operation on them is pending.
  struct state {
    state(Op o, const backoff::policy& p, bool borrowed_policy, const backoff::options<result>* opts,
          bool borrowed_options, Timer t)
        : op(std::move(o)),
          own_policy(borrowed_policy ? nullptr : std::make_unique<backoff::policy>(p)),
          own_options(borrowed_options || !opts ? nullptr : std::make_unique<backoff::options<result>>(*opts)),
          policy(own_policy ? *own_policy : p),
          options(own_options ? *own_options : opts ? *opts : default_options()),
          timer(std::move(t)),
          step(policy, {options.gate, options.gate_first_attempt, options.observer}) {}
    static const backoff::options<result>& default_options() {
      static const backoff::options<result> none{};
      return none;
    }
    Op op;
    std::unique_ptr<backoff::policy> own_policy;             // null when borrowed
    std::unique_ptr<backoff::options<result>> own_options;   // null when borrowed or defaulted
    const backoff::policy& policy;
    const backoff::options<result>& options;
    Timer timer;
    retry_step step;
    enum phase phase = phase::attempting;
    std::uint32_t n = 0;
    time_point start{}, t0{};
    result last{};
    bool has_last = false;
    bool recheck = false;  // ask the gate again when the wait ends
    attempt_record rec{0, attempt_outcome::permanent, false, {}, {}, {}, duration{-1}};
  };

  // Waits (phase as set) until `at`, then asks the gate again when `recheck`.
  template <class Self>
  void wait_until(Self& self, time_point at, bool recheck) {
    state& s = *s_;
    s.recheck = recheck;
    const time_point t = now();
    s.timer.expires_after(std::chrono::duration_cast<typename clock_type::duration>(at > t ? at - t : duration{0}));
    s.timer.async_wait(net::experimental::prepend(std::move(self), wait_done{}));
  }

  static time_point now() noexcept { return to_backoff<clock_type>(clock_type::now()); }

  template <class Self>
  void start_attempt(Self& self) {
    state& s = *s_;
    ++s.n;
    s.phase = phase::attempting;
    s.t0 = now();
    if (s.options.observer) s.options.observer->attempt_started(s.n, s.t0);
    s.op(std::move(self));  // s stays put: only the pointer to it moves
  }

  template <class Self>
  void give_up(Self& self, stop_reason why, const std::exception_ptr& thrown) {
    state& s = *s_;
    const backoff::attempt<result> a{s.rec, &s.last, thrown, why, true};
    if (s.options.after_attempt) s.options.after_attempt(a);
    if (why == stop_reason::permanent && s.options.fallback) {
      result value = s.options.fallback(a);
      if (s.options.on_give_up)
        s.options.on_give_up(backoff::attempt<result>{s.rec, &value, thrown, stop_reason::fallback, true});
      return complete_with(self, std::move(value.ec), std::move(value.values));
    }
    if (s.options.on_give_up) s.options.on_give_up(a);
    if (why == stop_reason::cancelled && !s.last.ec)
      return complete_with(self, stop_error<E>(why), std::move(s.last.values));
    complete_with(self, std::move(s.last.ec), std::move(s.last.values));
  }

  template <class Self>
  void finish_without_attempt(Self& self, stop_reason why) {
    state& s = *s_;
    if (s.options.on_give_up)
      s.options.on_give_up(
          backoff::attempt<result>{{0, attempt_outcome::permanent, false, {}, {}, {}, duration{-1}}, nullptr, {}, why, true});
    complete_with(self, stop_error<E>(why), std::tuple<Ts...>{});
  }

  // Frees the state before the handler runs (Asio's rule for composed
  // operations: no memory of ours outlives the completion).
  template <class Self>
  void complete_with(Self& self, E ec, std::tuple<Ts...> values) {
    s_.reset();
    std::apply([&](Ts&... v) { self.complete(std::move(ec), std::move(v)...); }, values);
  }

  std::unique_ptr<state> s_;
};

// Each attempt of a coroutine op is co_spawned on the executor.
template <class Fn>
struct spawn_each {
  net::any_io_executor ex;
  Fn fn;
  template <class Token>
  auto operator()(Token&& token) {
    return net::co_spawn(ex, fn(), std::forward<Token>(token));
  }
};

template <class Timer, class Op, class Executor, class E, class... Ts, class Token>
auto start(void (*)(E, Ts...), const Executor& ex, const policy& p, bool borrowed_policy, Op&& op,
           const options<attempt_result<E, Ts...>>* o, bool borrowed_options, Token&& token) {
  if constexpr (coroutine_fn<std::remove_cvref_t<Op>>) {
    using spawner = spawn_each<std::decay_t<Op>>;
    using impl = retry_op<spawner, Timer, E, Ts...>;
    return net::async_compose<Token, void(E, Ts...)>(
        impl(spawner{net::any_io_executor(ex), std::forward<Op>(op)}, p, borrowed_policy, o, borrowed_options, Timer(ex)),
        token, ex);
  } else {
    using impl = retry_op<std::decay_t<Op>, Timer, E, Ts...>;
    return net::async_compose<Token, void(E, Ts...)>(
        impl(std::forward<Op>(op), p, borrowed_policy, o, borrowed_options, Timer(ex)), token, ex);
  }
}

}  // namespace detail

// The result type of op's attempts, for spelling its options:
// options<result_of<decltype(op)>>{.classify = …}.
template <class Op>
using result_of = typename detail::signature_traits<detail::signature_of<Op>>::result;

// Runs op under the policy, waiting on `Timer`s of `ex` between attempts. The
// policy and options are copied into the operation; pass std::cref(policy) or
// std::cref(options) to share one that outlives every operation instead (what
// a program with very many pending retries wants: see BM_AsyncPending).
template <class Timer = net::steady_timer, class Executor, class Op, class Token>
  requires(!std::is_convertible_v<Token, const options<result_of<Op>>&>)
auto async_retry(const Executor& ex, const policy& p, Op&& op, Token&& token) {
  return detail::start<Timer>(static_cast<detail::signature_of<Op>*>(nullptr), ex, p, false, std::forward<Op>(op),
                              static_cast<const options<result_of<Op>>*>(nullptr), true, std::forward<Token>(token));
}
template <class Timer = net::steady_timer, class Executor, class Op, class Token>
  requires(!std::is_convertible_v<Token, const options<result_of<Op>>&>)
auto async_retry(const Executor& ex, std::reference_wrapper<const policy> p, Op&& op, Token&& token) {
  return detail::start<Timer>(static_cast<detail::signature_of<Op>*>(nullptr), ex, p.get(), true, std::forward<Op>(op),
                              static_cast<const options<result_of<Op>>*>(nullptr), true, std::forward<Token>(token));
}
template <class Timer = net::steady_timer, class Executor, class Op, class Token>
auto async_retry(const Executor& ex, const policy& p, Op&& op, const options<result_of<Op>>& o, Token&& token) {
  return detail::start<Timer>(static_cast<detail::signature_of<Op>*>(nullptr), ex, p, false, std::forward<Op>(op), &o,
                              false, std::forward<Token>(token));
}
template <class Timer = net::steady_timer, class Executor, class Op, class Token>
auto async_retry(const Executor& ex, std::reference_wrapper<const policy> p, Op&& op, const options<result_of<Op>>& o,
                 Token&& token) {
  return detail::start<Timer>(static_cast<detail::signature_of<Op>*>(nullptr), ex, p.get(), true, std::forward<Op>(op),
                              &o, false, std::forward<Token>(token));
}
template <class Timer = net::steady_timer, class Executor, class Op, class Token>
auto async_retry(const Executor& ex, const policy& p, Op&& op, std::reference_wrapper<const options<result_of<Op>>> o,
                 Token&& token) {
  return detail::start<Timer>(static_cast<detail::signature_of<Op>*>(nullptr), ex, p, false, std::forward<Op>(op),
                              &o.get(), true, std::forward<Token>(token));
}
template <class Timer = net::steady_timer, class Executor, class Op, class Token>
auto async_retry(const Executor& ex, std::reference_wrapper<const policy> p, Op&& op,
                 std::reference_wrapper<const options<result_of<Op>>> o, Token&& token) {
  return detail::start<Timer>(static_cast<detail::signature_of<Op>*>(nullptr), ex, p.get(), true, std::forward<Op>(op),
                              &o.get(), true, std::forward<Token>(token));
}

// A coroutine op: fn() returns asio::awaitable<T>; each attempt is co_spawned
// on `ex`. Completes with void(std::exception_ptr, T); use_awaitable rethrows.
// (async_retry also takes such an fn directly.)
template <class Fn>
detail::spawn_each<Fn> coroutine_op(const net::any_io_executor& ex, Fn fn) {
  return {ex, std::move(fn)};
}

}  // namespace backoff::asio

namespace std {
template <>
struct is_error_code_enum<backoff::asio::error> : true_type {};
}  // namespace std
