// SPDX-License-Identifier: BSL-1.0
#include "raw_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

namespace backoff::testing {

namespace {

std::string reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 226: return "IM Used";
    case 300: return "Multiple Choices";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 404: return "Not Found";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

bool has_header(const std::vector<std::pair<std::string, std::string>>& headers, const char* name) {
  for (const auto& [k, v] : headers)
    if (::strcasecmp(k.c_str(), name) == 0) return true;
  return false;
}

}  // namespace

raw_reply raw_reply::http(int status, const std::vector<std::pair<std::string, std::string>>& headers,
                          const std::string& body, long long announce) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
  for (const auto& [k, v] : headers) out += k + ": " + v + "\r\n";
  const bool bodiless = status == 204 || status == 304 || (status >= 100 && status < 200);
  if (!bodiless && !has_header(headers, "Content-Length") && !has_header(headers, "Transfer-Encoding"))
    out += "Content-Length: " + std::to_string(announce >= 0 ? static_cast<unsigned long long>(announce) : body.size()) + "\r\n";
  out += "Connection: close\r\n\r\n";
  out += body;
  return {out};
}

raw_server::raw_server(bool concurrent) : concurrent_(concurrent) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      ::pipe2(stop_pipe_, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("raw_server: cannot listen on 127.0.0.1: ") + std::strerror(errno));
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { serve(); });
}

raw_server::~raw_server() {
  const char c = 'q';
  (void)!::write(stop_pipe_[1], &c, 1);
  thread_.join();
  for (auto& w : workers_) w.join();
  ::close(listen_fd_);
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
}

std::string raw_server::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void raw_server::script(std::vector<raw_reply> replies) {
  std::lock_guard lock(mutex_);
  script_ = std::move(replies);
  next_ = 0;
}

std::vector<std::string> raw_server::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

void raw_server::serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) return;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (!concurrent_) {
      answer(fd);
      continue;
    }
    workers_.emplace_back([this, fd] { answer(fd); });
  }
}

void raw_server::answer(int fd) {
  // The request head, up to the blank line (bodies are not expected, but read what came).
  std::string head;
  char buf[8192];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < (1u << 20)) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    head.append(buf, static_cast<std::size_t>(n));
  }
  raw_reply reply;
  {
    std::lock_guard lock(mutex_);
    requests_.push_back(head);
    if (!script_.empty()) reply = script_[std::min(next_++, script_.size() - 1)];
  }
  auto send_all = [&](const char* data, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const ssize_t w = ::send(fd, data + done, n - done, MSG_NOSIGNAL);
      if (w <= 0) return false;
      done += static_cast<std::size_t>(w);
    }
    return true;
  };
  bool alive = send_all(reply.bytes.data(), reply.bytes.size());
  if (alive) {
    const auto body_at = reply.bytes.find("\r\n\r\n");
    if (body_at != std::string::npos) sent_ += reply.bytes.size() - body_at - 4;
  }
  if (alive && reply.endless) {
    const std::string filler(64 * 1024, 'x');
    for (;;) {
      pollfd p[2] = {{fd, POLLOUT, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (::poll(p, 2, 5000) <= 0 || p[1].revents || !(p[0].revents & POLLOUT)) break;
      if (!send_all(filler.data(), filler.size())) break;
      sent_ += filler.size();
    }
  }
  if (alive && reply.stall.count() > 0) {
    // Hold the connection until the stall ends, the client leaves, or the server stops.
    const auto until = std::chrono::steady_clock::now() + reply.stall;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p[2] = {{fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (::poll(p, 2, static_cast<int>(left.count())) != 0) {
        if (p[1].revents) break;
        if (p[0].revents && ::read(fd, buf, sizeof buf) <= 0) break;
      }
    }
  }
  if (reply.reset) {
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  ::close(fd);
}

}  // namespace backoff::testing
