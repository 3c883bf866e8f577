#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# make package, then the .debs as a user gets them: lintian (no error, no
# warning), their control data, their files and sizes, and the installed tools
# run from a scratch root (dpkg-deb -x, no dpkg -i on this machine).
# Usage: tests/package_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "$1")
src=$(cd "$(dirname "$0")/.." && pwd)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
rm -f "$build"/package/*.deb
(cd "$build" && cpack -G DEB > "$root/cpack.log" 2>&1) || { cat "$root/cpack.log"; exit 1; }
cli=$(ls "$build"/package/backoff_*.deb)
dev=$(ls "$build"/package/libbackoff-dev_*.deb)
fail() { echo "FAIL: $*" >&2; exit 1; }

# lintian, Debian's own checker: no error and no warning. The info and
# pedantic tags it may still print are listed, each with its reason, in
# packaging/lintian-accepted.txt; any other one fails too.
if command -v lintian > /dev/null; then
  lintian --no-cfg --display-level '>=pedantic' "$cli" "$dev" > "$root/lintian.txt" 2> "$root/lintian.err" \
    || [[ -s $root/lintian.txt ]] || { cat "$root/lintian.err"; fail "lintian did not run"; }
  accepted=$(awk '!/^#/ && NF {print $1}' "$src/packaging/lintian-accepted.txt")
  while read -r line; do
    [[ -z $line ]] && continue
    tag=$(awk '{print $3}' <<<"$line")
    level=${line%%:*}
    case $level in
      E|W) fail "lintian: $line" ;;
    esac
    grep -qx -- "$tag" <<<"$accepted" || fail "lintian tag not in packaging/lintian-accepted.txt: $line"
  done < "$root/lintian.txt"
else
  fail "lintian is not installed (tools/install-deps.sh installs it)"
fi

# The command's package: stripped, small, Debian's dependencies found by dpkg-shlibdeps.
depends=$(dpkg-deb -f "$cli" Depends)
for p in libc6 libcurl4 libssl3 libhiredis0.14; do
  [[ $depends == *"$p"* ]] || fail "backoff Depends lacks $p: $depends"
done
[[ $(dpkg-deb -f "$cli" Maintainer) != *localhost* ]] || fail "Maintainer is @localhost"
size_kb=$(dpkg-deb -f "$cli" Installed-Size)
((size_kb <= 8192)) || fail "backoff installs $size_kb KiB (more than 8 MiB)"
files=$(dpkg-deb -c "$cli" | awk '{print $6}')
for f in ./usr/bin/backoff ./usr/libexec/backoff/backoff-http ./usr/share/man/man1/backoff.1.gz \
         ./usr/share/bash-completion/completions/backoff ./usr/share/zsh/vendor-completions/_backoff \
         ./usr/share/fish/vendor_completions.d/backoff.fish \
         ./usr/share/doc/backoff/copyright ./usr/share/doc/backoff/changelog.gz; do
  grep -qx "$f" <<<"$files" || fail "the backoff package lacks $f"
done
! grep -q '^./usr/include\|\.a$\|cmake' <<<"$files" || fail "the backoff package holds development files"

# The development package: headers, libraries, CMake and pkg-config files.
dev_depends=$(dpkg-deb -f "$dev" Depends)
for p in libcurl4-openssl-dev libasio-dev libhiredis-dev; do
  [[ $dev_depends == *"$p"* ]] || fail "libbackoff-dev Depends lacks $p: $dev_depends"
done
dev_files=$(dpkg-deb -c "$dev" | awk '{print $6}')
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
for f in ./usr/include/backoff/backoff.hpp ./usr/lib/$multiarch/cmake/backoff/backoffConfig.cmake \
         ./usr/lib/$multiarch/pkgconfig/backoff.pc ./usr/lib/$multiarch/pkgconfig/backoff-curl.pc \
         ./usr/lib/$multiarch/libbackoff_curl.a ./usr/share/doc/libbackoff-dev/copyright; do
  grep -qx "$f" <<<"$dev_files" || fail "the libbackoff-dev package lacks $f"
done
! grep -q '^./usr/bin' <<<"$dev_files" || fail "libbackoff-dev holds the command"

dpkg-deb -x "$cli" "$root/fs"
dpkg-deb -x "$dev" "$root/fs"
usr="$root/fs/usr"
for f in "$usr/bin/backoff" "$usr/libexec/backoff/backoff-http"; do
  ! readelf --sections "$f" | grep -q '\.symtab\|\.debug_info' || fail "$f is not stripped"
done
[[ $("$usr/bin/backoff" --version) == "backoff "* ]] || fail "backoff --version"
# `backoff get` finds backoff-http in ../libexec/backoff.
"$usr/bin/backoff" get --help | grep -q -- "--stall-timeout" || fail "backoff get --help from the package"
"$usr/bin/backoff" run -q -- true || fail "backoff run -- true from the package"
"$usr/bin/backoff" schedule --max-attempts 3 | grep -q "total wait" || fail "backoff schedule from the package"
# get from the package, against a local server.
mkdir -p "$root/www"
head -c 100000 /dev/urandom > "$root/www/file.bin"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
       || echo $((20000 + RANDOM % 20000)))
mkdir -p "$root/nginx"
cat > "$root/nginx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; user root;
error_log $root/nginx/error.log; pid $root/nginx/nginx.pid;
events { worker_connections 16; }
http { access_log off; client_body_temp_path $root/nginx; proxy_temp_path $root/nginx; fastcgi_temp_path $root/nginx;
       uwsgi_temp_path $root/nginx; scgi_temp_path $root/nginx;
       server { listen 127.0.0.1:$port; root $root/www; } }
CONF
/usr/sbin/nginx -c "$root/nginx/nginx.conf" -p "$root/nginx" > /dev/null 2>&1 &
server=$!
for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
"$usr/bin/backoff" get -q "http://127.0.0.1:$port/file.bin" -o "$root/got.bin" || { kill $server; fail "backoff get from the package"; }
kill $server
wait $server 2>/dev/null || true
cmp -s "$root/www/file.bin" "$root/got.bin" || fail "backoff get from the package saved other bytes"
# The man page renders without warnings.
gzip -t "$usr/share/man/man1/backoff.1.gz" || fail "the man page is not a valid gzip file"
warnings=$(gzip -dc "$usr/share/man/man1/backoff.1.gz" | LC_ALL=C.UTF-8 groff -man -ww -z 2>&1 || true)
[[ -z $warnings ]] || fail "man page warnings: $warnings"
# pkg-config finds the headers where the package put them.
pcdir="$usr/lib/$multiarch/pkgconfig"
inc=$(PKG_CONFIG_PATH="$pcdir" pkg-config --variable=includedir backoff)
[[ -f "$inc/backoff/backoff.hpp" ]] || fail "pkg-config includedir $inc has no backoff/backoff.hpp"
# A program built against the package's pkg-config file compiles and runs.
cat > "$root/use.cpp" <<'CPP'
#include <backoff/backoff.hpp>
#include <backoff/curl/client.hpp>
int main() {
  int calls = 0;
  auto r = backoff::try_retry(backoff::policy{.schedule = backoff::constant{.delay = std::chrono::milliseconds(1)}},
                              [&] { return ++calls; }, {});
  return r.value && *r.value == 1 && backoff::curl::host_key("http://a.example/") == "a.example:80" ? 0 : 1;
}
CPP
c++ -std=c++20 "$root/use.cpp" -o "$root/use" $(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs backoff-curl) \
  || fail "compiling against pkg-config's flags"
"$root/use" || fail "the program built against the package"
echo "package ok: $(basename "$cli") ($size_kb KiB), $(basename "$dev"); Depends: $depends"
