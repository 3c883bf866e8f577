// SPDX-License-Identifier: BSL-1.0
#include "metrics.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "backoff/metrics.hpp"
#include "cli.hpp"

namespace backoff::cli {

namespace fs = std::filesystem;

namespace {

struct family_info {
  const char* name;
  const char* help;
};
// Our families, in the order they are written.
constexpr family_info families[] = {
    {"backoff_last_run_timestamp_seconds", "When the last run of this job ended (Unix time)."},
    {"backoff_last_success_timestamp_seconds", "When a run of this job last succeeded (Unix time); kept from the file when a run fails."},
    {"backoff_last_run_duration_seconds", "How long the last run took, waits included."},
    {"backoff_last_run_attempts", "Attempts the last run made (get: over all its files)."},
    {"backoff_last_run_exit_code", "The exit status of the last run (0: success)."},
    {"backoff_last_run_wait_seconds", "Time the last run spent waiting between attempts."},
    {"backoff_last_run_failed_attempts", "Failed attempts of the last run, by why they failed."},
    {"backoff_last_run_bytes", "Bytes the last run downloaded (get)."},
    {"backoff_last_run_stop_reason", "Why the last run stopped: 1 for its reason."},
};

std::string number(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// The metric name of an exposition line, and its labels' text (without braces).
bool split_sample(const std::string& line, std::string& metric, std::string& labels, std::string& value) {
  std::size_t i = 0;
  while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
  metric = line.substr(0, i);
  labels.clear();
  if (i < line.size() && line[i] == '{') {
    const std::size_t open = i++;
    bool quoted = false;
    for (; i < line.size(); ++i) {
      if (quoted && line[i] == '\\') {
        ++i;
        continue;
      }
      if (line[i] == '"') quoted = !quoted;
      if (!quoted && line[i] == '}') break;
    }
    if (i >= line.size()) return false;
    labels = line.substr(open + 1, i - open - 1);
    ++i;
  }
  while (i < line.size() && line[i] == ' ') ++i;
  value = line.substr(i);
  return !metric.empty() && !value.empty();
}

// The unescaped value of label `key` in a labels text, if present.
std::optional<std::string> label_value(const std::string& labels, const std::string& key) {
  std::size_t i = 0;
  while (i < labels.size()) {
    while (i < labels.size() && (labels[i] == ',' || labels[i] == ' ')) ++i;
    const std::size_t eq = labels.find('=', i);
    if (eq == std::string::npos || eq + 1 >= labels.size() || labels[eq + 1] != '"') return std::nullopt;
    const std::string k = labels.substr(i, eq - i);
    std::string v;
    std::size_t j = eq + 2;
    for (; j < labels.size() && labels[j] != '"'; ++j) {
      if (labels[j] == '\\' && j + 1 < labels.size()) {
        ++j;
        v += labels[j] == 'n' ? '\n' : labels[j];
      } else {
        v += labels[j];
      }
    }
    if (k == key) return v;
    i = j + 1;
  }
  return std::nullopt;
}

struct family {
  std::string name, help, type;
  std::vector<std::string> samples;
};

// An exposition text as families in order; samples whose name label is
// `drop` are left out.
std::vector<family> parse(const std::string& text, const std::string& drop) {
  std::vector<family> out;
  std::map<std::string, std::size_t> index;
  auto at = [&](const std::string& n) -> family& {
    auto it = index.find(n);
    if (it == index.end()) {
      it = index.emplace(n, out.size()).first;
      out.push_back({n, {}, {}, {}});
    }
    return out[it->second];
  };
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      const std::string rest = line.substr(7);
      const auto sp = rest.find(' ');
      if (sp == std::string::npos) continue;
      family& f = at(rest.substr(0, sp));
      (line[2] == 'H' ? f.help : f.type) = rest.substr(sp + 1);
      continue;
    }
    if (line[0] == '#') continue;
    std::string metric, labels, value;
    if (!split_sample(line, metric, labels, value)) continue;
    if (label_value(labels, "name") == drop) continue;
    at(metric).samples.push_back(line);
  }
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string lock_path(const std::string& file) { return file + ".lock"; }

// The directory's fd is fsync'ed after the rename, so the new name survives a crash.
void sync_dir(const fs::path& dir) {
  const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0) return;
  ::fsync(d);
  ::close(d);
}

std::string write_file(const std::string& path, const run_summary& s) {
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const int lock = ::open(lock_path(path).c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (lock < 0) return "cannot open '" + lock_path(path) + "': " + std::strerror(errno);
  // Another backoff writes the same file: it takes milliseconds; never wait long.
  bool locked = false;
  for (int i = 0; i < 500 && !locked; ++i) {
    locked = ::flock(lock, LOCK_EX | LOCK_NB) == 0;
    if (!locked) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!locked) {
    ::close(lock);
    return "'" + lock_path(path) + "' stayed locked for 5 s";
  }
  const std::string old = read_text(path);
  std::optional<double> last_success;
  if (s.exit_code != 0) last_success = find_sample(old, "backoff_last_success_timestamp_seconds", s.name);
  std::vector<family> merged = parse(old, s.name);
  for (const family& f : parse(render_metrics(s, last_success), std::string(1, '\0'))) {
    auto it = std::find_if(merged.begin(), merged.end(), [&](const family& m) { return m.name == f.name; });
    if (it == merged.end()) {
      merged.push_back(f);
    } else {
      it->help = f.help;
      it->type = f.type;
      it->samples.insert(it->samples.end(), f.samples.begin(), f.samples.end());
    }
  }
  std::string text;
  for (const family& f : merged) {
    if (f.samples.empty()) continue;
    if (!f.help.empty()) text += "# HELP " + f.name + " " + f.help + "\n";
    if (!f.type.empty()) text += "# TYPE " + f.name + " " + f.type + "\n";
    for (const auto& line : f.samples) text += line + "\n";
  }
  // Not ending in .prom: the textfile collector never reads a half-written file.
  std::string temp = (dir / ("." + p.filename().string() + ".XXXXXX")).string();
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  std::string error;
  if (fd < 0) {
    error = "cannot create a temporary file in '" + dir.string() + "': " + std::strerror(errno);
  } else {
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::fchmod(fd, 0644 & ~mask);
    if (!write_all(fd, text.data(), text.size())) error = "cannot write '" + temp + "': " + std::strerror(errno);
    if (error.empty() && ::fsync(fd) != 0) error = "cannot sync '" + temp + "': " + std::strerror(errno);
    ::close(fd);
    if (error.empty() && ::rename(temp.c_str(), path.c_str()) != 0)
      error = "cannot rename into '" + path + "': " + std::strerror(errno);
    if (!error.empty()) ::unlink(temp.c_str());
    else sync_dir(dir);
  }
  ::flock(lock, LOCK_UN);
  ::close(lock);
  return error;
}

struct http_url {
  std::string host, port = "80", path;
};
std::optional<http_url> parse_http(const std::string& url) {
  if (url.rfind("http://", 0) != 0) return std::nullopt;
  const std::string rest = url.substr(7);
  const auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  http_url u;
  u.path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!u.path.empty() && u.path.back() == '/') u.path.pop_back();
  if (authority.empty() || authority.find('@') != std::string::npos) return std::nullopt;
  // The port follows the last colon, unless that colon is inside an IPv6
  // literal's brackets ("[::1]" has none, "[::1]:9091" has one).
  const auto bracket = authority.rfind(']');
  if (const auto colon = authority.rfind(':'); colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    u.port = authority.substr(colon + 1);
    authority.resize(colon);
    int port = 0;
    const auto r = std::from_chars(u.port.data(), u.port.data() + u.port.size(), port);
    if (r.ec != std::errc{} || r.ptr != u.port.data() + u.port.size() || port < 1 || port > 65535) return std::nullopt;
  }
  if (authority.size() > 2 && authority.front() == '[' && authority.back() == ']') authority = authority.substr(1, authority.size() - 2);
  u.host = authority;
  // A bracket left over is not a host: "[]", "[::1", "::1]".
  if (u.host.empty() || u.host.find_first_of("[]") != std::string::npos) return std::nullopt;
  return u;
}

// A Pushgateway grouping-key value: as is when it is a plain path segment,
// else base64url with the label marked "@base64" (the Pushgateway's rule).
std::string group_segment(const std::string& label, const std::string& value) {
  bool plain = !value.empty();
  for (const char c : value) plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.');
  if (plain) return label + "/" + value;
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  unsigned bits = 0;
  int n = 0;
  for (const unsigned char c : value) {
    bits = (bits << 8) | c;
    n += 8;
    while (n >= 6) {
      n -= 6;
      out += abc[(bits >> n) & 63];
    }
  }
  if (n > 0) out += abc[(bits << (6 - n)) & 63];
  while (out.size() % 4 != 0) out += '=';
  return label + "@base64/" + (out.empty() ? "=" : out);
}

// One HTTP/1.1 request over a plain socket, every wait bounded (5 s in all):
// the status, or an error. Pushgateway speaks plain HTTP; the `backoff`
// binary that runs `run` links no HTTP library (start-up time).
std::string http_send(const http_url& u, const std::string& method, const std::string& path, const std::string& body,
                      int& status) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  auto left_ms = [&] {
    return static_cast<int>(std::max<long long>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
  };
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (const int e = ::getaddrinfo(u.host.c_str(), u.port.c_str(), &hints, &res); e != 0)
    return "cannot resolve " + u.host + ": " + ::gai_strerror(e);
  int fd = -1;
  std::string error = "cannot connect to " + u.host + ":" + u.port;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      error += std::string(": ") + std::strerror(errno);
      ::close(fd);
      fd = -1;
      continue;
    }
    pollfd p{fd, POLLOUT, 0};
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (::poll(&p, 1, left_ms()) != 1 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
      error += soerr ? std::string(": ") + std::strerror(soerr) : std::string(": timed out");
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) return error;
  const std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + (u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host) + ":" + u.port +
                          "\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " + std::to_string(body.size()) +
                          "\r\nConnection: close\r\n\r\n" + body;
  std::size_t done = 0;
  while (done < req.size()) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, left_ms()) != 1) {
      ::close(fd);
      return "timed out sending to " + u.host + ":" + u.port;
    }
    const ssize_t w = ::send(fd, req.data() + done, req.size() - done, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (w <= 0) {
      ::close(fd);
      return std::string("cannot send: ") + std::strerror(errno);
    }
    done += static_cast<std::size_t>(w);
  }
  std::string answer;
  char buf[1024];
  while (answer.find("\r\n") == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, left_ms()) != 1) break;
    const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (r <= 0) break;
    answer.append(buf, static_cast<std::size_t>(r));
  }
  ::close(fd);
  // "HTTP/1.1 200 OK"
  if (answer.rfind("HTTP/1.", 0) != 0 || answer.size() < 12) return "no HTTP answer from " + u.host + ":" + u.port;
  status = std::atoi(answer.c_str() + 9);
  return {};
}

}  // namespace

