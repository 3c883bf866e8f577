// SPDX-License-Identifier: BSL-1.0
// Hedged requests (backoff/hedge.hpp, backoff/asio_hedge.hpp) on virtual time:
// when copies start, which one wins, that losers are cancelled and awaited,
// the gate's say over every extra copy, the retry after a failed round, the
// adaptive delay, and the latency sketch it reads.
#include "backoff/asio_hedge.hpp"

#include <gtest/gtest.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "backoff/budget.hpp"
#include "backoff/metrics.hpp"
#include "attempt_numbers.hpp"

using namespace std::chrono_literals;
namespace ba = backoff::asio;
using backoff::stop_reason;

namespace {

const std::error_code refused = std::make_error_code(std::errc::connection_refused);
const std::error_code denied = std::make_error_code(std::errc::permission_denied);

// Virtual time for several timers at once. Asio's manual_timer jumps the
// clock to a timer as soon as it is scheduled, which is right for one timer
// and wrong for a hedge's delay beside its copies' latencies. sim_timer keeps
// every pending wait in one queue; run_virtual() runs what is ready, then
// moves the clock to the earliest wait and fires every wait due by then.
class sim_timer {
 public:
  using clock_type = ba::manual_clock;
  struct entry {
    clock_type::time_point at;
    std::function<void(std::error_code)> fire;  // posts the handler
  };
  static std::map<std::uint64_t, entry>& queue() {
    static std::map<std::uint64_t, entry> q;
    return q;
  }

  template <class Executor>
  explicit sim_timer(const Executor& ex) : ex_(ex) {}
  sim_timer(const sim_timer&) = delete;
  sim_timer& operator=(const sim_timer&) = delete;
  ~sim_timer() { cancel(); }

  void expires_after(clock_type::duration d) {
    cancel();
    at_ = clock_type::now() + d;
  }
  template <class Handler>
  void async_wait(Handler&& h) {
    auto ex = asio::get_associated_executor(h, ex_);
    auto held = std::make_shared<std::decay_t<Handler>>(std::forward<Handler>(h));
    id_ = ++next_id();
    queue().emplace(id_, entry{at_, [ex, held](std::error_code ec) {
                                 asio::post(ex, [held, ec] { std::move (*held)(ec); });
                               }});
  }
  void cancel() {
    const auto it = queue().find(id_);
    if (it == queue().end()) return;
    auto fire = std::move(it->second.fire);
    queue().erase(it);
    fire(asio::error::operation_aborted);
  }

 private:
  static std::uint64_t& next_id() {
    static std::uint64_t n = 0;
    return n;
  }
  asio::any_io_executor ex_;
  clock_type::time_point at_{};
  std::uint64_t id_ = 0;
};

void run_virtual(asio::io_context& ctx) {
  for (;;) {
    ctx.restart();
    ctx.poll();
    auto& q = sim_timer::queue();
    if (q.empty()) return;
    auto earliest = q.begin()->second.at;
    for (const auto& [id, e] : q) earliest = std::min(earliest, e.at);
    if (earliest > ba::manual_clock::now()) ba::manual_clock::advance(earliest - ba::manual_clock::now());
    std::vector<std::uint64_t> due;
    for (const auto& [id, e] : q)
      if (e.at <= ba::manual_clock::now()) due.push_back(id);  // in the order they were scheduled
    for (const auto id : due) {
      auto fire = std::move(q.at(id).fire);
      q.erase(id);
      fire({});
    }
  }
}

// One scripted copy: how long it takes (virtual time) and how it ends.
struct take {
  std::chrono::nanoseconds latency;
  std::error_code ec{};
};

// An op whose n-th call completes after script[n-1].latency with its error
// and the call's number. It honours terminal cancellation through the
// handler's slot: it then completes at once with operation_aborted.
struct timed_op {
  struct log {
    int calls = 0;
    int cancelled = 0;
    int completed = 0;
    std::vector<ba::manual_clock::time_point> started;
  };
  asio::io_context* ctx;
  std::vector<take> script;
  std::shared_ptr<log> seen = std::make_shared<log>();

