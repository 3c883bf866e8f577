// backoff get: download a URL with retries, Retry-After, resume and atomic output.
#include <iostream>

#include "backoff/curl/client.hpp"
#include "cli.hpp"
#include "progress.hpp"
#include "report.hpp"

namespace backoff::cli {

namespace {
struct get_options {
  policy_flags policy;
  std::string url, output, timeout = "30s", connect_timeout = "10s", max_retry_after = "1h", report;
  std::vector<std::string> headers;
  bool quiet = false;
};

std::string default_output(const std::string& url) {
  std::string path = url;
  if (const auto q = path.find_first_of("?#"); q != std::string::npos) path.resize(q);
  if (const auto scheme = path.find("://"); scheme != std::string::npos) path = path.substr(scheme + 3);
  const auto slash = path.find('/');
  if (slash == std::string::npos) return "index.html";
  const auto last = path.substr(path.rfind('/') + 1);
  return last.empty() ? "index.html" : last;
}

std::string event_text(const curl::attempt_log& a, std::uint32_t max_attempts) {
  std::string what = a.status ? "HTTP " + std::to_string(a.status) : std::string(http::to_string(a.failure));
  if (!a.error.empty() && a.status == 0) what += " (" + a.error + ")";
  std::string line = "backoff: attempt " + std::to_string(a.number) + " failed: " + what;
  if (a.delay.count() > 0) {
    line += ". Will retry in " + format_duration(a.delay);
    if (a.hint) line += " (server asked for " + format_duration(*a.hint) + ")";
    line += "." + retries_left(max_attempts, a.number);
  }
  return line;
}
}  // namespace

subcommand get_command(CLI::App& app) {
  auto go = std::make_shared<get_options>();
  auto* cmd = app.add_subcommand("get", "Download a URL, retrying failures and resuming broken transfers");
  go->policy.add_to(*cmd);
  cmd->add_option("url", go->url, "The URL to download")->required();
  cmd->add_option("-o,--output", go->output, "Where to write it (default: the URL's file name)");
  cmd->add_option("-H,--header", go->headers, "An extra request header, 'Name: value' (repeatable)");
  cmd->add_option("--timeout", go->timeout, "Time limit for each attempt (default 30s)");
  cmd->add_option("--connect-timeout", go->connect_timeout, "Time limit for connecting (default 10s)");
  cmd->add_option("--max-retry-after", go->max_retry_after, "Longest Retry-After to obey (default 1h)");
  cmd->add_option("--report", go->report, "Write the attempt history as JSON to FILE");
  cmd->add_flag("-q,--quiet", go->quiet, "No progress or retry messages");
  return {cmd, [go]() -> int {
    const policy p = go->policy.build();
    curl::client_options o{.policy = p};
    o.attempt_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(parse_duration(go->timeout, "--timeout"));
    o.connect_timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(parse_duration(go->connect_timeout, "--connect-timeout"));
    o.hints.max_hint = parse_duration(go->max_retry_after, "--max-retry-after");
    if (go->url.find("://") == std::string::npos)
      throw usage_error("url: '" + go->url + "' has no scheme (expected http:// or https://)");
    std::vector<http::header> headers;
    for (const auto& h : go->headers) {
      const auto colon = h.find(':');
      if (colon == std::string::npos || colon == 0 || h.find_first_of(" \t") < colon)
        throw usage_error("--header: '" + h + "' is not 'Name: value'");
      std::string value = h.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      headers.emplace_back(h.substr(0, colon), value);
    }
    const std::string output = go->output.empty() ? default_output(go->url) : go->output;

    signal_watch signals;
    o.stop_token = signals.token();
    fast_rng seeded{go->policy.seed.value_or(0)};
    if (go->policy.seed) o.rng = seeded;
    const auto limit = go->policy.time_limit();
    if (limit) o.deadline = std::chrono::steady_clock::now() + *limit;

    progress_bar bar(output, !go->quiet);
    const std::uint32_t max_attempts = p.stop.max_attempts();
    o.on_progress = [&](const curl::progress& pr) { bar.update(pr.attempt, pr.bytes, pr.total); };
    o.on_attempt = [&](const curl::attempt_log& a) {
      if (a.status >= 200 && a.status < 300 && a.failure == http::transport::none) return;
      bar.event(event_text(a, max_attempts));
    };

    curl::client http(o);
    const auto r = http.download(go->url, output, headers);
    bar.finish();

    if (!go->report.empty()) {
      nlohmann::json attempts = nlohmann::json::array();
      for (const auto& a : r.attempts)
        attempts.push_back({{"attempt", a.number},
                            {"start_s", seconds(a.start)},
                            {"duration_s", seconds(a.took)},
                            {"http_status", a.status ? nlohmann::json(a.status) : nlohmann::json()},
                            {"transport_error", a.failure == http::transport::none ? nlohmann::json()
                                                                                   : nlohmann::json(std::string(http::to_string(a.failure)))},
                            {"error", a.error},
                            {"hint_s", a.hint ? nlohmann::json(seconds(*a.hint)) : nlohmann::json()},
                            {"delay_s", seconds(a.delay)},
                            {"bytes", a.bytes}});
      write_report(go->report, {{"url", go->url},
                                {"output", output},
                                {"reason", std::string(to_string(r.reason))},
                                {"bytes", r.bytes},
                                {"resumes", r.resumes},
                                {"restarts", r.restarts},
                                {"attempts", attempts}});
    }

    if (r.ok()) {
      if (!go->quiet)
        std::cerr << "backoff: saved " << output << " (" << human_bytes(static_cast<double>(r.bytes)) << ", "
                  << r.attempts.size() << (r.attempts.size() == 1 ? " attempt" : " attempts") << ")\n";
      return exit_code::ok;
    }
    if (!go->quiet) std::cerr << "backoff: giving up on " << go->url << " (" << to_string(r.reason) << "): " << r.error << "\n";
    if (signals.signal()) return 128 + signals.signal();
    if (r.file_error) return exit_code::local_error;
    if (r.reason == stop_reason::permanent && r.status >= 400) return exit_code::permanent;
    return exit_code::gave_up;
  }};
}

}  // namespace backoff::cli
