// SPDX-License-Identifier: BSL-1.0
// testing/sha256.hpp — the SHA-256 of a byte string as hex (OpenSSL), for the
// tests and the demo that check downloads against their source.
#pragma once

#include <openssl/evp.h>

#include <string>

namespace backoff::testing {

inline std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

}  // namespace backoff::testing
