// SPDX-License-Identifier: BSL-1.0
// testing/sha256.hpp — the SHA-256 of a byte string, as bytes or hex (OpenSSL), for the
// tests and the demo that check downloads against their source.
#pragma once

#include <openssl/evp.h>

#include <string>

namespace backoff::testing {

// The 32 bytes of the digest.
inline std::string sha256_bytes(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(md), n);
}

inline std::string sha256_hex(const std::string& data) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (const char c : sha256_bytes(data)) {
    out += hex[static_cast<unsigned char>(c) >> 4];
    out += hex[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

}  // namespace backoff::testing
