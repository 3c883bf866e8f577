// SPDX-License-Identifier: BSL-1.0
// HTTP benchmarks: small GETs over keep-alive on loopback against the fault
// server, with no failures.
//   BM_CurlDirect     plain libcurl: one easy handle, curl_easy_perform per request
//   BM_CurlRetrying   the same requests through backoff::curl::client
// The ratio of the two is the client's overhead.
#include <benchmark/benchmark.h>
#include <curl/curl.h>

#include <string>

#include "backoff/curl/client.hpp"
#include "backoff/stop.hpp"
#include "fault_server.hpp"

namespace {

backoff::testing::fault_server& server() {
  static backoff::testing::fault_server s;
  static const bool once = [] {
    s.add_file("/small.json", std::string(256, 'x'));
    return true;
  }();
  (void)once;
  return s;
}

std::size_t sink(char*, std::size_t s, std::size_t n, void* user) {
  *static_cast<std::size_t*>(user) += s * n;
  return s * n;
}

void BM_CurlDirect(benchmark::State& state) {
  const std::string url = server().url("/small.json");
  CURL* easy = curl_easy_init();
  std::size_t bytes = 0;
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &bytes);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  for (auto _ : state) {
    if (curl_easy_perform(easy) != CURLE_OK) state.SkipWithError("request failed");
  }
  curl_easy_cleanup(easy);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CurlDirect)->UseRealTime();

void BM_CurlRetrying(benchmark::State& state) {
  const std::string url = server().url("/small.json");
  backoff::curl::client http({.policy = {.stop = backoff::stop::after_attempts(3)}});
  const backoff::curl::request rq{.url = url};
  for (auto _ : state) {
    if (!http.perform(rq).ok()) state.SkipWithError("request failed");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CurlRetrying)->UseRealTime();

}  // namespace