  template <class Token>
  auto operator()(Token&& token) {
    const int n = ++seen->calls;
    seen->started.push_back(ba::manual_clock::now());
    const take t = static_cast<std::size_t>(n) <= script.size() ? script[n - 1] : take{1ms};
    auto timer = std::make_shared<sim_timer>(ctx->get_executor());
    timer->expires_after(t.latency);
    return asio::async_initiate<Token, void(std::error_code, int)>(
        [timer, t, n, seen = seen](auto handler) {
          auto slot = asio::get_associated_cancellation_slot(handler);
          if (slot.is_connected()) slot.assign([timer](asio::cancellation_type) { timer->cancel(); });
          timer->async_wait([timer, t, n, seen, h = std::move(handler)](std::error_code e) mutable {
            ++seen->completed;
            auto bound = asio::get_associated_cancellation_slot(h);
            if (bound.is_connected()) bound.clear();
            if (e == asio::error::operation_aborted) {
              ++seen->cancelled;
              return std::move(h)(e, n);
            }
            std::move(h)(t.ec, n);
          });
        },
        token);
  }
};

// Counts what it is asked; allows the first `allow` requests that are retries.
struct counting_gate final : backoff::gate {
  int allow = 1000;
  int asked = 0;
  int released = 0;
  backoff::gate_decision acquire(const backoff::gate_request& r) noexcept override {
    if (!r.retry) return {};
    ++asked;
    if (asked > allow) return {false, stop_reason::budget_exhausted, {}, false};
    return {};
  }
  void release(const backoff::gate_request&) noexcept override { ++released; }
  void record(const backoff::gate_outcome&) noexcept override {}
};

backoff::policy retry_doubling(std::uint32_t attempts) {
  return {.schedule = backoff::exponential{.initial = 1s, .multiplier = 2.0, .max_delay = 64s},
          .jitter = backoff::jitter::none(),
          .stop = backoff::stop::after_attempts(attempts)};
}

class Hedge : public ::testing::Test {
 protected:
  void SetUp() override { ba::manual_clock::reset(); }

  struct outcome {
    std::error_code ec;
    int copy = 0;
    std::chrono::nanoseconds took{};
    int cancelled_before = 0;  // copies the op had seen cancelled when the operation completed
  };

  template <class... O>
  std::optional<outcome> run(const backoff::hedge_policy& hp, timed_op& op, const O&... opts) {
    std::optional<outcome> out;
    const auto t0 = ba::manual_clock::now();
    auto seen = op.seen;
    ba::async_hedge<sim_timer>(ctx.get_executor(), hp, op, opts..., [&, seen](std::error_code ec, int n) {
      out = outcome{ec, n, ba::manual_clock::now() - t0, seen->cancelled};
    });
    run_virtual(ctx);
    return out;
  }

  asio::io_context ctx;
};

}  // namespace

// A first copy that answers before the delay is the only one sent.
TEST_F(Hedge, AFirstCopyFasterThanTheDelayIsTheOnlyOne) {
  timed_op op{&ctx, {{40ms}}};
  const auto out = run({.delay = 100ms}, op);
  ASSERT_TRUE(out);
  EXPECT_FALSE(out->ec);
  EXPECT_EQ(out->copy, 1);
  EXPECT_EQ(out->took, 40ms);
  EXPECT_EQ(op.seen->calls, 1);
  EXPECT_EQ(op.seen->cancelled, 0);
}

// A slow first copy: a second starts at the delay, answers first and wins;
// the first is cancelled, and the operation completes only once it has.
TEST_F(Hedge, ASlowCopyIsHedgedAndTheLoserCancelledBeforeCompletion) {
  timed_op op{&ctx, {{2s}, {50ms}}};
  const auto out = run({.delay = 100ms}, op);
  ASSERT_TRUE(out);
  EXPECT_FALSE(out->ec);
  EXPECT_EQ(out->copy, 2);
  EXPECT_EQ(out->took, 150ms);
  EXPECT_EQ(op.seen->calls, 2);
  EXPECT_EQ(op.seen->started[1] - op.seen->started[0], 100ms);
  EXPECT_EQ(out->cancelled_before, 1);
  EXPECT_EQ(op.seen->completed, 2);
}