void metrics_options::add_to(CLI::App& cmd) {
  cmd.add_option("--metrics", file,
                 "At exit, write what the run did as Prometheus gauges to FILE (for node_exporter's textfile "
                 "collector: name it *.prom); other names' series in FILE are kept");
  cmd.add_option("--metrics-name", name, "The name label of --metrics and --push-metrics (default: the subcommand)");
  cmd.add_option("--push-metrics", push,
                 "At exit, push the same gauges to a Pushgateway: http://HOST:PORT (group job=backoff, name=NAME)");
}

void metrics_options::check(const std::string& command) {
  if (name.empty()) name = command;
  if (!file.empty()) {
    const auto fail = [&](const std::string& why) { return usage_error("--metrics: cannot write '" + file + "': " + why); };
    struct stat st{};
    if (::stat(file.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) throw fail("it is not a regular file");
    const fs::path p(file);
    if (!p.has_filename()) throw fail("not a file name");
    const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
    if (::access(dir.c_str(), W_OK) != 0) throw fail(std::strerror(errno));
    const int lock = ::open(lock_path(file).c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (lock < 0) throw fail(std::string("its lock file: ") + std::strerror(errno));
    ::close(lock);
  }
  if (!push.empty()) {
    if (push.rfind("https://", 0) == 0)
      throw usage_error("--push-metrics: https:// is not supported: give the Pushgateway's http:// address");
    if (!parse_http(push)) throw usage_error("--push-metrics: '" + push + "' is not http://HOST[:PORT][/PATH]");
  }
}

std::string escape_label(const std::string& v) { return backoff::metrics::escape(v); }

std::optional<double> find_sample(const std::string& text, const std::string& family, const std::string& name) {
  std::istringstream in(text);
  std::string line, metric, labels, value;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || !split_sample(line, metric, labels, value) || metric != family) continue;
    if (label_value(labels, "name") != name) continue;
    double v = 0;
    const auto r = std::from_chars(value.data(), value.data() + value.size(), v);
    if (r.ec == std::errc{}) return v;
  }
  return std::nullopt;
}

