// SPDX-License-Identifier: BSL-1.0
// A coroutine client that connects to a TCP server on loopback and exchanges a
// line, retried with backoff::asio through the failures a real service shows:
// the first attempt is refused (the server is not up yet), the second is reset
// after connecting (the server drops it), the third gets its answer. One thread,
// no blocking: the waits between attempts are timers on the io_context.
#include <asio/experimental/as_tuple.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <backoff/asio.hpp>

#include <cstdio>
#include <memory>
#include <string>

using namespace std::chrono_literals;
using asio::ip::tcp;

namespace {

// The server: accepts; drops the first connection with a reset; echoes a line
// back, upper-cased, on the others.
asio::awaitable<void> serve(tcp::acceptor& acceptor) {
  for (int n = 1;; ++n) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::experimental::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    if (n == 1) {
      socket.set_option(asio::socket_base::linger(true, 0));  // close() sends RST
      socket.close();
      continue;
    }
    std::string line;
    auto [rec, got] = co_await asio::async_read_until(socket, asio::dynamic_buffer(line), '\n',
                                                      asio::experimental::as_tuple(asio::use_awaitable));
    if (rec) continue;
    for (char& c : line) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    co_await asio::async_write(socket, asio::buffer(line), asio::experimental::as_tuple(asio::use_awaitable));
  }
}

// One attempt: connect, send a line, read the answer.
asio::awaitable<std::string> exchange(tcp::endpoint server, std::string line) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(server, asio::use_awaitable);
  co_await asio::async_write(socket, asio::buffer(line), asio::use_awaitable);
  std::string answer;
  co_await asio::async_read_until(socket, asio::dynamic_buffer(answer), '\n', asio::use_awaitable);
  co_return answer;
}

}  // namespace

int main() {
  asio::io_context ctx;
  // Reserve a port, then close it: connecting is refused until the server starts.
  tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  const tcp::endpoint server = acceptor.local_endpoint();
  acceptor.close();

  const backoff::policy policy{.schedule = backoff::exponential{.initial = 50ms, .multiplier = 2.0, .max_delay = 1s},
                               .jitter = backoff::jitter::full(),
                               .stop = backoff::stop::after_attempts(5)};
  auto op = backoff::asio::coroutine_op(ctx.get_executor(), [&] { return exchange(server, "hello, backoff\n"); });
  using result = backoff::asio::result_of<decltype(op)>;
  const backoff::options<result> options{
      .before_retry =
          [&](const backoff::attempt<result>& a) {
            std::printf("attempt %u failed; retried after %lld ms\n", a.record.number,
                        static_cast<long long>(a.record.delay / 1ms));
            if (!acceptor.is_open()) {  // the server comes up after the first refusal
              acceptor.open(server.protocol());
              acceptor.set_option(tcp::acceptor::reuse_address(true));
              acceptor.bind(server);
              acceptor.listen();
              asio::co_spawn(ctx, serve(acceptor), asio::detached);
            }
          },
  };

  int status = 1;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        try {
          const std::string answer = co_await backoff::asio::async_retry(ex, policy, op, options, asio::use_awaitable);
          std::printf("answer: %s", answer.c_str());
          status = answer == "HELLO, BACKOFF\n" ? 0 : 1;
        } catch (const std::exception& e) {
          std::printf("gave up: %s\n", e.what());
        }
        acceptor.close();
      },
      asio::detached);
  ctx.run();
  return status;
}
