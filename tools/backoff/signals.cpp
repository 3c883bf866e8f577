// SPDX-License-Identifier: BSL-1.0
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <thread>

#include "cli.hpp"

namespace backoff::cli {

namespace {
std::atomic<int> g_child{0};
std::atomic<int> g_signal{0};
std::atomic<bool> g_forwarded{false};  // a signal was passed on to a running command
std::thread g_thread;

sigset_t watched() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);   // the terminal went away: the child must not be left behind
  sigaddset(&set, SIGQUIT);
  sigaddset(&set, SIGUSR2);  // private: tells the watcher to quit
  return set;
}
}  // namespace

// SIGINT, SIGTERM, SIGHUP and SIGQUIT are blocked in every thread and received by one watcher
// thread with sigwait, because std::stop_source::request_stop is not
// async-signal-safe. Children unblock them before exec (see run.cpp).
signal_watch::signal_watch() {
  const sigset_t set = watched();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  g_thread = std::thread([src = source_]() mutable {
    const sigset_t s = watched();
    for (;;) {
      int sig = 0;
      if (sigwait(&s, &sig) != 0) continue;
      if (sig == SIGUSR2) return;
      g_signal.store(sig);
      if (const int child = g_child.load(); child > 0) {
        g_forwarded.store(true);
        ::kill(-child, sig);  // its whole process group
      }
      src.request_stop();
    }
  });
}

signal_watch::~signal_watch() {
  pthread_kill(g_thread.native_handle(), SIGUSR2);
  g_thread.join();
}

int signal_watch::signal() const noexcept { return g_signal.load(); }
// A signal that came between fork and this call found no child to pass on
// to: pass it on now. (The watcher stores the signal, then reads the child;
// this stores the child, then reads the signal: one of them forwards it.)
void signal_watch::set_child(int pid) noexcept {
  g_child.store(pid);
  if (pid > 0)
    if (const int sig = g_signal.load(); sig != 0) {
      g_forwarded.store(true);
      ::kill(-pid, sig);
    }
}

bool signal_watch::forwarded() const noexcept { return g_forwarded.load(); }

}  // namespace backoff::cli
