// SPDX-License-Identifier: BSL-1.0
// Repr-Digest, Content-Digest and Digest fields from hostile servers.
// Properties: a parsed member's hex is lower-case, of even length and
// survives being written back as base64; strongest() returns only sha-256 or
// sha-512 of the right length.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "backoff/http/digest.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "property violated: %s\n", what);
  std::abort();
}

std::string to_base64(const std::string& hex) {
  std::string bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return backoff::http::base64_encode(bytes);
}

void check(const std::vector<backoff::http::digest>& members) {
  for (const auto& d : members) {
    if (d.algorithm.empty()) fail("a member without an algorithm");
    if (d.hex.empty() || d.hex.size() % 2 != 0) fail("hex of odd or zero length");
    if (d.hex.find_first_not_of("0123456789abcdef") != std::string::npos) fail("hex that is not lower-case hex");
    const auto back = backoff::http::parse_digest_field("x=:" + to_base64(d.hex) + ":");
    if (!back || back->front().hex != d.hex) fail("a digest does not survive being written back");
  }
  if (const auto best = backoff::http::strongest(members)) {
    if (!((best->algorithm == "sha-256" && best->hex.size() == 64) || (best->algorithm == "sha-512" && best->hex.size() == 128)))
      fail("strongest() chose an algorithm it must not");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (const auto d = backoff::http::parse_digest_field(text)) check(*d);
  if (const auto d = backoff::http::parse_legacy_digest(text)) check(*d);
  return 0;
}