run_summary summarize(const std::string& name, const nlohmann::json& doc, int exit_code,
                      std::chrono::system_clock::time_point started, std::chrono::system_clock::time_point ended) {
  run_summary s;
  s.name = name;
  s.exit_code = exit_code;
  s.ended_unix = std::chrono::duration<double>(ended.time_since_epoch()).count();
  s.duration_s = std::chrono::duration<double>(ended - started).count();
  s.stop_reason = exit_code == 0 ? "success" : "none";
  auto one = [&](const nlohmann::json& d) {
    if (d.contains("reason") && d["reason"].is_string()) {
      const std::string r = d["reason"];
      if (r != "success" || s.stop_reason == "none") s.stop_reason = r;
    }
    if (d.contains("bytes") && d["bytes"].is_number()) s.bytes = s.bytes.value_or(0) + d["bytes"].get<long long>();
    if (!d.contains("attempts") || !d["attempts"].is_array()) return;
    for (const auto& a : d["attempts"]) {
      ++s.attempts;
      if (a.contains("delay_s") && a["delay_s"].is_number()) s.wait_s += a["delay_s"].get<double>();
      if (a.value("outcome", std::string()) == "success") continue;
      std::string why = "other";
      if (a.value("timed_out", false)) why = "timeout";
      else if (a.contains("signal") && a["signal"].is_number()) why = "signal_" + std::to_string(a["signal"].get<int>());
      else if (a.contains("exit_code") && a["exit_code"].is_number()) why = "exit_" + std::to_string(a["exit_code"].get<int>());
      else if (a.contains("http_status") && a["http_status"].is_number() && a["http_status"].get<int>() > 0)
        why = "http_" + std::to_string(a["http_status"].get<int>());
      else if (a.contains("transport_error") && a["transport_error"].is_string()) why = a["transport_error"];
      ++s.failed_by_reason[why];
    }
  };
  if (doc.is_object() && doc.contains("downloads") && doc["downloads"].is_array()) {
    s.stop_reason = "success";
    for (const auto& d : doc["downloads"]) one(d);
  } else if (doc.is_object()) {
    one(doc);
  }
  return s;
}

