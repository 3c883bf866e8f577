// SPDX-License-Identifier: BSL-1.0
// N downloads at once from one process, from nginx on loopback: memory per
// transfer and CPU per MiB of backoff::curl::async_client, against one libcurl
// multi handle driven by a bare epoll loop with the same transfers (each to
// its own file). Rounds alternate which goes first; each run is a fresh
// process, so that its peak RSS is its own. (`make bench-concurrent`)
//
//   backoff_concurrent_bench [transfers=9000] [size=65536] [rate=16k] [rounds=2] [backoff|bare|durable]
//
// nginx's limit_rate keeps every transfer open for size/rate seconds, so that
// all of them are in flight at once. Each transfer holds a socket and a file:
// 9000 is what fits under this machine's hard limit of 20000 descriptors.
// Two baselines: "bare" writes each body to its file and closes it;
// "durable" saves as backoff does (a temporary name, fsync, rename, fsync of
// the directory). backoff also writes the part file's metadata.
#include <curl/curl.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/io_context.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "backoff/curl/async_client.hpp"
#include "content.hpp"

namespace fs = std::filesystem;

namespace {

struct figures {
  double base_kib = 0, peak_kib = 0;  // RSS before the transfers, and its high-water mark
  double cpu_s = 0, wall_s = 0;
  std::size_t ok = 0;
};

double status_kib(const char* field) {
  std::ifstream st("/proc/self/status");
  for (std::string line; std::getline(st, line);)
    if (line.rfind(field, 0) == 0) return std::atof(line.c_str() + std::string(field).size());
  return 0;
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// --- the baseline: one multi handle, curl's socket API, epoll -------------------------------
struct bare_loop {
  bool durable = false;  // as backoff saves: a temporary name, fsync, rename, fsync of the directory
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  CURLM* multi = curl_multi_init();
  long timeout_ms = -1;
  std::string first_error;  // what the first failed transfer ended with

  static int on_socket(CURL*, curl_socket_t s, int what, void* self, void* known) {
    auto* b = static_cast<bare_loop*>(self);
    if (what == CURL_POLL_REMOVE) {
      ::epoll_ctl(b->ep, EPOLL_CTL_DEL, s, nullptr);
      curl_multi_assign(b->multi, s, nullptr);
      return 0;
    }
    epoll_event ev{};
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    ev.data.fd = s;
    if (known) {
      ::epoll_ctl(b->ep, EPOLL_CTL_MOD, s, &ev);
    } else {
      ::epoll_ctl(b->ep, EPOLL_CTL_ADD, s, &ev);
      curl_multi_assign(b->multi, s, b);
    }
    return 0;
  }
  static int on_timer(CURLM*, long ms, void* self) {
    static_cast<bare_loop*>(self)->timeout_ms = ms;
    return 0;
  }
  static size_t on_body(char* data, size_t size, size_t n, void* fd) {
    const auto len = size * n;
    return ::write(static_cast<int>(reinterpret_cast<std::intptr_t>(fd)), data, len) == static_cast<ssize_t>(len) ? len : 0;
  }

  std::size_t run(const std::vector<std::string>& urls, const fs::path& dir, std::size_t size) {
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
    std::vector<int> fds(urls.size());
    for (std::size_t i = 0; i < urls.size(); ++i) {
      const fs::path name = dir / ((durable ? ".part-f" : "f") + std::to_string(i));
      fds[i] = ::open(name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fds[i] < 0) throw std::runtime_error("bare loop: cannot open an output file");
      CURL* e = curl_easy_init();
      curl_easy_setopt(e, CURLOPT_URL, urls[i].c_str());
      curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_body);
      curl_easy_setopt(e, CURLOPT_WRITEDATA, reinterpret_cast<void*>(static_cast<std::intptr_t>(fds[i])));
      curl_easy_setopt(e, CURLOPT_PRIVATE, reinterpret_cast<void*>(i));
      curl_multi_add_handle(multi, e);
    }
    std::size_t ok = 0, left = urls.size();
    std::vector<epoll_event> events(512);
    int running = 0;
    while (left > 0) {
      const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()),
                                 timeout_ms < 0 ? 1000 : static_cast<int>(timeout_ms));
      if (n <= 0) {
        curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
      } else {
        for (int k = 0; k < n; ++k) {
          const int flags = ((events[k].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                            ((events[k].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                            ((events[k].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
          curl_multi_socket_action(multi, events[k].data.fd, flags, &running);
        }
      }
      int queued = 0;
      while (CURLMsg* m = curl_multi_info_read(multi, &queued)) {
        if (m->msg != CURLMSG_DONE) continue;
        void* p = nullptr;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &p);
        const auto i = reinterpret_cast<std::size_t>(p);
        long status = 0;
        curl_off_t got = 0;
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(m->easy_handle, CURLINFO_SIZE_DOWNLOAD_T, &got);
        const bool good = m->data.result == CURLE_OK && status == 200 && static_cast<std::size_t>(got) == size;
        ok += good;
        if (!good && first_error.empty())
          first_error = std::string(curl_easy_strerror(m->data.result)) + " (HTTP " + std::to_string(status) + ")";
        if (durable && good) {
          ::fsync(fds[i]);
          ::rename((dir / (".part-f" + std::to_string(i))).c_str(), (dir / ("f" + std::to_string(i))).c_str());
          const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
          ::fsync(d);
          ::close(d);
        }
        ::close(fds[i]);
        curl_multi_remove_handle(multi, m->easy_handle);
        curl_easy_cleanup(m->easy_handle);
        --left;
      }
    }
    curl_multi_cleanup(multi);
    ::close(ep);
    if (!first_error.empty())
      std::fprintf(stderr, "%s loop: %zu of %zu failed, the first with: %s\n", durable ? "durable" : "bare",
                   urls.size() - ok, urls.size(), first_error.c_str());
    return ok;
  }
};

std::size_t run_bare(bool durable, const std::vector<std::string>& urls, const fs::path& dir, std::size_t size) {
  bare_loop b;
  b.durable = durable;
  return b.run(urls, dir, size);
}

std::size_t run_backoff(const std::vector<std::string>& urls, const fs::path& dir) {
  asio::io_context ctx;
  backoff::curl::async_client http(ctx.get_executor(), {});
  std::size_t ok = 0;
  for (std::size_t i = 0; i < urls.size(); ++i)
    http.async_download(urls[i], dir / ("f" + std::to_string(i)), [&](backoff::curl::download_result r) { ok += r.ok(); });
  ctx.run();
  return ok;
}

// Runs one mode in a fresh process; its figures come back through a pipe.
enum class loop { bare, durable, backoff };
const char* name_of(loop l) { return l == loop::bare ? "bare" : l == loop::durable ? "durable" : "backoff"; }

figures run_here(loop which, const std::vector<std::string>& urls, const fs::path& dir, std::size_t size) {
  figures f;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  f.base_kib = status_kib("VmRSS:");
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = cpu_seconds();
  f.ok = which == loop::backoff ? run_backoff(urls, dir) : run_bare(which == loop::durable, urls, dir, size);
  f.cpu_s = cpu_seconds() - c0;
  f.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  f.peak_kib = status_kib("VmHWM:");
  return f;
}

// Runs one loop in a fresh process (so that the peak RSS is its own), or here
// when `here` (one loop only, for a profiler).
figures measure(loop which, const std::vector<std::string>& urls, const fs::path& dir, std::size_t size, bool here) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  if (here) return run_here(which, urls, dir, size);
  int p[2];
  if (::pipe(p) != 0) throw std::runtime_error("pipe");
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    const figures f = run_here(which, urls, dir, size);
    (void)!::write(p[1], &f, sizeof f);
    ::_exit(0);
  }
  ::close(p[1]);
  figures f;
  if (::read(p[0], &f, sizeof f) != static_cast<ssize_t>(sizeof f)) throw std::runtime_error("a run died");
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return f;
}

std::size_t count_exact(const fs::path& dir, std::size_t n, const std::string& data) {
  std::size_t good = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::ifstream in(dir / ("f" + std::to_string(i)), std::ios::binary);
    const std::string got{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    good += got == data;
  }
  return good;
}

int free_port() {
  for (int port = 20000 + static_cast<int>(::getpid() % 20000);; port = 20000 + (port + 7919) % 40000) {
    const std::string probe = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(port) + "' 2>/dev/null";
    if (std::system(probe.c_str()) != 0) return port;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 9000;
  const std::size_t size = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 65536;
  const std::string rate = argc > 3 ? argv[3] : "16k";
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 2;
  const std::string only = argc > 5 ? argv[5] : "";  // one loop, run in this process (for a profiler)

  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  if (2 * n + 64 > lim.rlim_cur) {
    std::fprintf(stderr, "%zu transfers need %zu descriptors; the limit is %llu\n", n, 2 * n + 64,
                 static_cast<unsigned long long>(lim.rlim_cur));
    return 2;
  }

  const fs::path root = fs::path("/var/tmp") / ("backoff-concurrent-" + std::to_string(::getpid()));
  fs::create_directories(root / "www" / "slow");
  fs::create_directories(root / "tmp");
  const std::string data = backoff::testing::pseudo_random_bytes(size, 7);
  std::ofstream(root / "www" / "slow" / "f.bin", std::ios::binary) << data;
  const int port = free_port();
  std::ofstream(root / "nginx.conf")
      << "daemon off; master_process off; worker_processes 1; user root;\n"
      << "worker_rlimit_nofile " << lim.rlim_cur << ";\n"
      << "error_log " << (root / "error.log").string() << " warn; pid " << (root / "nginx.pid").string() << ";\n"
      << "events { worker_connections " << 2 * n + 512 << "; }\n"
      << "http { access_log off; client_body_temp_path " << (root / "tmp").string() << ";\n"
      << "  open_file_cache max=16; keepalive_requests 100000;\n"
      << "  server { listen 127.0.0.1:" << port << " backlog=16384; root " << (root / "www").string() << ";\n"
      << "    location /slow/ { limit_rate " << rate << "; } } }\n";
  const pid_t nginx = ::fork();
  if (nginx == 0) {
    ::execl("/usr/sbin/nginx", "nginx", "-p", (root.string() + "/").c_str(), "-c", (root / "nginx.conf").c_str(),
            static_cast<char*>(nullptr));
    ::_exit(98);
  }
  const std::string probe = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(port) + "' 2>/dev/null";
  for (int i = 0; i < 200 && std::system(probe.c_str()) != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));

  std::vector<std::string> urls;
  for (std::size_t i = 0; i < n; ++i)
    urls.push_back("http://127.0.0.1:" + std::to_string(port) + "/slow/f.bin?n=" + std::to_string(i));

  const double mib = static_cast<double>(n * size) / (1 << 20);
  figures sum[3];
  std::size_t bad[3] = {0, 0, 0};
  std::printf("%zu transfers of %zu bytes at %s/s each (%.0f MiB)\n", n, size, rate.c_str(), mib);
  std::printf("%-5s %-8s %12s %12s %10s %8s %6s\n", "round", "loop", "KiB/transfer", "CPU ms/MiB", "CPU s", "wall s", "exact");
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < 3; ++k) {  // rotate which goes first
      const loop which = static_cast<loop>((k + r) % 3);
      if (!only.empty() && only != name_of(which)) continue;
      const fs::path dir = root / name_of(which);
      const figures f = measure(which, urls, dir, size, !only.empty());
      const std::size_t exact = count_exact(dir, n, data);
      const auto w = static_cast<std::size_t>(which);
      bad[w] += n - exact;
      sum[w].peak_kib += f.peak_kib - f.base_kib;
      sum[w].cpu_s += f.cpu_s;
      sum[w].wall_s += f.wall_s;
      std::printf("%-5d %-8s %12.2f %12.2f %10.2f %8.2f %6zu\n", r + 1, name_of(which),
                  (f.peak_kib - f.base_kib) / static_cast<double>(n), f.cpu_s * 1000 / mib, f.cpu_s, f.wall_s, exact);
      fs::remove_all(dir);
    }
  }
  ::kill(nginx, SIGTERM);
  ::waitpid(nginx, nullptr, 0);
  {
    std::ifstream log(root / "error.log");
    int shown = 0;
    for (std::string line; std::getline(log, line) && shown < 5; ++shown) std::fprintf(stderr, "nginx: %s\n", line.c_str());
  }
  fs::remove_all(root);
  const figures &b = sum[2], &plain = sum[0], &durable = sum[1];
  std::printf("backoff/bare:    memory per transfer %.3f, CPU per MiB %.3f, wall %.3f\n", b.peak_kib / plain.peak_kib,
              b.cpu_s / plain.cpu_s, b.wall_s / plain.wall_s);
  std::printf("backoff/durable: memory per transfer %.3f, CPU per MiB %.3f, wall %.3f\n", b.peak_kib / durable.peak_kib,
              b.cpu_s / durable.cpu_s, b.wall_s / durable.wall_s);
  std::printf("files not byte-exact: backoff %zu, bare %zu, durable %zu\n", bad[2], bad[0], bad[1]);
  return bad[2] == 0 ? 0 : 1;
}