// Never more than max_attempts copies at once, one per delay.
TEST_F(Hedge, NoMoreThanMaxAttemptsCopiesRun) {
  timed_op op{&ctx, {{10s}, {10s}, {10s}, {10s}}};
  const auto out = run({.max_attempts = 3, .delay = 100ms}, op);
  ASSERT_TRUE(out);
  EXPECT_EQ(op.seen->calls, 3);
  EXPECT_EQ(out->copy, 1);  // all equally slow: the first, started first, ends first
  EXPECT_EQ(out->took, 10s);
  EXPECT_EQ(op.seen->started[2] - op.seen->started[0], 200ms);
  EXPECT_EQ(op.seen->cancelled, 2);
}

// max_attempts 1: no hedging at all, only the retry loop.
TEST_F(Hedge, MaxAttemptsOneNeverHedges) {
  timed_op op{&ctx, {{5s}}};
  const auto out = run({.max_attempts = 1, .delay = 100ms}, op);
  ASSERT_TRUE(out);
  EXPECT_EQ(op.seen->calls, 1);
  EXPECT_EQ(out->took, 5s);
}

// A copy that fails retryably starts the next one at once (gRPC A6's
// non-fatal codes), not at the delay.
TEST_F(Hedge, AFailedCopyStartsTheNextAtOnce) {
  timed_op op{&ctx, {{10ms, refused}, {20ms}}};
  const auto out = run({.delay = 1s}, op);
  ASSERT_TRUE(out);
  EXPECT_FALSE(out->ec);
  EXPECT_EQ(out->copy, 2);
  EXPECT_EQ(out->took, 30ms);
}

// The same while another copy still runs: with three copies allowed, the
// second failing at 110 ms starts the third then, not at the next delay.
TEST_F(Hedge, AFailedCopyStartsTheNextAtOnceBesideARunningOne) {
  timed_op op{&ctx, {{10s}, {10ms, refused}, {20ms}}};
  const auto out = run({.max_attempts = 3, .delay = 100ms}, op);
  ASSERT_TRUE(out);
  EXPECT_FALSE(out->ec);
  EXPECT_EQ(out->copy, 3);
  ASSERT_EQ(op.seen->calls, 3);
  EXPECT_EQ(op.seen->started[2] - op.seen->started[0], 110ms);
  EXPECT_EQ(out->took, 130ms);
}

// A permanent failure ends the operation: the other copy is cancelled and
// the permanent error is the result.
TEST_F(Hedge, APermanentFailureEndsItAndCancelsTheOthers) {
  timed_op op{&ctx, {{1s}, {10ms, denied}}};
  backoff::options<ba::result_of<timed_op>> o{
      .classify = {.retry_value = backoff::on_error_codes({std::errc::connection_refused})}};
  const auto out = run({.delay = 100ms}, op, o);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->ec, denied);
  EXPECT_EQ(out->took, 110ms);
  EXPECT_EQ(out->cancelled_before, 1);
}

// Every copy of a round failed: the retry policy waits, then a new round.
// Attempts are copies (after_attempts counts each).
TEST_F(Hedge, AFailedRoundIsRetriedAfterTheBackoff) {
  timed_op op{&ctx, {{10ms, refused}, {10ms, refused}, {10ms}}};
  const auto out = run({.delay = 1s, .retry = retry_doubling(5)}, op);
  ASSERT_TRUE(out);
  EXPECT_FALSE(out->ec);
  EXPECT_EQ(out->copy, 3);
  EXPECT_EQ(out->took, 10ms + 10ms + 1s + 10ms);

  timed_op never{&ctx, {{10ms, refused}, {10ms, refused}, {10ms, refused}, {10ms, refused}}};
  const auto out2 = run({.delay = 1s, .retry = retry_doubling(3)}, never);
  ASSERT_TRUE(out2);
  EXPECT_EQ(out2->ec, refused);
  EXPECT_EQ(never.seen->calls, 3);
}

