// SPDX-License-Identifier: BSL-1.0
#include "connection.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>

namespace backoff::redis::detail {

namespace {

using steady = std::chrono::steady_clock;

// OpenSSL writes with write(2): to a connection the server closed, that
// raises SIGPIPE, whose default action kills the process — for a library, a
// Redis that goes away must cost the gates, never the program. While one of
// these lives, SIGPIPE is blocked in this thread; one raised meanwhile is
// taken off the pending set before the mask is restored (as libcurl does).
class sigpipe_blocked {
 public:
  sigpipe_blocked() {
    ::sigemptyset(&pipe_);
    ::sigaddset(&pipe_, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    sigset_t pending;
    ::sigpending(&pending);
    was_pending_ = ::sigismember(&pending, SIGPIPE) == 1;
  }
  ~sigpipe_blocked() {
    sigset_t pending;
    ::sigpending(&pending);
    if (!was_pending_ && ::sigismember(&pending, SIGPIPE) == 1) {
      const timespec zero{};
      while (::sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  sigpipe_blocked(const sigpipe_blocked&) = delete;
  sigpipe_blocked& operator=(const sigpipe_blocked&) = delete;

 private:
  sigset_t pipe_{}, old_{};
  bool was_pending_ = false;
};

bool is_ip(const std::string& host) {
  in6_addr a6{};
  in_addr a4{};
  return ::inet_pton(AF_INET, host.c_str(), &a4) == 1 || ::inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "TLS failure";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// One SSL_CTX per CA file for the process: loading the system's CA bundle
// takes longer (about 25 ms here) than a whole command may, and it is local
// work, not a wait on Redis. Returns a new reference, or null with `why`.
SSL_CTX* shared_context(const std::string& ca_file, std::string& why) {
  static std::mutex mutex;
  // Never destroyed: a connection may outlive static destruction, and the
  // contexts stay reachable (no leak reported at exit).
  static auto& contexts = *new std::map<std::string, SSL_CTX*>();
  std::lock_guard lock(mutex);
  auto it = contexts.find(ca_file);
  if (it == contexts.end()) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
      why = openssl_error();
      return nullptr;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    const bool loaded = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx) == 1
                                        : SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) == 1;
    if (!loaded) {
      SSL_CTX_free(ctx);
      why = "cannot read the CA certificates" + (ca_file.empty() ? std::string() : " in '" + ca_file + "'");
      return nullptr;
    }
    it = contexts.emplace(ca_file, ctx).first;
  }
  SSL_CTX_up_ref(it->second);
  return it->second;
}

}  // namespace

connection::~connection() {
  if (ssl_) SSL_free(ssl_);
  if (ctx_) SSL_CTX_free(ctx_);
  if (fd_ >= 0) ::close(fd_);
  if (reader_) redisReaderFree(reader_);
}

bool connection::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  return false;
}

bool connection::wait(short events, steady::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
    if (left <= 0) return fail("timed out after " + std::to_string(timeout_.count()) + " ms");
    pollfd p{fd_, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(std::string("poll: ") + std::strerror(errno));
    if (n == 0) continue;  // the loop sees the deadline
    return true;  // ready, or an error the next read or write reports
  }
}

std::unique_ptr<connection> connection::open(const target& t, std::chrono::milliseconds timeout, std::string& why) {
  std::unique_ptr<connection> c(new connection());
  c->timeout_ = timeout;
  if (t.tls && !(c->ctx_ = shared_context(t.ca_file, why))) return nullptr;
  const auto deadline = steady::now() + timeout;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = is_ip(t.host) ? AI_NUMERICHOST : 0;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(t.port);
  if (const int e = ::getaddrinfo(t.host.c_str(), port.c_str(), &hints, &found); e != 0) {
    why = "cannot resolve " + t.host + ": " + ::gai_strerror(e);
    return nullptr;
  }
  std::string last = "cannot connect";
  for (addrinfo* a = found; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    c->fd_ = fd;
    c->error_.clear();
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0 ||
        (errno == EINPROGRESS && c->wait(POLLOUT, deadline))) {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0) break;
      c->error_ = std::strerror(err);
    } else if (c->error_.empty()) {
      c->error_ = std::strerror(errno);
    }
    last = c->error_;
    ::close(fd);
    c->fd_ = -1;
  }
  ::freeaddrinfo(found);
  if (c->fd_ < 0) {
    why = last;
    return nullptr;
  }
  const int one = 1;
  ::setsockopt(c->fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->error_.clear();
  if (t.tls && !c->handshake(t, deadline)) {
    why = c->error_;
    return nullptr;
  }
  c->reader_ = redisReaderCreate();
  if (!c->reader_) {
    why = "out of memory";
    return nullptr;
  }
  if (!t.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!t.user.empty()) auth.push_back(t.user);
    auth.push_back(t.password);
    const reply r = c->command(auth);
    if (!r) {
      why = c->error_;
      return nullptr;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      why = "the password was refused: " + std::string(r->str, r->len);
      return nullptr;
    }
  }
  return c;
}

