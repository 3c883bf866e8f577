#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# Regenerates the tables and figures of docs/simulations.md with build/bin/backoff.
# Usage: tools/simulations.sh [build-dir]    (run `make` first)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-build}/bin/backoff"
out=docs/simulations
mkdir -p "$out" docs/img

"$bin" simulate contention --format csv --plot docs/img/contention.png > "$out/contention.csv"
"$bin" simulate failures --format csv --plot docs/img/failures.png > "$out/failures.csv"
"$bin" simulate failures --gate-per-client --format csv > "$out/failures-per-client.csv"
"$bin" simulate overload --shape spike --format csv --plot docs/img/overload-spike.png > "$out/overload-spike.csv"
"$bin" simulate overload --shape ramp --format csv --plot docs/img/overload-ramp.png > "$out/overload-ramp.csv"
"$bin" simulate overload --shape spike > "$out/overload-spike.txt"
"$bin" simulate overload --shape ramp > "$out/overload-ramp.txt"
"$bin" simulate fleet --clients 10000 --rate 0.1 --capacity 1.1 --format csv --plot docs/img/fleet.png > "$out/fleet.csv"
"$bin" simulate fleet --clients 10000 --rate 0.1 --capacity 1.1 > "$out/fleet.txt"
# The same with the release spread `get --share` uses (docs/simulations.md §4).
"$bin" simulate fleet --clients 10000 --rate 0.1 --capacity 1.1 --release-spread 0.2 --format csv > "$out/fleet-spread.csv"
"$bin" simulate fleet --clients 10000 --rate 0.1 --capacity 1.1 --release-spread 0.2 > "$out/fleet-spread.txt"
"$bin" simulate hedging --format csv --plot docs/img/hedging.png > "$out/hedging.csv"
"$bin" simulate hedging > "$out/hedging.txt"
# The default policy's recovery on several seeds (docs/simulations.md quotes it).
for shape in spike ramp; do
  for seed in 1 2 3 4 5 6 7 8; do
    printf '%s seed %s: ' "$shape" "$seed"
    "$bin" simulate overload --shape "$shape" --policies backoff-default,3-retries --seed "$seed" | tail -2 | awk '{printf "%s recovered at %s; ", $1, $3}'
    echo
  done
done > "$out/overload-seeds.txt"
echo "tables in $out/, figures in docs/img/"
python3 tools/fill_tables.py
