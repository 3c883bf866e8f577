// SPDX-License-Identifier: BSL-1.0
// backoff/history.hpp — what happened: a bounded record of a loop's attempts
// (why it stopped and how each attempt ended are in backoff/outcome.hpp).
//
//   auto r = backoff::try_retry(policy, fn);
//   if (r.reason == backoff::stop_reason::exhausted)
//     for (const backoff::attempt_record& a : r.history)   // oldest first
//       log(a.number, a.took, a.delay, backoff::to_string(a.outcome));
//
// The history keeps the most recent `history::capacity` attempts inline (no heap)
// and counts all of them, so a loop that retries a million times uses the same
// memory as one that retries twice.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "backoff/outcome.hpp"

namespace backoff {

// One attempt. Times are offsets from the start of the loop, in nanoseconds.
// When nothing in the loop needed the clock before the first attempt (no hooks,
// no time-based stop rule), the first attempt's `start` and `took` are zero.
struct attempt_record {
  std::uint32_t number;           // 1 for the first attempt
  attempt_outcome outcome;
  bool threw;                     // ended by an exception rather than a returned value
  std::chrono::nanoseconds start; // when the attempt began, since the loop began
  std::chrono::nanoseconds took;  // how long the attempt ran
  std::chrono::nanoseconds delay; // the wait chosen after it (0 when none followed)
  std::chrono::nanoseconds hint;  // the wait the server asked for (options::server_hint), or -1 ns for none
};

// The most recent `capacity` attempt records, oldest first, plus a count of all.
class history {
 public:
  static constexpr std::size_t capacity = 32;

  history() noexcept {}  // leaves the record storage uninitialised on purpose

  history(const history& other) noexcept : total_(other.total_) {
    for (std::size_t i = 0; i < other.size(); ++i) fix(i, other);
  }
  history& operator=(const history& other) noexcept {
    if (this != &other) {
      total_ = other.total_;
      for (std::size_t i = 0; i < other.size(); ++i) fix(i, other);
    }
    return *this;
  }

  void push(const attempt_record& r) noexcept {
    records_[total_ % capacity] = r;
    ++total_;
  }
  // The record pushed last (requires !empty()).
  attempt_record& back() noexcept { return records_[(total_ - 1) % capacity]; }
  const attempt_record& back() const noexcept { return records_[(total_ - 1) % capacity]; }

  std::size_t size() const noexcept { return total_ < capacity ? static_cast<std::size_t>(total_) : capacity; }
  bool empty() const noexcept { return total_ == 0; }
  // Attempts ever recorded, including those that no longer fit.
  std::uint64_t total() const noexcept { return total_; }

  // i = 0 is the oldest record still kept.
  const attempt_record& operator[](std::size_t i) const noexcept { return records_[(first() + i) % capacity]; }

  class iterator {
   public:
    using value_type = attempt_record;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(const history* h, std::size_t i) : h_(h), i_(i) {}
    const attempt_record& operator*() const { return (*h_)[i_]; }
    const attempt_record* operator->() const { return &(*h_)[i_]; }
    iterator& operator++() { ++i_; return *this; }
    iterator operator++(int) { auto t = *this; ++i_; return t; }
    bool operator==(const iterator& o) const { return i_ == o.i_; }
   private:
    const history* h_ = nullptr;
    std::size_t i_ = 0;
  };
  iterator begin() const noexcept { return {this, 0}; }
  iterator end() const noexcept { return {this, size()}; }

 private:
  std::uint64_t first() const noexcept { return total_ < capacity ? 0 : total_ % capacity; }
  void fix(std::size_t i, const history& other) noexcept {
    records_[(first() + i) % capacity] = other[i];
  }
  std::uint64_t total_ = 0;
  std::array<attempt_record, capacity> records_;
};

}  // namespace backoff
