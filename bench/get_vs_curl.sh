#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# `backoff get` against `curl -o` on one large file served by nginx on loopback:
# wall time of each, interleaved in one run, and the ratio. (`make bench-get`)
#
#   bench/get_vs_curl.sh [path/to/backoff]        SIZE_MB=1024 ROUNDS=3 by default
#
# Each round downloads to a new file and then over the file of the round before
# (a replace), once with each tool, alternating which goes first. Dirty pages
# are flushed (sync) between runs, outside the timings, so that neither tool
# pays for the other's writeback. backoff fsyncs before its rename; curl does not.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-build/bin/backoff}")
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-3}

root=$(mktemp -d /var/tmp/backoff-bench.XXXXXX)
nginx_pid=""
cleanup() {
  if [[ -n $nginx_pid ]]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
  rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$root/www/bulk" "$root/tmp" "$root/out"
head -c "${SIZE_MB}M" /dev/urandom > "$root/www/bulk/big.bin"
source bench/nginx.sh
port=$(bench_port)
sed -e "s|@PORT@|$port|g" -e "s|@ROOT@|$root|g" tests/nginx/nginx.conf.in > "$root/nginx.conf"
bench_nginx "$root" "$root/nginx.conf" "$port"
url="http://127.0.0.1:$port/bulk/big.bin"
cat "$root/www/bulk/big.bin" > /dev/null  # served from the page cache for both

now() { date +%s.%N; }
run_curl() { curl -sS -o "$1" "$url"; }
run_backoff() { "$BIN" get -q -o "$1" "$url"; }
one() {  # one TOOL FILE → seconds
  sync
  local t0 t1
  t0=$(now)
  "run_$1" "$2"
  t1=$(now)
  cmp -s "$root/www/bulk/big.bin" "$2" || { echo "$1: $2 differs from the source" >&2; exit 1; }
  echo "$t1 - $t0" | bc -l
}

declare -A total=([curl_new]=0 [backoff_new]=0 [curl_replace]=0 [backoff_replace]=0)
printf "%-6s %-8s %10s %10s\n" round case curl_s backoff_s
for r in $(seq "$ROUNDS"); do
  rm -f "$root/out/"*
  order=(curl backoff)
  (( r % 2 == 0 )) && order=(backoff curl)
  declare -A t=()
  for tool in "${order[@]}"; do t[${tool}_new]=$(one "$tool" "$root/out/$tool.bin"); done
  for tool in "${order[@]}"; do t[${tool}_replace]=$(one "$tool" "$root/out/$tool.bin"); done
  for c in new replace; do
    printf "%-6s %-8s %10.3f %10.3f\n" "$r" "$c" "${t[curl_$c]}" "${t[backoff_$c]}"
    total[curl_$c]=$(echo "${total[curl_$c]} + ${t[curl_$c]}" | bc -l)
    total[backoff_$c]=$(echo "${total[backoff_$c]} + ${t[backoff_$c]}" | bc -l)
  done
done
for c in new replace; do
  printf "%s MiB, %s: backoff/curl wall-time ratio %.3f (sum of %s rounds: curl %.2f s, backoff %.2f s)\n" \
    "$SIZE_MB" "$c" "$(echo "${total[backoff_$c]} / ${total[curl_$c]}" | bc -l)" "$ROUNDS" "${total[curl_$c]}" "${total[backoff_$c]}"
done