// Every extra copy asks the gate as a retry does; a gate that says no stops
// hedging (the slow first copy is waited for), and is never asked for the
// first copy.
TEST_F(Hedge, EveryExtraCopyAsksTheGate) {
  counting_gate g;
  g.allow = 0;
  timed_op op{&ctx, {{3s}, {10ms}}};
  backoff::options<ba::result_of<timed_op>> o{.gate = &g};
  const auto out = run({.max_attempts = 3, .delay = 100ms}, op, o);
  ASSERT_TRUE(out);
  EXPECT_EQ(op.seen->calls, 1);
  EXPECT_EQ(out->took, 3s);
  EXPECT_EQ(g.asked, 1);  // refused once: no more asking this round

  counting_gate yes;
  timed_op op2{&ctx, {{3s}, {3s}, {10ms}}};
  backoff::options<ba::result_of<timed_op>> o2{.gate = &yes};
  const auto out2 = run({.max_attempts = 3, .delay = 100ms}, op2, o2);
  ASSERT_TRUE(out2);
  EXPECT_EQ(op2.seen->calls, 3);
  EXPECT_EQ(yes.asked, 2);
  EXPECT_EQ(out2->took, 210ms);
}

// A retry budget that is spent lets no hedge through: hedging cannot add load
// past it.
TEST_F(Hedge, ASpentRetryBudgetAllowsNoHedge) {
  auto spent = backoff::retry_budget::grpc({.max_tokens = 10, .token_ratio = 0.1});
  for (int i = 0; i < 6; ++i) spent.record({backoff::attempt_outcome::retryable, false, false, {}});
  timed_op op{&ctx, {{3s}, {10ms}}};
  backoff::options<ba::result_of<timed_op>> o{.gate = &spent};
  const auto out = run({.delay = 100ms}, op, o);
  ASSERT_TRUE(out);
  EXPECT_EQ(op.seen->calls, 1);
  EXPECT_EQ(out->took, 3s);

  auto fresh = backoff::retry_budget::grpc({.max_tokens = 10, .token_ratio = 0.1});
  timed_op op2{&ctx, {{3s}, {10ms}}};
  backoff::options<ba::result_of<timed_op>> o2{.gate = &fresh};
  EXPECT_EQ(run({.delay = 100ms}, op2, o2)->took, 110ms);
}

// A server hint on a failed copy is its "not now": no other copy starts at
// once; the round's end waits at least the hint.
TEST_F(Hedge, AHintStopsHedgingForTheRound) {
  timed_op op{&ctx, {{10ms, refused}, {10ms}}};
  backoff::options<ba::result_of<timed_op>> o{
      .server_hint = [](const auto&) -> std::optional<backoff::duration> { return 5s; }};
  const auto out = run({.delay = 100ms, .retry = retry_doubling(3)}, op, o);
  ASSERT_TRUE(out);
  EXPECT_FALSE(out->ec);
  EXPECT_EQ(op.seen->calls, 2);
  EXPECT_EQ(op.seen->started[1] - op.seen->started[0], 10ms + 5s);
}

// The adaptive delay is the sketch's p95 (the bucket's upper bound), at
// least the floor, and the fixed delay until the sketch has enough samples.
TEST_F(Hedge, TheAdaptiveDelayIsTheRecentP95) {
  backoff::latency_sketch sketch;
  const backoff::hedge_policy hp{.delay = 1s, .adaptive = &sketch, .floor = 1ms};
  timed_op cold{&ctx, {{5s}, {10ms}}};
  EXPECT_EQ(run(hp, cold)->took, 1s + 10ms);  // one sample so far: the fixed delay

  for (int i = 0; i < 100; ++i) sketch.add(i < 94 ? 20ms : 80ms);
  const auto p95 = *sketch.quantile(0.95);
  EXPECT_GE(p95, 80ms);
  EXPECT_LE(p95, 80ms * 1.19);
  timed_op warm{&ctx, {{5s}, {10ms}}};
  EXPECT_EQ(run(hp, warm)->took, p95 + 10ms);

  const backoff::hedge_policy floored{.delay = 1s, .adaptive = &sketch, .floor = 300ms};
  timed_op slow{&ctx, {{5s}, {10ms}}};
  EXPECT_EQ(run(floored, slow)->took, 310ms);
}

