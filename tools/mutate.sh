#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# make mutate: mutation testing. Applies each mutant of tests/mutants.txt, one
# at a time, to a scratch copy of the tree (build/mutate/src), rebuilds the
# test executable it names (ccache keeps this short), runs it, and prints a
# table and the score. A mutant is killed when the tests fail.
#   ONLY=regex   run only the mutants whose id matches
#   MUTANTS=file another list
set -euo pipefail
cd "$(dirname "$0")/.."
list=${MUTANTS:-tests/mutants.txt}
only=${ONLY:-.}
work=build/mutate
mkdir -p "$work/src"
# A scratch copy of the sources (not build/, not .git). Only files whose
# content changed are copied, with a fresh time: a file restored after a
# mutant keeps its newer time, so its objects (built from the mutant by an
# earlier run) are rebuilt; tar's original times would leave them stale.
rm -rf "$work/stage"
mkdir -p "$work/stage"
tar --exclude=./build --exclude=./.git -cf - . | tar -C "$work/stage" -xf -
(cd "$work/stage" && find . -type f) | while IFS= read -r f; do
  if ! cmp -s "$work/stage/$f" "$work/src/$f"; then
    mkdir -p "$(dirname "$work/src/$f")"
    cp "$work/stage/$f" "$work/src/$f"
  fi
done
rm -rf "$work/stage"
if [[ ! -f $work/build/build.ninja ]]; then
  cmake -G Ninja -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -S "$work/src" -B "$work/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DBACKOFF_BUILD_BENCH=OFF -DBACKOFF_BUILD_EXAMPLES=OFF -DBACKOFF_INSTALL=OFF > "$work/configure.log"
fi

# Splits the list into records of id|file|find|replace|tests|equivalent|breaks
# (find and replace may hold any character but a newline).
records=$(awk '
  /^#/ { next }
  /^id: /      { id = substr($0, 5); equiv = "" }
  /^equivalent: / { equiv = substr($0, 13) }
  /^file: /    { file = substr($0, 7) }
  /^find: /    { find = substr($0, 7) }
  /^replace: / { repl = substr($0, 10) }
  /^tests: /   { tests = substr($0, 8) }
  /^breaks: /  { printf "%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\n", id, file, find, repl, tests, equiv, substr($0, 9) }
' "$list")

total=0 killed=0 survived=0 broken=0 equivalent=0 stillborn=0
table=""
while IFS=$'\x1f' read -r id file find repl tests equiv breaks; do
  [[ $id =~ $only ]] || continue
  total=$((total + 1))
  cp "$file" "$work/src/$file"
  # <NL> in find or replace stands for a line break (a mutant may need two lines to be unique).
  if ! FIND="${find//<NL>/$'\n'}" REPL="${repl//<NL>/$'\n'}" \
      perl -0pi -e '$n = s/\Q$ENV{FIND}\E/$ENV{REPL}/; END { exit($n ? 0 : 3) }' "$work/src/$file"; then
    result="not applied (text not found)"
    broken=$((broken + 1))
  else
    # `tests` may name several executables (code that the CLI's tests reach
    # too); the mutant is killed when any of them fails.
    targets=$tests
    [[ " $tests " == *" backoff_cli_tests "* ]] && targets+=" backoff_cli"
    passed=1
    if ! cmake --build "$work/build" --target $targets > "$work/$id.build.log" 2>&1; then
      # A mutant that does not compile tests nothing: it leaves the score.
      result="does not compile"
      stillborn=$((stillborn + 1))
      passed=""
    else
      : > "$work/$id.test.log"
      for t in $tests; do
        # Not the list on standard input: a test (or a command it runs) may read it.
        timeout 900 "$work/build/bin/$t" --gtest_brief=1 < /dev/null >> "$work/$id.test.log" 2>&1 || { passed=0; break; }
      done
    fi
    if [[ -z $passed ]]; then
      :
    elif ((passed == 1)); then
      if [[ -n $equiv ]]; then
        result="equivalent (survived)"
        equivalent=$((equivalent + 1))
      else
        result="SURVIVED"
        survived=$((survived + 1))
      fi
    else
      result="killed ($(grep -c '^\[  FAILED  \] [A-Za-z]' "$work/$id.test.log" || true) failing tests)"
      [[ -n $equiv ]] && result+=" though listed as equivalent"
      killed=$((killed + 1))
    fi
  fi
  cp "$file" "$work/src/$file"
  printf '%-28s %-34s %s\n' "$id" "$result" "$breaks${equiv:+ (equivalent: $equiv)}"
  table+="| $id | $result | $breaks${equiv:+ (equivalent: $equiv)} |"$'\n'
done <<< "$records"

# No final rebuild: each restored file was copied back with a fresh time, so
# the next build recompiles whatever a mutant left behind.
# Equivalent mutants (no test can tell them from the original; the list says
# why) are left out of the score, like mutants that no longer apply.
counted=$((total - broken - equivalent - stillborn))
score=0
((counted > 0)) && score=$((100 * killed / counted))
printf '\n| mutant | result | what it breaks |\n|---|---|---|\n%s' "$table" > "$work/table.md"
echo
echo "mutants: $total, killed: $killed, survived: $survived, equivalent: $equivalent, not applied: $broken, not compiling: $stillborn; score $score % of $counted (table in $work/table.md)"
