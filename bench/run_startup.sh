#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# `backoff run -- true` against the shell retry loop it replaces and against
# `true` alone, and with --metrics (a textfile written, fsync'ed and renamed at
# exit): mean wall time per call over N calls, rounds interleaved, and the
# ratios. (`make bench-run`)
#
#   bench/run_startup.sh [path/to/backoff]      N=300 ROUNDS=3 by default
set -euo pipefail
BIN=$(realpath "${1:-build/bin/backoff}")
N=${N:-300}
ROUNDS=${ROUNDS:-3}
now() { date +%s%N; }
per_call() {  # per_call CMD… → microseconds per call
  local t0 t1
  t0=$(now)
  for ((i = 0; i < N; i++)); do "$@"; done
  t1=$(now)
  echo $(((t1 - t0) / N / 1000))
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
echo "--metrics costs $(((total[metrics] - total[backoff]) / ROUNDS)) us per run (goal <= 1000)"
echo "backoff run / bash retry loop: $(echo "scale=2; ${total[backoff]} / ${total[loop]}" | bc)" \
     "(goal <= 2); backoff run / true: $(echo "scale=2; ${total[backoff]} / ${total[true]}" | bc)"