// Each request's latency, as its caller saw it (from the first copy's start
// to the winner's end), is added to the sketch; the cancelled copy's is not.
TEST_F(Hedge, RequestLatenciesFeedTheSketch) {
  backoff::latency_sketch sketch;
  const backoff::hedge_policy hp{.delay = 100ms, .adaptive = &sketch, .quantile = 0.5};
  timed_op op{&ctx, {{2s}, {30ms}}};
  ASSERT_TRUE(run(hp, op));
  EXPECT_EQ(sketch.held(), 1u);
  EXPECT_EQ(sketch.quantile(0.5), std::nullopt);
  for (int i = 1; i < 20; ++i) {
    timed_op again{&ctx, {{2s}, {30ms}}};
    ASSERT_TRUE(run(hp, again));  // 19 samples or fewer so far: the fixed 100 ms delay
  }
  const auto p50 = *sketch.quantile(0.5);
  EXPECT_GE(p50, 130ms);  // the winning copy's own 30 ms would put it far lower
  EXPECT_LE(p50, 130ms * 1.19);
}

// The caller's cancellation cancels every copy; the operation completes once
// they have, with operation_aborted.
TEST_F(Hedge, CancellingTheOperationCancelsEveryCopy) {
  timed_op op{&ctx, {{10s}, {10s}}};
  asio::cancellation_signal cancel;
  std::optional<std::error_code> got;
  ba::async_hedge<sim_timer>(ctx.get_executor(), backoff::hedge_policy{.delay = 100ms}, op,
                             asio::bind_cancellation_slot(cancel.slot(), [&](std::error_code ec, int) { got = ec; }));
  sim_timer at(ctx.get_executor());
  at.expires_after(500ms);
  at.async_wait([&](std::error_code) { cancel.emit(asio::cancellation_type::terminal); });
  run_virtual(ctx);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, asio::error::operation_aborted);
  EXPECT_EQ(op.seen->calls, 2);
  EXPECT_EQ(op.seen->cancelled, 2);
}

// The observer hears every copy: started, hedged, cancelled, and one end.
TEST_F(Hedge, TheObserverHearsEveryCopy) {
  backoff::metrics m;
  timed_op op{&ctx, {{2s}, {2s}, {50ms}}};
  backoff::options<ba::result_of<timed_op>> o{.observer = &m};
  ASSERT_TRUE(run({.max_attempts = 3, .delay = 100ms}, op, o));
  EXPECT_EQ(m.started(), 3u);
  EXPECT_EQ(m.hedges(), 2u);
  EXPECT_EQ(m.cancelled(), 2u);
  EXPECT_EQ(m.attempts(backoff::attempt_outcome::success), 1u);
  EXPECT_EQ(m.operations(stop_reason::success), 1u);
}

// ... by the numbers it started them with, so that it can pair every end
// with its start: copy 3 fails first and ends as attempt 3 (not as the first
// attempt to end), copy 1 wins as attempt 1, and copy 2 is cancelled.
TEST_F(Hedge, TheObserverPairsEachEndWithItsStart) {
  backoff::testing::attempt_numbers seen;
  timed_op op{&ctx, {{2s}, {2s}, {50ms, refused}}};
  backoff::options<ba::result_of<timed_op>> o{.observer = &seen};
  ASSERT_TRUE(run({.max_attempts = 3, .delay = 100ms}, op, o));
  EXPECT_EQ(seen.started, (std::vector<std::uint32_t>{1, 2, 3}));
  EXPECT_EQ(seen.ended, (std::vector<std::uint32_t>{3, 1}));
  EXPECT_EQ(seen.cancelled, (std::vector<std::uint32_t>{2}));
}

