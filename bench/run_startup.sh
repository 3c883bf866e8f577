#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# `backoff run -- true` against the shell retry loop it replaces and against
# `true` alone, and with --metrics (a textfile written, fsync'ed and renamed at
# exit): wall time per call, rounds interleaved, and the
# ratios. Each figure is the median of N calls timed one by one. (`make bench-run`)
#
#   bench/run_startup.sh [path/to/backoff]      N=300 ROUNDS=3 by default
set -euo pipefail
BIN=$(realpath "${1:-build/bin/backoff}")
N=${N:-300}
ROUNDS=${ROUNDS:-3}
# One call's wall time in microseconds, from bash's own clock (no fork).
one() {
  local t0=$EPOCHREALTIME t1
  "$@"
  t1=$EPOCHREALTIME
  echo $(((${t1/./} - ${t0/./})))
}
per_call() {  # per_call CMD… → median microseconds per call over N calls
  local i
  for ((i = 0; i < N; i++)); do one "$@"; done | sort -n | sed -n "$((N / 2 + 1))p"
}
loop() { bash -c 'for a in 1 2 3; do true && break; sleep 1; done'; }
metrics_dir=$(mktemp -d)
trap 'rm -rf "$metrics_dir"' EXIT
declare -A total=([backoff]=0 [loop]=0 [true]=0 [metrics]=0)
printf "%-6s %12s %12s %12s %12s\n" round backoff_us loop_us true_us metrics_us
for r in $(seq "$ROUNDS"); do
  b=$(per_call "$BIN" run -q -- true)
  l=$(per_call loop)
  t=$(per_call /bin/true)
  m=$(per_call "$BIN" run -q --metrics "$metrics_dir/backoff.prom" -- true)
  printf "%-6s %12s %12s %12s %12s\n" "$r" "$b" "$l" "$t" "$m"
  total[backoff]=$((total[backoff] + b)); total[loop]=$((total[loop] + l)); total[true]=$((total[true] + t))
  total[metrics]=$((total[metrics] + m))
done
# --metrics in pairs: each call with it beside one without, the order
# alternating (ABBA: what runs second is not favoured), and the median of the
# N differences (drift between rounds cancels out).
pairs() {
  local i b m
  for ((i = 0; i < N; i++)); do
    if ((i % 2 == 0)); then
      b=$(one "$BIN" run -q -- true)
      m=$(one "$BIN" run -q --metrics "$metrics_dir/backoff.prom" -- true)
    else
      m=$(one "$BIN" run -q --metrics "$metrics_dir/backoff.prom" -- true)
      b=$(one "$BIN" run -q -- true)
    fi
    echo $((m - b))
  done | sort -n | sed -n "$((N / 2 + 1))p"
}
echo "--metrics costs $(pairs) us per run (median of $N paired differences; goal <= 1000)"
echo "backoff run / bash retry loop: $(echo "scale=2; ${total[backoff]} / ${total[loop]}" | bc)" \
     "(goal <= 2); backoff run / true: $(echo "scale=2; ${total[backoff]} / ${total[true]}" | bc)"
