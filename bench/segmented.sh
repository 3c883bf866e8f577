#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# `backoff get` against aria2c and curl where a server caps each connection
# (nginx limit_rate), and where the file is replaced while it downloads.
# (`make bench-segmented`; aria2 comes from Debian's package, installed by
# tools/install-deps.sh.)
#
#   bench/segmented.sh [path/to/backoff]     SIZE_MB=128 RATE=4m ROUNDS=2 by default
#
# 1. Speed: one SIZE_MB file from a location capped at RATE per connection,
#    interleaved rounds of backoff get (defaults), aria2c -x 8 -s 8 -k 1M and
#    curl; wall time, each file checked with cmp. Ratios are against aria2 in
#    the same run.
# 2. Replaced mid-download: a file of the same size (new content and mtime)
#    is renamed over the served one SWAP_AFTER (0.15 s) after each tool starts;
#    what each saved is compared with both versions: "v1", "v2", or "SPLICE"
#    (neither). nginx keeps serving the old file on a request already running,
#    so only a request that starts after the swap sees the new version.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-build/bin/backoff}")
SIZE_MB=${SIZE_MB:-128}
RATE=${RATE:-4m}
ROUNDS=${ROUNDS:-2}
SWAP_AFTER=${SWAP_AFTER:-0.15}
command -v aria2c > /dev/null || { echo "aria2c is not installed (tools/install-deps.sh installs aria2)" >&2; exit 1; }

root=$(mktemp -d /var/tmp/backoff-seg.XXXXXX)
nginx_pid=""
cleanup() {
  if [[ -n $nginx_pid ]]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
  rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$root/www/capped" "$root/tmp" "$root/out"
head -c "${SIZE_MB}M" /dev/urandom > "$root/www/capped/big.bin"
source bench/nginx.sh
port=$(bench_port)
cat > "$root/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; user root;
error_log $root/error.log warn; pid $root/nginx.pid;
events { worker_connections 256; }
http {
  access_log off; default_type application/octet-stream;
  client_body_temp_path $root/tmp; proxy_temp_path $root/tmp; fastcgi_temp_path $root/tmp;
  uwsgi_temp_path $root/tmp; scgi_temp_path $root/tmp;
  server { listen 127.0.0.1:$port; root $root/www; location /capped/ { limit_rate $RATE; } }
}
CONF
bench_nginx "$root" "$root/nginx.conf" "$port"
base="http://127.0.0.1:$port/capped"

now() { date +%s.%N; }
run_backoff() { "$BIN" get -q -o "$2" "$1"; }
run_aria2() {
  aria2c -q -x 8 -s 8 -k 1M -m 0 --retry-wait=1 --file-allocation=none --allow-overwrite=true \
    --auto-file-renaming=false -d "$(dirname "$2")" -o "$(basename "$2")" "$1"
}
run_curl() { curl -sS -o "$2" "$1"; }
tools=(backoff aria2 curl)

echo "1. ${SIZE_MB} MiB, nginx limit_rate $RATE per connection"
declare -A sum=()
for t in "${tools[@]}"; do sum[$t]=0; done
printf "%-6s %10s %10s %10s\n" round backoff_s aria2_s curl_s
for r in $(seq "$ROUNDS"); do
  order=("${tools[@]}")
  (( r % 2 == 0 )) && order=(curl aria2 backoff)
  declare -A t=()
  for tool in "${order[@]}"; do
    rm -f "$root/out/$tool.bin"
    sync
    t0=$(now)
    "run_$tool" "$base/big.bin" "$root/out/$tool.bin"
    t1=$(now)
    cmp -s "$root/www/capped/big.bin" "$root/out/$tool.bin" || { echo "$tool: the file differs from the source" >&2; exit 1; }
    t[$tool]=$(echo "$t1 - $t0" | bc -l)
    sum[$tool]=$(echo "${sum[$tool]} + ${t[$tool]}" | bc -l)
  done
  printf "%-6s %10.2f %10.2f %10.2f\n" "$r" "${t[backoff]}" "${t[aria2]}" "${t[curl]}"
done
printf "%-6s %10.2f %10.2f %10.2f\n" mean "$(echo "${sum[backoff]} / $ROUNDS" | bc -l)" \
  "$(echo "${sum[aria2]} / $ROUNDS" | bc -l)" "$(echo "${sum[curl]} / $ROUNDS" | bc -l)"
printf "backoff/aria2 wall: %.2f×   curl/aria2: %.2f×\n" "$(echo "${sum[backoff]} / ${sum[aria2]}" | bc -l)" \
  "$(echo "${sum[curl]} / ${sum[aria2]}" | bc -l)"

echo
echo "2. a ${SIZE_MB} MiB file replaced by a new version of the same size ${SWAP_AFTER} s into the download"
head -c "${SIZE_MB}M" /dev/urandom > "$root/v1.bin"
head -c "${SIZE_MB}M" /dev/urandom > "$root/v2.bin"
for tool in "${tools[@]}"; do
  cp "$root/v1.bin" "$root/www/capped/swap.bin"
  touch -d '2026-01-01' "$root/www/capped/swap.bin"
  rm -f "$root/out/$tool.swap"
  "run_$tool" "$base/swap.bin" "$root/out/$tool.swap" > /dev/null 2>&1 &
  pid=$!
  sleep "$SWAP_AFTER"
  cp "$root/v2.bin" "$root/www/capped/.swap.new" && mv "$root/www/capped/.swap.new" "$root/www/capped/swap.bin"
  status=0
  wait $pid || status=$?
  if [[ ! -f "$root/out/$tool.swap" ]]; then saved="nothing"
  elif cmp -s "$root/out/$tool.swap" "$root/v1.bin"; then saved="v1"
  elif cmp -s "$root/out/$tool.swap" "$root/v2.bin"; then saved="v2"
  else saved="SPLICE"; fi
  printf "%-8s exit %-3s saved %s\n" "$tool" "$status" "$saved"
done