TEST(HedgePolicy, BadFieldsAreNamed) {
  auto message = [](const backoff::hedge_policy& hp) {
    try {
      hp.validate();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message({.max_attempts = 0}).find("max_attempts"), std::string::npos);
  EXPECT_NE(message({.max_attempts = 11}).find("max_attempts"), std::string::npos);
  EXPECT_NE(message({.delay = -1ms}).find("delay"), std::string::npos);
  EXPECT_NE(message({.quantile = 1.0}).find("quantile"), std::string::npos);
  EXPECT_NE(message({.quantile = 0.0}).find("quantile"), std::string::npos);
  EXPECT_EQ(message({.max_attempts = 10, .quantile = 0.99}), "");
}

// Quantiles within one bucket (19 %), read as the bucket's upper bound.
TEST(LatencySketch, QuantilesAreWithinOneBucket) {
  backoff::latency_sketch s;
  EXPECT_EQ(s.quantile(0.5), std::nullopt);
  for (int i = 1; i <= 1000; ++i) s.add(std::chrono::milliseconds(i));  // halved along the way
  for (const double q : {0.5, 0.9, 0.99}) {
    const auto got = *s.quantile(q);
    EXPECT_GT(got, 1ms) << q;
  }
  backoff::latency_sketch even(1000);
  for (int i = 1; i <= 999; ++i) even.add(std::chrono::milliseconds(i));
  for (const double q : {0.5, 0.9, 0.99}) {
    const auto exact = std::chrono::duration<double>(q * 999 * 1ms);
    const auto got = std::chrono::duration<double>(*even.quantile(q));
    EXPECT_GE(got.count(), exact.count() * 0.99) << q;
    EXPECT_LE(got.count(), exact.count() * 1.2) << q;
  }
  EXPECT_EQ(backoff::latency_sketch::index(50us), 0u);
  EXPECT_EQ(backoff::latency_sketch::index(100us), 1u);
  EXPECT_EQ(backoff::latency_sketch::index(200us), 5u);
  EXPECT_EQ(backoff::latency_sketch::index(std::chrono::hours(10)), backoff::latency_sketch::buckets - 1);
  EXPECT_THROW(backoff::latency_sketch(5), std::invalid_argument);
}

// Recent samples dominate: after a slow period, a fast one moves the p95 down.
TEST(LatencySketch, OldSamplesFade) {
  backoff::latency_sketch s(64);
  for (int i = 0; i < 64; ++i) s.add(1s);
  EXPECT_GE(*s.quantile(0.95), 1s);
  for (int i = 0; i < 64 * 6; ++i) s.add(10ms);
  EXPECT_LT(*s.quantile(0.95), 20ms);
  EXPECT_LT(s.held(), 130u);
}

// A gate asked for the first attempt too (gate_first_attempt) that denies it:
// no copy is sent, and the operation says why.
TEST_F(Hedge, AGateThatDeniesTheFirstAttemptSendsNothing) {
  struct deny_all final : backoff::gate {
    backoff::gate_decision acquire(const backoff::gate_request&) noexcept override {
      return {false, stop_reason::circuit_open, {}, false};
    }
    void record(const backoff::gate_outcome&) noexcept override {}
  } g;
  std::optional<stop_reason> why;
  std::optional<backoff::attempt_record> record;
  bool had_result = true, last = false;
  timed_op op{&ctx, {{10ms}}};
  backoff::options<ba::result_of<timed_op>> o{.on_give_up =
                                                  [&](const auto& a) {
                                                    why = a.reason;
                                                    record = a.record;
                                                    had_result = a.result != nullptr;
                                                    last = a.last;
                                                  },
                                              .gate = &g,
                                              .gate_first_attempt = true};
  const auto out = run({.delay = 100ms}, op, o);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->ec, ba::make_error_code(ba::error::gate_denied));
  EXPECT_EQ(op.seen->calls, 0);
  EXPECT_EQ(why, stop_reason::circuit_open);
  // The give-up names no attempt: number 0, nothing thrown, no result, the last word.
  ASSERT_TRUE(record);
  EXPECT_EQ(record->number, 0u);
  EXPECT_FALSE(record->threw);
  EXPECT_EQ(record->outcome, backoff::attempt_outcome::permanent);
  EXPECT_EQ(record->hint, -1ns);  // no hint
  EXPECT_FALSE(had_result);
  EXPECT_TRUE(last);
}

