// SPDX-License-Identifier: BSL-1.0
#include "fault_server.hpp"

#include <httplib.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <stdexcept>
#include <string_view>

namespace backoff::testing {

namespace {

constexpr const char* kLastModified = "Wed, 21 Oct 2015 07:28:00 GMT";

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string make_etag(const std::string& content) {
  // FNV-1a: enough to tell versions of a test file apart.
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : content) h = (h ^ c) * 1099511628211ULL;
  char buf[32];
  std::snprintf(buf, sizeof buf, "\"%016llx\"", static_cast<unsigned long long>(h));
  return buf;
}

// The accepted socket whose peer is 127.0.0.1:remote_port, found by asking every
// descriptor of this process. cpp-httplib does not hand handlers their socket.
int find_socket(int local_port, int remote_port) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (dirent* e = readdir(dir)) {
    const int fd = std::atoi(e->d_name);
    if (fd <= 2) continue;
    sockaddr_in peer{}, local{};
    socklen_t n = sizeof peer, m = sizeof local;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &n) != 0 || peer.sin_family != AF_INET) continue;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &m) != 0) continue;
    if (ntohs(peer.sin_port) == remote_port && ntohs(local.sin_port) == local_port) {
      found = fd;
      break;
    }
  }
  closedir(dir);
  return found;
}

std::chrono::milliseconds parse_ms(const std::string& text, const std::string& whole) {
  std::size_t value = 0;
  const auto* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || p == text.data()) throw std::invalid_argument("bad fault '" + whole + "': bad duration");
  const std::string_view unit(p, static_cast<std::size_t>(end - p));
  if (unit == "ms" || unit.empty()) return std::chrono::milliseconds(value);
  if (unit == "s") return std::chrono::milliseconds(value * 1000);
  throw std::invalid_argument("bad fault '" + whole + "': unit must be ms or s");
}

}  // namespace

fault parse_fault(const std::string& text) {
  const auto colon = text.find(':');
  const std::string head = text.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : text.substr(colon + 1);
  if (head == "ok" && arg.empty()) return fault::ok();
  if (head == "reset" && arg.empty()) return fault::reset();
  if (head == "wrong-length" && arg.empty()) return fault::wrong_length();
  if (head == "hold" && arg.empty()) return fault::hold();
  if (head == "slow") return fault::slow(parse_ms(arg, text));
  if (head == "cut") {
    std::size_t k = 0;
    auto [p, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), k);
    if (ec != std::errc{} || p != arg.data() + arg.size() || arg.empty())
      throw std::invalid_argument("bad fault '" + text + "': cut needs a byte count, e.g. cut:1000");
    return fault::cut(k);
  }
  int code = 0;
  auto [p, ec] = std::from_chars(head.data(), head.data() + head.size(), code);
  if (ec == std::errc{} && p == head.data() + head.size() && code >= 100 && code <= 599) {
    if (arg.empty()) return fault::status(code);
    if (arg.rfind("retry-after=", 0) == 0) return fault::status(code, arg.substr(12));
    throw std::invalid_argument("bad fault '" + text + "': expected retry-after=VALUE after the status");
  }
  throw std::invalid_argument("bad fault '" + text +
                              "': expected ok, NNN[:retry-after=V], slow:DUR, reset, cut:BYTES or wrong-length");
}

fault_server::fault_server() : server_(std::make_unique<httplib::Server>()) {
  auto h = [this](const httplib::Request& req, httplib::Response& res) { handle(&req, &res); };
  const std::string all = "/.*";
  server_->Get(all, h);
  server_->Post(all, h);
  server_->Put(all, h);
  server_->Patch(all, h);
  server_->Delete(all, h);
  server_->Options(all, h);
  server_->set_keep_alive_max_count(100000);
  server_->set_tcp_nodelay(true);  // headers and body go out as separate writes
  // One thread per kept-alive connection: 48 lets four clients of -P 8 (and a
  // few probes) be served at once; a connection past the pool waits for a
  // thread until another connection closes (its keep-alive lasts 5 s).
  // One thread per kept-alive connection: 48 lets four clients of -P 8 (and a
  // few probes) be served at once; a connection past the pool waits for a
  // thread until another connection closes (its keep-alive lasts 5 s).
  server_->new_task_queue = [] { return new httplib::ThreadPool(48); };
  port_ = server_->bind_to_any_port("127.0.0.1");
  if (port_ <= 0) throw std::runtime_error("fault_server: cannot bind 127.0.0.1");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

fault_server::~fault_server() { stop(); }

void fault_server::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;  // held requests go on, so that the server can stop
  }
  changed_.notify_all();
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string fault_server::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void fault_server::add_file(const std::string& path, std::string content) {
  std::lock_guard lock(mutex_);
  auto etag = make_etag(content);
  files_[path] = {std::move(content), std::move(etag)};
}

void fault_server::script(const std::string& path, std::vector<fault> faults) {
  std::lock_guard lock(mutex_);
  scripts_[path] = std::move(faults);
  cursor_[path] = 0;
}