std::string render_metrics(const run_summary& s, std::optional<double> last_success) {
  const std::string n = "name=\"" + escape_label(s.name) + "\"";
  std::map<std::string, std::vector<std::string>> lines;
  auto add = [&](const char* family, const std::string& labels, const std::string& value) {
    lines[family].push_back(std::string(family) + "{" + labels + "} " + value);
  };
  add("backoff_last_run_timestamp_seconds", n, number(s.ended_unix));
  if (s.exit_code == 0) add("backoff_last_success_timestamp_seconds", n, number(s.ended_unix));
  else if (last_success) add("backoff_last_success_timestamp_seconds", n, number(*last_success));
  add("backoff_last_run_duration_seconds", n, number(s.duration_s));
  add("backoff_last_run_attempts", n, std::to_string(s.attempts));
  add("backoff_last_run_exit_code", n, std::to_string(s.exit_code));
  add("backoff_last_run_wait_seconds", n, number(s.wait_s));
  for (const auto& [why, count] : s.failed_by_reason)
    add("backoff_last_run_failed_attempts", n + ",reason=\"" + escape_label(why) + "\"", std::to_string(count));
  if (s.bytes) add("backoff_last_run_bytes", n, std::to_string(*s.bytes));
  add("backoff_last_run_stop_reason", n + ",reason=\"" + escape_label(s.stop_reason) + "\"", "1");
  std::string text;
  for (const auto& f : families) {
    auto it = lines.find(f.name);
    if (it == lines.end()) continue;
    text += std::string("# HELP ") + f.name + " " + f.help + "\n# TYPE " + f.name + " gauge\n";
    for (const auto& l : it->second) text += l + "\n";
  }
  return text;
}

std::string write_metrics(const metrics_options& o, const run_summary& s) {
  std::string errors;
  if (!o.file.empty()) {
    if (const std::string e = write_file(o.file, s); !e.empty()) errors += "--metrics: " + e;
  }
  if (!o.push.empty()) {
    const auto u = parse_http(o.push);
    // A success replaces the group (PUT); a failure replaces only the
    // families it sends (POST), so the last success pushed before stays.
    const std::string path = u->path + "/metrics/job/backoff/" + group_segment("name", s.name);
    int status = 0;
    std::string e = http_send(*u, s.exit_code == 0 ? "PUT" : "POST", path, render_metrics(s, std::nullopt), status);
    if (e.empty() && (status < 200 || status > 299)) e = "the Pushgateway answered HTTP " + std::to_string(status);
    if (!e.empty()) errors += std::string(errors.empty() ? "" : "; ") + "--push-metrics: " + e;
  }
  return errors;
}

void finish_metrics(const metrics_options& o, const nlohmann::json& doc, int exit_code,
                    std::chrono::system_clock::time_point started) {
  if (!o.wanted()) return;
  const std::string trouble = write_metrics(o, summarize(o.name, doc, exit_code, started, std::chrono::system_clock::now()));
  if (!trouble.empty()) std::cerr << "backoff: warning: " << trouble << "\n";
}

}  // namespace backoff::cli
