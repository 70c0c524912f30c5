#!/bin/sh
# Installs the Debian packages tollgate needs, when some are missing: to
# build and run (no argument), or also to test (`deps.sh test`: the npm
# test clients' Node, clang's libFuzzer for the fuzz targets, Chromium for
# the dashboard test), or to run the demo (`deps.sh demo`: Node for its
# SDK-driven traffic). As root it runs apt-get; otherwise it names what is
# missing and stops. Quiet when everything is there.
set -e
pkgs="gcc libc6-dev make pkg-config ca-certificates openssl curl \
libevent-dev libssl-dev libhiredis-dev libinih-dev libjansson-dev libhttp-parser-dev \
redis-server"
if [ "$1" = test ]; then
    pkgs="$pkgs nodejs npm clang libclang-rt-14-dev chromium valgrind"
elif [ "$1" = demo ]; then
    pkgs="$pkgs nodejs npm"
fi
[ -n "$TOLLGATE_EXTRA_PKGS" ] && pkgs="$pkgs $TOLLGATE_EXTRA_PKGS"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# nodejs from another source (NodeSource) satisfies the need for node and npm
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    missing=$(echo "$missing" | sed -e 's/ nodejs//' -e 's/ npm//')
fi
[ -z "$(echo "$missing" | tr -d ' ')" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "tollgate needs these Debian packages:$missing" >&2
    echo "run: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