std::size_t fault_server::hits(const std::string& path) const {
  std::lock_guard lock(mutex_);
  auto it = requests_.find(path);
  return it == requests_.end() ? 0 : it->second.size();
}

std::vector<recorded_request> fault_server::requests(const std::string& path) const {
  std::lock_guard lock(mutex_);
  auto it = requests_.find(path);
  return it == requests_.end() ? std::vector<recorded_request>{} : it->second;
}

std::size_t fault_server::in_flight() const {
  std::lock_guard lock(mutex_);
  return in_flight_;
}

std::size_t fault_server::max_in_flight() const {
  std::lock_guard lock(mutex_);
  return max_in_flight_;
}

bool fault_server::wait_held(std::size_t ever, std::size_t now, std::chrono::milliseconds limit) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, limit, [&] { return held_ever_ == ever && held_ == now; });
}

void fault_server::release(std::size_t n) {
  {
    std::lock_guard lock(mutex_);
    permits_ += n;
  }
  changed_.notify_all();
}

void fault_server::set_quota(std::size_t limit, std::chrono::milliseconds window, std::string dialect) {
  if (window.count() <= 0) throw std::invalid_argument("fault_server::set_quota: the window must be > 0");
  if (dialect != "ietf" && dialect != "ratelimit" && dialect != "x-ratelimit" && dialect != "openai" && dialect != "none")
    throw std::invalid_argument("fault_server::set_quota: unknown dialect '" + dialect + "'");
  std::lock_guard lock(mutex_);
  quota_ = std::make_unique<quota_state>();
  quota_->limit = limit;
  quota_->window = window;
  quota_->dialect = std::move(dialect);
  // Windows begin on multiples of their length on the wall clock, as
  // fixed-window limiters do, so that an epoch-second reset (GitHub's) is exact.
  const auto wall = std::chrono::system_clock::now();
  quota_->start = wall - std::chrono::duration_cast<std::chrono::system_clock::duration>(
                             std::chrono::duration_cast<std::chrono::milliseconds>(wall.time_since_epoch()) % window);
}

std::size_t fault_server::quota_refusals() const {
  std::lock_guard lock(mutex_);
  return quota_ ? quota_->refused : 0;
}

