// SPDX-License-Identifier: BSL-1.0
// Mutant schemata (tools/mutation/schema.py): every sampled mutant is compiled
// into one build, each behind `backoff_mutant_on<ID>()`, and a run turns one on
// with BACKOFF_MUTANT=ID. Force-included (-include) into every file of that
// build only; the project's own builds never see it.
//
// A mutant in a constant expression cannot be switched at run time: the throw
// makes such a use fail to compile, so that mutant is built the classic way.
#pragma once

bool backoff_mutant_active(unsigned id) noexcept;
bool backoff_mutant_name_test() noexcept;

// Names the test this process runs (from ctest's --gtest_filter), in the
// environment, so that the processes it starts record under its name too.
inline const bool backoff_mutant_named = backoff_mutant_name_test();

template <unsigned Id>
constexpr bool backoff_mutant_on() {
  if (__builtin_is_constant_evaluated()) throw "a mutant in a constant expression";
  return backoff_mutant_active(Id);
}
