# SPDX-License-Identifier: BSL-1.0
# Sourced by the download benchmarks: a free loopback port and an nginx
# started on it, stopped with the script.
#   bench_port                  → prints a port nothing listens on
#   bench_nginx ROOT CONF PORT  → starts nginx with CONF, prefix ROOT; sets nginx_pid;
#                                 returns once PORT accepts connections
bench_port() {
  local p
  for p in $(shuf -i 20000-60000 -n 50); do
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
  echo "bench: no free port" >&2
  return 1
}

bench_nginx() {
  local root=$1 conf=$2 port=$3
  "$(command -v nginx || echo /usr/sbin/nginx)" -p "$root/" -c "$conf" &
  nginx_pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return; sleep 0.05; done
  echo "bench: nginx did not start on $port (see $root/error.log)" >&2
  return 1
}