// Cancelled during the backoff between two rounds: it ends at once, without
// another copy; on_give_up hears cancelled.
TEST_F(Hedge, CancellingDuringTheBackoffEndsItAtOnce) {
  timed_op op{&ctx, {{10ms, refused}, {10ms, refused}, {10ms}}};
  asio::cancellation_signal cancel;
  std::optional<std::error_code> got;
  std::optional<stop_reason> why;
  backoff::options<ba::result_of<timed_op>> o{.on_give_up = [&](const auto& a) { why = a.reason; }};
  ba::async_hedge<sim_timer>(ctx.get_executor(), backoff::hedge_policy{.delay = 100ms, .retry = retry_doubling(5)}, op, o,
                             asio::bind_cancellation_slot(cancel.slot(), [&](std::error_code ec, int) { got = ec; }));
  sim_timer at(ctx.get_executor());
  at.expires_after(500ms);  // both copies failed at 20 ms; the next round is due at 1020 ms
  at.async_wait([&](std::error_code) { cancel.emit(asio::cancellation_type::terminal); });
  run_virtual(ctx);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, asio::error::operation_aborted);
  EXPECT_EQ(op.seen->calls, 2);
  EXPECT_EQ(why, stop_reason::cancelled);
}

// before_retry runs once before each new round (not before a hedge), and a
// permanent failure goes to the fallback.
TEST_F(Hedge, BeforeRetryPerRoundAndTheFallback) {
  int before = 0;
  timed_op op{&ctx, {{10ms, refused}, {10ms, refused}, {10ms, refused}, {10ms, denied}}};
  backoff::options<ba::result_of<timed_op>> o{
      .classify = {.retry_value = backoff::on_error_codes({std::errc::connection_refused})},
      .fallback = [](const auto&) { return ba::result_of<timed_op>{std::error_code{}, std::tuple<int>{-1}}; },
      .before_retry = [&](const auto&) { ++before; }};
  const auto out = run({.delay = 100ms, .retry = retry_doubling(10)}, op, o);
  ASSERT_TRUE(out);
  EXPECT_FALSE(out->ec);
  EXPECT_EQ(out->copy, -1);  // the fallback's value
  EXPECT_EQ(op.seen->calls, 4);
  EXPECT_EQ(before, 1);  // rounds: copies 1-2, then 3-4
}

// The options are copied into the operation unless passed with std::cref:
// a change made after the call reaches only an operation that borrowed them.
TEST_F(Hedge, OptionsAreCopiedUnlessBorrowed) {
  using result = ba::result_of<timed_op>;
  for (const bool borrow : {false, true}) {
    std::string heard;
    std::optional<std::error_code> got;
    timed_op op{&ctx, {{10ms, denied}}};
    backoff::options<result> o{.classify = {.retry_value = [](const result&) { return false; }},
                               .on_give_up = [&](const auto&) { heard = "as called"; }};
    const backoff::hedge_policy hp{.delay = 100ms};
    auto done = [&](std::error_code ec, int) { got = ec; };
    if (borrow) ba::async_hedge<sim_timer>(ctx.get_executor(), std::cref(hp), op, std::cref(o), done);
    else ba::async_hedge<sim_timer>(ctx.get_executor(), hp, op, o, done);
    o.on_give_up = [&](const auto&) { heard = "changed"; };
    run_virtual(ctx);
    EXPECT_EQ(got, denied) << "borrowed " << borrow;
    EXPECT_EQ(heard, borrow ? "changed" : "as called");
  }
}