void fault_server::handle(const void* request, void* response) {
  // cpp-httplib applies Range itself, and wrongly for our purposes (it ignores
  // If-Range); clearing the parsed ranges lets this server answer them. The
  // Request object is httplib's own mutable local, so the const_cast is sound.
  auto& req = const_cast<httplib::Request&>(*static_cast<const httplib::Request*>(request));
  auto& res = *static_cast<httplib::Response*>(response);
  req.ranges.clear();

  fault f;
  std::shared_ptr<const std::string> content;
  std::string etag;
  struct counted {
    fault_server& s;
    explicit counted(fault_server& server) : s(server) {
      std::lock_guard lock(s.mutex_);
      s.max_in_flight_ = std::max(s.max_in_flight_, ++s.in_flight_);
    }
    ~counted() {
      std::lock_guard lock(s.mutex_);
      --s.in_flight_;
    }
  } count(*this);
  {
    std::lock_guard lock(mutex_);
    recorded_request rec{req.method, req.path, {}, req.body, req.remote_port, std::chrono::steady_clock::now()};
    for (const auto& [k, v] : req.headers) rec.headers[lower(k)] = v;
    requests_[req.path].push_back(std::move(rec));
    auto& s = scripts_[req.path];
    auto& c = cursor_[req.path];
    if (c < s.size()) f = s[c++];
    if (quota_) {
      quota_state& q = *quota_;
      // Windows are counted on the wall clock, so that an epoch reset is exact.
      const auto now = std::chrono::system_clock::now();
      const long long number = (now - q.start) / q.window;
      if (number != q.number) q.number = number, q.used = 0;
      const bool refuse = q.used >= q.limit;
      if (!refuse) ++q.used;
      const auto left = q.start + q.window * (number + 1) - now;
      const long long secs = std::chrono::ceil<std::chrono::seconds>(left).count();
      const std::string limit = std::to_string(q.limit), remaining = std::to_string(q.limit - q.used);
      if (q.dialect == "ietf") {
        res.set_header("RateLimit-Policy", "\"default\";q=" + limit + ";w=" +
                                               std::to_string(std::chrono::ceil<std::chrono::seconds>(q.window).count()));
        res.set_header("RateLimit", "\"default\";r=" + remaining + ";t=" + std::to_string(secs));
      } else if (q.dialect == "ratelimit") {
        res.set_header("RateLimit-Limit", limit);
        res.set_header("RateLimit-Remaining", remaining);
        res.set_header("RateLimit-Reset", std::to_string(secs));
      } else if (q.dialect == "x-ratelimit") {
        const auto at = now + left;
        res.set_header("X-RateLimit-Limit", limit);
        res.set_header("X-RateLimit-Remaining", remaining);
        res.set_header("X-RateLimit-Used", std::to_string(q.used));
        res.set_header("X-RateLimit-Reset",
                       std::to_string(std::chrono::ceil<std::chrono::seconds>(at.time_since_epoch()).count()));
      } else if (q.dialect == "openai") {
        res.set_header("x-ratelimit-limit-requests", limit);
        res.set_header("x-ratelimit-remaining-requests", remaining);
        res.set_header("x-ratelimit-reset-requests",
                       std::to_string(std::chrono::ceil<std::chrono::milliseconds>(left).count()) + "ms");
      }
      if (refuse) {
        ++q.refused;
        f = fault::status(429, std::to_string(secs));
      }
    }
    if (auto it = files_.find(req.path); it != files_.end()) {
      content = std::make_shared<const std::string>(it->second.content);
      etag = it->second.etag;
    }
  }

  switch (f.type) {
    case fault::kind::status:
      res.status = f.code;
      if (!f.retry_after.empty()) res.set_header("Retry-After", f.retry_after);
      res.set_content("fault: status " + std::to_string(f.code) + "\n", "text/plain");
      return;
    case fault::kind::slow:
      std::this_thread::sleep_for(f.delay);
      break;
    case fault::kind::hold: {
      std::unique_lock lock(mutex_);
      ++held_;
      ++held_ever_;
      changed_.notify_all();
      changed_.wait(lock, [&] { return permits_ > 0 || stopping_; });
      if (permits_ > 0) --permits_;
      --held_;
      changed_.notify_all();
      break;
    }
    case fault::kind::reset: {
      const int fd = find_socket(port_, req.remote_port);
      if (fd >= 0) {
        linger l{1, 0};  // closing now sends RST instead of FIN
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        // Swap an unconnected socket in under the same descriptor: the real
        // connection is closed (reset) at once, and httplib's later writes and
        // close() land harmlessly on the stand-in.
        const int stand_in = ::socket(AF_INET, SOCK_STREAM, 0);
        if (stand_in >= 0) {
          ::dup2(stand_in, fd);
          ::close(stand_in);
        }
      }
      res.status = 200;
      res.set_content_provider(1024, "application/octet-stream",
                               [](std::size_t, std::size_t, httplib::DataSink&) { return false; });
      return;
    }
    default:
      break;
  }

  if (!content) content = std::make_shared<const std::string>("ok\n");
  const std::size_t size = content->size();
  std::size_t from = 0, to = size;  // [from, to)
  res.status = 200;
  res.set_header("Accept-Ranges", "bytes");
  if (!etag.empty()) {
    res.set_header("ETag", etag);
    res.set_header("Last-Modified", kLastModified);
  }
  const std::string range = req.get_header_value("Range");
  const std::string if_range = req.get_header_value("If-Range");
  const bool range_applies = !range.empty() && !etag.empty() &&
                             (if_range.empty() || if_range == etag || if_range == kLastModified);
  if (range_applies) {
    std::size_t first = 0, last = size ? size - 1 : 0;
    bool valid = range.rfind("bytes=", 0) == 0;
    const std::string spec = valid ? range.substr(6) : "";
    const auto dash = spec.find('-');
    valid = valid && dash != std::string::npos && dash > 0;
    if (valid) {
      auto [p, ec] = std::from_chars(spec.data(), spec.data() + dash, first);
      valid = ec == std::errc{} && p == spec.data() + dash;
      if (valid && dash + 1 < spec.size()) {
        auto [q, ec2] = std::from_chars(spec.data() + dash + 1, spec.data() + spec.size(), last);
        valid = ec2 == std::errc{} && q == spec.data() + spec.size() && last >= first;
        last = std::min(last, size ? size - 1 : 0);
      }
    }
    if (valid) {
      if (first >= size) {
        res.status = 416;
        res.set_header("Content-Range", "bytes */" + std::to_string(size));
        return;
      }
      from = first;
      to = last + 1;
      res.status = 206;
      res.set_header("Content-Range", "bytes " + std::to_string(from) + "-" + std::to_string(last) + "/" +
                                          std::to_string(size));
    }
  }

  const std::size_t length = to - from;
  std::size_t announce = length, send = length;
  if (f.type == fault::kind::cut) send = std::min(f.bytes, length);
  if (f.type == fault::kind::wrong_length) announce = length + 64;
  const bool breaks = send < announce;
  if (req.method == "HEAD") {
    res.set_header("Content-Length", std::to_string(announce));
    return;
  }
  res.set_content_provider(
      announce, "application/octet-stream",
      [content, from, send, breaks](std::size_t offset, std::size_t len, httplib::DataSink& sink) {
        if (offset >= send) return !breaks;
        const std::size_t n = std::min({len, send - offset, std::size_t{64 * 1024}});
        if (!sink.write(content->data() + from + offset, n)) return false;
        // Returning false after the last byte closes the connection: the body
        // ends short of what was announced.
        return !(breaks && offset + n >= send);
      });
}

}  // namespace backoff::testing
