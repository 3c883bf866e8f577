#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# Installs the Debian packages backoff's build, tests, benchmarks and demo need,
# but only those missing. Safe to run repeatedly; needs root (or sudo) to install.
# (lintian checks the packages in the package test; openssl makes the TLS tests'
# certificates; aria2 is the yardstick of the segmented-download benchmark, and
# python3 runs its connection-cutting proxy; promtool (prometheus),
# node_exporter and the Pushgateway check and take what --metrics writes.)
set -euo pipefail

packages=(
  cmake ninja-build ccache g++ make pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libcurl4-openssl-dev libssl-dev libcpp-httplib-dev nlohmann-json3-dev libcli11-dev
  nginx-light gnuplot-nox
  clang libclang-rt-14-dev
  curl bc libasio-dev bsdutils
  libhiredis-dev redis-server
  dpkg-dev groff-base lintian openssl aria2 python3
  prometheus prometheus-node-exporter prometheus-pushgateway gcovr
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
