// SPDX-License-Identifier: BSL-1.0
// backoff/random.hpp — random numbers for jitter: a fast seedable generator and a
// type-erased reference to any UniformRandomBitGenerator.
//
//   backoff::fast_rng rng{42};                       // same seed, same delays
//   auto d = backoff::uniform_duration(rng, 0ms, 1s);  // uniform in [0, 1 s]
//   backoff::random_ref ref{rng};                     // pass any URBG without templates
//
// The library draws its own integers from raw 64-bit words instead of using
// std::uniform_int_distribution, whose output differs between standard libraries:
// a seed then reproduces the exact same delays everywhere.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <random>
#include <type_traits>

namespace backoff {

// xoshiro256++ (Blackman & Vigna, 2019), seeded through splitmix64. Not for
// cryptography; about 1 ns per draw, 32 bytes of state.
class fast_rng {
 public:
  using result_type = std::uint64_t;

  explicit constexpr fast_rng(std::uint64_t seed = 0x853c49e6748fea9bULL) noexcept { this->seed(seed); }

  constexpr void seed(std::uint64_t seed) noexcept {
    for (auto& word : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      word = z ^ (z >> 31);
    }
  }

  static constexpr result_type min() noexcept { return 0; }
  static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

  constexpr result_type operator()() noexcept {
    const std::uint64_t result = rotl(s_[0] + s_[3], 23) + s_[0];
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4]{};
};

namespace detail {

template <class G>
constexpr bool full_64_bit_range =
    std::is_same_v<typename std::remove_cvref_t<G>::result_type, std::uint64_t> &&
    std::remove_cvref_t<G>::min() == 0 &&
    std::remove_cvref_t<G>::max() == std::numeric_limits<std::uint64_t>::max();

// One uniformly distributed 64-bit word from any URBG.
template <class G>
std::uint64_t bits64(G& g) {
  if constexpr (full_64_bit_range<G>) {
    return g();
  } else {
    return std::uniform_int_distribution<std::uint64_t>{}(g);
  }
}

}  // namespace detail

// Uniform integer in [0, bound], both ends included. Uses the high half of a
// 128-bit product (Lemire); the bias is below 2^-64 per value and needs no loop.
template <class G>
std::uint64_t uniform_u64(G& g, std::uint64_t bound) {
  if (bound == std::numeric_limits<std::uint64_t>::max()) return detail::bits64(g);
  __extension__ using u128 = unsigned __int128;
  const u128 product = static_cast<u128>(detail::bits64(g)) * (bound + 1);
  return static_cast<std::uint64_t>(product >> 64);
}

// Uniform double in [0, 1) with 53 random bits.
template <class G>
double uniform_unit(G& g) {
  return static_cast<double>(detail::bits64(g) >> 11) * 0x1.0p-53;
}

// Uniform duration in [lo, hi] (nanosecond resolution, both ends included).
// Requires lo <= hi.
template <class G>
std::chrono::nanoseconds uniform_duration(G& g, std::chrono::nanoseconds lo, std::chrono::nanoseconds hi) {
  const auto span = static_cast<std::uint64_t>(hi.count()) - static_cast<std::uint64_t>(lo.count());
  return std::chrono::nanoseconds{static_cast<std::int64_t>(static_cast<std::uint64_t>(lo.count()) + uniform_u64(g, span))};
}

// A non-owning reference to any UniformRandomBitGenerator, in the manner of
// absl::BitGenRef. Cheap to copy; the referenced generator must outlive it.
// A default-constructed random_ref draws from a per-thread fast_rng seeded from
// std::random_device.
class random_ref {
 public:
  using result_type = std::uint64_t;

  random_ref() noexcept = default;

  template <class G>
    requires(!std::is_same_v<std::remove_cvref_t<G>, random_ref> &&
             std::uniform_random_bit_generator<std::remove_cvref_t<G>>)
  random_ref(G& g) noexcept  // NOLINT(google-explicit-constructor): a reference wrapper
      : target_(&g), draw_(&invoke<G>) {}

  static constexpr result_type min() noexcept { return 0; }
  static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

  result_type operator()() { return draw_ ? draw_(target_) : thread_default()(); }

  bool is_default() const noexcept { return draw_ == nullptr; }

  // The generator a default random_ref uses on this thread.
  static fast_rng& thread_default() {
    thread_local fast_rng rng{seed_from_device()};
    return rng;
  }

 private:
  template <class G>
  static result_type invoke(void* target) {
    return detail::bits64(*static_cast<G*>(target));
  }

  static std::uint64_t seed_from_device() {
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
  }

  void* target_ = nullptr;
  result_type (*draw_)(void*) = nullptr;
};

}  // namespace backoff