// A gate that lets the first attempt go later (no recheck): the first copy
// waits for that time, and the hedge delay counts from it.
TEST_F(Hedge, AGateThatDelaysTheFirstAttemptIsWaitedFor) {
  struct later final : backoff::gate {
    backoff::gate_decision acquire(const backoff::gate_request& r) noexcept override {
      if (r.retry) return {};
      return {true, stop_reason::success, r.now + 300ms, false};
    }
    void record(const backoff::gate_outcome&) noexcept override {}
  } g;
  timed_op op{&ctx, {{10ms}}};
  backoff::options<ba::result_of<timed_op>> o{.gate = &g, .gate_first_attempt = true};
  const auto out = run({.delay = 100ms}, op, o);
  ASSERT_TRUE(out);
  EXPECT_FALSE(out->ec);
  EXPECT_EQ(out->took, 310ms);
  EXPECT_EQ(op.seen->calls, 1);
}

// Cancelled while the gate holds the first attempt back: nothing was sent,
// and on_give_up hears of no attempt (number 0, no result).
TEST_F(Hedge, CancellingWhileTheGateHoldsTheFirstAttemptSendsNothing) {
  struct later final : backoff::gate {
    backoff::gate_decision acquire(const backoff::gate_request& r) noexcept override {
      return {true, stop_reason::success, r.now + 300ms, false};
    }
    void record(const backoff::gate_outcome&) noexcept override {}
  } g;
  timed_op op{&ctx, {{10ms}}};
  asio::cancellation_signal cancel;
  std::optional<std::error_code> got;
  std::optional<backoff::attempt_record> record;
  bool had_result = true;
  backoff::options<ba::result_of<timed_op>> o{.on_give_up =
                                                  [&](const auto& a) {
                                                    record = a.record;
                                                    had_result = a.result != nullptr;
                                                  },
                                              .gate = &g,
                                              .gate_first_attempt = true};
  ba::async_hedge<sim_timer>(ctx.get_executor(), backoff::hedge_policy{.delay = 100ms}, op, o,
                             asio::bind_cancellation_slot(cancel.slot(), [&](std::error_code ec, int) { got = ec; }));
  sim_timer at(ctx.get_executor());
  at.expires_after(100ms);
  at.async_wait([&](std::error_code) { cancel.emit(asio::cancellation_type::terminal); });
  run_virtual(ctx);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, asio::error::operation_aborted);
  EXPECT_EQ(op.seen->calls, 0);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->number, 0u);
  EXPECT_FALSE(had_result);
}

// Cancelled while a copy runs after another failed: on_give_up hears
// cancelled, with the failed copy's result, and the running copy is cancelled.
TEST_F(Hedge, CancellingAfterAFailedCopyGivesUpWithItsResult) {
  timed_op op{&ctx, {{10ms, refused}, {1s}}};
  asio::cancellation_signal cancel;
  std::optional<std::error_code> got;
  std::optional<stop_reason> why;
  std::optional<std::error_code> last_ec;
  backoff::options<ba::result_of<timed_op>> o{.on_give_up = [&](const auto& a) {
    why = a.reason;
    if (a.result) last_ec = a.result->ec;
  }};
  ba::async_hedge<sim_timer>(ctx.get_executor(), backoff::hedge_policy{.delay = 100ms}, op, o,
                             asio::bind_cancellation_slot(cancel.slot(), [&](std::error_code ec, int) { got = ec; }));
  sim_timer at(ctx.get_executor());
  at.expires_after(50ms);  // copy 1 failed at 10 ms; copy 2 runs until 1010 ms
  at.async_wait([&](std::error_code) { cancel.emit(asio::cancellation_type::terminal); });
  run_virtual(ctx);
  ASSERT_TRUE(got);
  EXPECT_EQ(op.seen->calls, 2);
  EXPECT_EQ(op.seen->cancelled, 1);
  EXPECT_EQ(why, stop_reason::cancelled);
  EXPECT_EQ(last_ec, refused);
}