bool connection::handshake(const target& t, steady::time_point deadline) {
  ssl_ = SSL_new(ctx_);
  if (!ssl_ || SSL_set_fd(ssl_, fd_) != 1) return fail(openssl_error());
  // The certificate must name the host (or its IP address); SNI for names.
  if (is_ip(t.host)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), t.host.c_str());
  } else {
    SSL_set1_host(ssl_, t.host.c_str());
    SSL_set_tlsext_host_name(ssl_, t.host.c_str());
  }
  const sigpipe_blocked quiet;
  for (;;) {
    ERR_clear_error();
    const int r = SSL_connect(ssl_);
    if (r == 1) return true;
    const int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ && wait(POLLIN, deadline)) continue;
    if (e == SSL_ERROR_WANT_WRITE && wait(POLLOUT, deadline)) continue;
    if (!error_.empty()) return false;  // timed out
    if (const long v = SSL_get_verify_result(ssl_); v != X509_V_OK)
      return fail(std::string("the server's certificate is not trusted: ") + X509_verify_cert_error_string(v));
    return fail("TLS handshake failed: " + openssl_error());
  }
}

bool connection::send_all(const char* data, std::size_t n, steady::time_point deadline) {
  std::optional<sigpipe_blocked> quiet;
  if (ssl_) quiet.emplace();
  std::size_t done = 0;
  while (done < n) {
    if (ssl_) {
      ERR_clear_error();
      const int w = SSL_write(ssl_, data + done, static_cast<int>(n - done));
      if (w > 0) {
        done += static_cast<std::size_t>(w);
        continue;
      }
      const int e = SSL_get_error(ssl_, w);
      if (e == SSL_ERROR_WANT_WRITE && wait(POLLOUT, deadline)) continue;
      if (e == SSL_ERROR_WANT_READ && wait(POLLIN, deadline)) continue;
      return fail(error_.empty() ? "TLS write failed: " + openssl_error() : error_);
    }
    const ssize_t w = ::send(fd_, data + done, n - done, MSG_NOSIGNAL);
    if (w > 0) {
      done += static_cast<std::size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && wait(POLLOUT, deadline)) continue;
    return fail(error_.empty() ? std::string("send: ") + std::strerror(errno) : error_);
  }
  return true;
}

bool connection::read_once(steady::time_point deadline) {
  std::optional<sigpipe_blocked> quiet;  // a TLS read may write (a key update's answer)
  if (ssl_) quiet.emplace();
  char buf[16384];
  for (;;) {
    ssize_t n = 0;
    if (ssl_) {
      ERR_clear_error();
      const int r = SSL_read(ssl_, buf, sizeof buf);
      if (r > 0) {
        n = r;
      } else {
        const int e = SSL_get_error(ssl_, r);
        if (e == SSL_ERROR_WANT_READ) {
          if (!wait(POLLIN, deadline)) return false;
          continue;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
          if (!wait(POLLOUT, deadline)) return false;
          continue;
        }
        return fail(e == SSL_ERROR_ZERO_RETURN ? "connection closed" : "TLS read failed: " + openssl_error());
      }
    } else {
      n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!wait(POLLIN, deadline)) return false;
        continue;
      }
      if (n < 0) return fail(std::string("recv: ") + std::strerror(errno));
      if (n == 0) return fail("connection closed");
    }
    if (redisReaderFeed(reader_, buf, static_cast<std::size_t>(n)) != REDIS_OK) return fail("out of memory");
    return true;
  }
}

reply connection::buffered() {
  if (!error_.empty()) return nullptr;
  void* out = nullptr;
  if (redisReaderGetReply(reader_, &out) != REDIS_OK) {
    fail(std::string("not a Redis reply (") + reader_->errstr + ")");
    return nullptr;
  }
  return reply(static_cast<redisReply*>(out));
}

bool connection::pending() const { return ssl_ && SSL_pending(ssl_) > 0; }

bool connection::read_available() {
  if (!error_.empty()) return false;
  // A deadline in the past: read what is there, never wait.
  const bool ok = read_once(steady::now());
  if (!ok && error_.starts_with("timed out")) {
    error_.clear();
    return true;
  }
  return ok;
}

reply connection::command(const std::vector<std::string>& args) {
  if (!error_.empty()) return nullptr;
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* formatted = nullptr;
  const int n = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()), argv.data(), lens.data());
  if (n < 0 || !formatted) {
    fail("out of memory");
    return nullptr;
  }
  const auto deadline = steady::now() + timeout_;
  const bool sent = send_all(formatted, static_cast<std::size_t>(n), deadline);
  redisFreeCommand(formatted);
  if (!sent) return nullptr;
  for (;;) {
    if (reply r = buffered()) return r;
    if (!error_.empty() || !read_once(deadline)) return nullptr;
  }
}

}  // namespace backoff::redis::detail
