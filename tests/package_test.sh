#!/usr/bin/env bash
# make package, then the .deb as a user gets it: its control data, its files,
# and the installed tools run from a scratch root (dpkg-deb -x, no dpkg -i on
# this machine). Usage: tests/package_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "$1")
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
(cd "$build" && cpack -G DEB > "$root/cpack.log" 2>&1) || { cat "$root/cpack.log"; exit 1; }
deb=$(ls "$build"/package/backoff_*_amd64.deb 2>/dev/null || ls "$build"/package/backoff_*.deb)
fail() { echo "FAIL: $*" >&2; exit 1; }

# Dependencies are Debian's packages, found by dpkg-shlibdeps.
depends=$(dpkg-deb -f "$deb" Depends)
for p in libc6 libcurl4 libssl3 libhiredis0.14; do
  [[ $depends == *"$p"* ]] || fail "Depends lacks $p: $depends"
done
files=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/backoff ./usr/libexec/backoff/backoff-http ./usr/share/man/man1/backoff.1.gz \
         ./usr/share/bash-completion/completions/backoff ./usr/include/backoff/backoff.hpp \
         ./usr/lib/cmake/backoff/backoffConfig.cmake ./usr/lib/pkgconfig/backoff.pc ./usr/lib/pkgconfig/backoff-curl.pc; do
  grep -qx "$f" <<<"$files" || fail "the package lacks $f"
done

dpkg-deb -x "$deb" "$root/fs"
usr="$root/fs/usr"
[[ $("$usr/bin/backoff" --version) == "backoff "* ]] || fail "backoff --version"
# `backoff get` finds backoff-http in ../libexec/backoff.
"$usr/bin/backoff" get --help | grep -q -- "--stall-timeout" || fail "backoff get --help from the package"
"$usr/bin/backoff" run -q -- true || fail "backoff run -- true from the package"
# The man page renders without warnings.
gzip -t "$usr/share/man/man1/backoff.1.gz" || fail "the man page is not a valid gzip file"
warnings=$(gzip -dc "$usr/share/man/man1/backoff.1.gz" | LC_ALL=C.UTF-8 groff -man -ww -z 2>&1 || true)
[[ -z $warnings ]] || fail "man page warnings: $warnings"
# pkg-config finds the headers where the package put them.
cflags=$(PKG_CONFIG_PATH="$usr/lib/pkgconfig" pkg-config --cflags backoff-curl)
[[ $cflags == *"$usr/lib/pkgconfig/../../include"* || $cflags == *"/include"* ]] || fail "pkg-config --cflags: $cflags"
inc=$(PKG_CONFIG_PATH="$usr/lib/pkgconfig" pkg-config --variable=includedir backoff)
[[ -f "$inc/backoff/backoff.hpp" ]] || fail "pkg-config includedir $inc has no backoff/backoff.hpp"
# A program built against the package's pkg-config file compiles and runs.
cat > "$root/use.cpp" <<'CPP'
#include <backoff/backoff.hpp>
int main() {
  int calls = 0;
  auto r = backoff::try_retry(backoff::policy{.schedule = backoff::constant{.delay = std::chrono::milliseconds(1)}},
                              [&] { return ++calls; }, {});
  return r.value && *r.value == 1 ? 0 : 1;
}
CPP
c++ -std=c++20 $(PKG_CONFIG_PATH="$usr/lib/pkgconfig" pkg-config --cflags --libs backoff) "$root/use.cpp" -o "$root/use" \
  || fail "compiling against pkg-config's flags"
"$root/use" || fail "the program built against the package"
echo "package ok: $(basename "$deb"), Depends: $depends"
