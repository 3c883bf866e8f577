#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# The download benchmark matrix (`make bench-matrix`): one SIZE_MB file through
# servers that make downloaders fail in different ways, fetched by `backoff
# get` (defaults), aria2c -x 8 -s 8 -k 1M and curl --retry; each saved file
# is compared with the source. Every location caps each connection at RATE, so
# that connections matter.
#
#   bench/matrix.sh [path/to/backoff]      SIZE_MB=32 RATE=4m CUT_MB=4 by default
#
# Scenarios (nginx from Debian, on 127.0.0.1):
#   capped     limit_rate only
#   cut        through bench/proxy.py, which closes every connection after CUT_MB
#   limitconn  limit_conn 4 per client: a 5th connection gets 503 with Retry-After: 1
#   noranges   max_ranges 0: Range is ignored, every answer is the whole file (200)
#   chunked    sub_filter: no Content-Length, chunked (no ranges either)
#   ratelimit  limit_req 4 r/s (burst 4): above it, 429 with Retry-After: 1
# Columns: wall seconds, the tool's exit status (124: stopped after LIMIT_S),
# requests nginx logged, MiB nginx sent, and what is at the output path:
# "exact", "none", or "DIFFERS" (a partial file, or a wrong one when exit is 0).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-build/bin/backoff}")
SIZE_MB=${SIZE_MB:-32}
RATE=${RATE:-4m}
CUT_MB=${CUT_MB:-4}
LIMIT_S=${LIMIT_S:-60}  # a tool still running after this long is stopped and counted as failed
command -v aria2c > /dev/null || { echo "aria2c is not installed (tools/install-deps.sh installs aria2)" >&2; exit 1; }
command -v python3 > /dev/null || { echo "python3 is not installed (tools/install-deps.sh installs it)" >&2; exit 1; }

root=$(mktemp -d /var/tmp/backoff-matrix.XXXXXX)
nginx_pid="" proxy_pid=""
cleanup() {
  if [[ -n $proxy_pid ]]; then kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; fi
  if [[ -n $nginx_pid ]]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
  rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$root/www" "$root/tmp" "$root/out"
head -c "${SIZE_MB}M" /dev/urandom > "$root/www/big.bin"
source bench/nginx.sh
port=$(bench_port)
cat > "$root/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; user root;
error_log $root/error.log warn; pid $root/nginx.pid;
events { worker_connections 256; }
http {
  log_format bench '\$status \$bytes_sent';
  access_log $root/access.log bench;
  default_type application/octet-stream;
  client_body_temp_path $root/tmp; proxy_temp_path $root/tmp; fastcgi_temp_path $root/tmp;
  uwsgi_temp_path $root/tmp; scgi_temp_path $root/tmp;
  limit_conn_zone \$binary_remote_addr zone=perip:1m;
  limit_req_zone \$binary_remote_addr zone=req:1m rate=4r/s;
  server {
    listen 127.0.0.1:$port;
    limit_rate $RATE;
    location /capped/    { alias $root/www/; }
    location /cut/       { alias $root/www/; }
    location /limitconn/ { alias $root/www/; limit_conn perip 4; limit_conn_status 503; add_header Retry-After 1 always; }
    location /noranges/  { alias $root/www/; max_ranges 0; }
    location /chunked/   { alias $root/www/; sub_filter_types *; sub_filter 'backoff-never-here' 'x'; sub_filter_once off; }
    location /ratelimit/ { alias $root/www/; limit_req zone=req burst=4 nodelay; limit_req_status 429; add_header Retry-After 1 always; }
  }
}
CONF
bench_nginx "$root" "$root/nginx.conf" "$port"
proxy_port=$(bench_port)
python3 bench/proxy.py "$proxy_port" "$port" cut $((CUT_MB * 1048576)) &
proxy_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$proxy_port) 2>/dev/null && break; sleep 0.05; done

now() { date +%s.%N; }
run_backoff() { timeout "$LIMIT_S" "$BIN" get -q --max-attempts 50 -o "$2" "$1"; }
run_aria2() {
  timeout "$LIMIT_S" aria2c -q -x 8 -s 8 -k 1M -m 50 --retry-wait=1 --file-allocation=none --allow-overwrite=true \
    --auto-file-renaming=false -d "$(dirname "$2")" -o "$(basename "$2")" "$1"
}
run_curl() { timeout "$LIMIT_S" curl -sS -f --retry 50 --retry-all-errors --retry-delay 1 -C - -o "$2" "$1"; }
tools=(backoff aria2 curl)

printf "%-10s %-8s %8s %5s %9s %9s  %s\n" scenario tool wall_s exit requests sent_MiB file
for scenario in capped cut limitconn noranges chunked ratelimit; do
  url="http://127.0.0.1:$port/$scenario/big.bin"
  [[ $scenario == cut ]] && url="http://127.0.0.1:$proxy_port/cut/big.bin"
  for tool in "${tools[@]}"; do
    out="$root/out/$scenario.$tool"
    rm -f "$out" "$out".*
    : > "$root/access.log"
    sleep 1.2  # lets limit_req's bucket empty between runs
    t0=$(now)
    status=0
    "run_$tool" "$url" "$out" > /dev/null 2>&1 || status=$?
    t1=$(now)
    sleep 0.2  # nginx logs a request when it ends
    requests=$(wc -l < "$root/access.log")
    sent=$(awk '{ s += $2 } END { printf "%.1f", s / 1048576 }' "$root/access.log")
    if [[ ! -f $out ]]; then result=none
    elif cmp -s "$root/www/big.bin" "$out"; then result=exact
    else result=DIFFERS; fi
    printf "%-10s %-8s %8.2f %5s %9s %9s  %s\n" "$scenario" "$tool" "$(echo "$t1 - $t0" | bc -l)" "$status" "$requests" \
      "$sent" "$result"
  done
done
