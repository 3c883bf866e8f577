// SPDX-License-Identifier: BSL-1.0
// --metrics FILE, --metrics-name NAME, --push-metrics URL (run and get): what
// a run did, as Prometheus gauges — for node_exporter's textfile collector
// (a *.prom file, replaced atomically) or a Pushgateway (a PUT of the group
// job="backoff", name=NAME). docs/metrics.md lists the families.
//
//   metrics_options m;               // from the flags
//   m.check("run");                  // a bad path or URL fails before anything runs
//   ... the run, its --report document in `doc` ...
//   write_metrics(m, summarize("run", doc, exit_status, started, ended));
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace backoff::cli {

struct metrics_options {
  std::string file, name, push;
  void add_to(CLI::App& cmd);
  bool wanted() const { return !file.empty() || !push.empty(); }
  // Throws usage_error naming the flag: a directory that cannot take the
  // file (or its lock), a push URL that is not http://HOST[:PORT][/PATH].
  // `command` is the default name.
  void check(const std::string& command);
};

// What one run did, from its --report document (docs/reports.md).
struct run_summary {
  std::string name;
  double ended_unix = 0, duration_s = 0, wait_s = 0;
  long long attempts = 0, exit_code = 0;
  std::optional<long long> bytes;                    // get
  std::string stop_reason;                           // the document's "reason" (get, several URLs: the worst)
  std::map<std::string, long long> failed_by_reason;  // "exit_3", "signal_15", "timeout", "http_503", "connect_failed", …
};
run_summary summarize(const std::string& name, const nlohmann::json& doc, int exit_code,
                      std::chrono::system_clock::time_point started, std::chrono::system_clock::time_point ended);

// The text exposition of `s`'s series. `last_success`: the time to report
// when the run failed (carried over), if any.
std::string render_metrics(const run_summary& s, std::optional<double> last_success);

// Merges `s` into options.file (the other names' series kept, under a lock,
// written to a temporary file in the same directory, fsync'ed and renamed)
// and pushes it to options.push. Returns what failed, for a warning (the
// run's own exit status is not changed by a metrics failure), or "".
std::string write_metrics(const metrics_options& o, const run_summary& s);
// At the end of `command`'s run: summarizes `doc`, writes and pushes when
// asked, and prints a warning (to stderr) for what failed.
void finish_metrics(const metrics_options& o, const nlohmann::json& doc, int exit_code,
                    std::chrono::system_clock::time_point started);

// Exposition-format helpers, public for the tests.
std::string escape_label(const std::string& v);
// The value of `family{name="NAME",…}` in a text exposition, if present.
std::optional<double> find_sample(const std::string& text, const std::string& family, const std::string& name);

}  // namespace backoff::cli
