#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# How long `backoff get --share redis://…` takes to exit, whatever Redis does
# (`make bench-redis-exit`): healthy, refusing connections, hung (SIGSTOP: the
# kernel accepts, nothing answers), slow (every reply held 200 ms by
# bench/proxy.py). One small file from nginx; ROUNDS runs each, median.
#   bench/redis_exit.sh [path/to/backoff]      ROUNDS=9 by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-build/bin/backoff}")
ROUNDS=${ROUNDS:-9}
command -v redis-server > /dev/null || { echo "redis-server is not installed (tools/install-deps.sh)" >&2; exit 1; }
root=$(mktemp -d /var/tmp/backoff-rexit.XXXXXX)
nginx_pid="" redis_pid="" proxy_pid=""
cleanup() {
  for p in $proxy_pid $nginx_pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [[ -n $redis_pid ]]; then kill -CONT "$redis_pid" 2>/dev/null || true; kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$root/www" "$root/tmp" "$root/out"
head -c 100000 /dev/urandom > "$root/www/f.bin"
source bench/nginx.sh
port=$(bench_port)
cat > "$root/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; user root;
error_log $root/error.log warn; pid $root/nginx.pid;
events { worker_connections 64; }
http { access_log off; client_body_temp_path $root/tmp; proxy_temp_path $root/tmp; fastcgi_temp_path $root/tmp;
  uwsgi_temp_path $root/tmp; scgi_temp_path $root/tmp; server { listen 127.0.0.1:$port; root $root/www; } }
CONF
bench_nginx "$root" "$root/nginx.conf" "$port"
rport=$(bench_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$root" > "$root/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$rport) 2>/dev/null && break; sleep 0.05; done
pport=$(bench_port)
python3 bench/proxy.py "$pport" "$rport" delay 200 &
proxy_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$pport) 2>/dev/null && break; sleep 0.05; done
closed=$(bench_port)

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
measure() {  # URL → median seconds
  for _ in $(seq "$ROUNDS"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN" get -q --share "$1" -o "$root/out/f" "http://127.0.0.1:$port/f.bin" || true
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
  done | median
}
printf "%-10s %10s\n" redis exit_s
healthy=$(measure "redis://127.0.0.1:$rport/b")
printf "%-10s %10.3f\n" healthy "$healthy"
printf "%-10s %10.3f\n" refusing "$(measure "redis://127.0.0.1:$closed/b")"
printf "%-10s %10.3f\n" slow-200ms "$(measure "redis://127.0.0.1:$pport/b")"
kill -STOP "$redis_pid"
printf "%-10s %10.3f\n" hung "$(measure "redis://127.0.0.1:$rport/b")"
kill -CONT "$redis_pid"
