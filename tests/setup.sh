#!/bin/sh
# Prepares the integration-test toolchain, idempotent and quiet:
#  1. a Node.js >= 20 (the SDKs need it; Debian 12's own nodejs is 18): the one
#     in PATH when new enough, else the npm package node-linux-<arch>@22
#     installed from the npm registry into tests/.node/;
#  2. tests/node_modules, (re)installed when missing or when package.json or
#     package-lock.json changed since the last install.
# Prints the chosen node binary's absolute path on stdout (and nothing else);
# progress and errors go to stderr. TOLLGATE_LOCAL_NODE=1 forces step 1's
# fallback even when the node in PATH is new enough (to test that path).
set -e
here=$(cd "$(dirname "$0")" && pwd)
min_major=20

node_ok() { # $1: node binary; true when it runs and is >= min_major
    [ -n "$1" ] || return 1
    "$1" -e "process.exit(+process.versions.node.split('.')[0] >= $min_major ? 0 : 1)" \
        >/dev/null 2>&1
}

case "$(uname -m)" in
x86_64 | amd64) arch=x64 ;;
aarch64 | arm64) arch=arm64 ;;
armv7l) arch=armv7l ;;
ppc64le) arch=ppc64le ;;
s390x) arch=s390x ;;
*) arch=$(uname -m) ;;
esac
pkg=node-linux-$arch
local_node=$here/.node/node_modules/$pkg/bin/node

node=""
if [ -z "${TOLLGATE_LOCAL_NODE:-}" ] && node_ok "$(command -v node 2>/dev/null || true)"; then
    node=$(command -v node)
elif node_ok "$local_node"; then
    node=$local_node
else
    if ! command -v npm >/dev/null 2>&1; then
        echo "setup: need node >= $min_major or npm to fetch it (apt-get install nodejs npm)" >&2
        exit 1
    fi
    echo "setup: installing $pkg@22 from the npm registry into tests/.node" >&2
    rm -rf "$here/.node"
    mkdir -p "$here/.node"
    # --ignore-scripts: the package ships the binary itself; no install script is needed.
    (cd "$here/.node" && npm install --prefix "$here/.node" --no-save --no-package-lock \
        --no-audit --no-fund --ignore-scripts --loglevel=error "$pkg@22" >&2)
    chmod +x "$local_node" 2>/dev/null || true
    if ! node_ok "$local_node"; then
        echo "setup: $local_node does not run or is older than $min_major" >&2
        exit 1
    fi
    node=$local_node
fi
node=$(cd "$(dirname "$node")" && pwd)/$(basename "$node")
nodedir=$(dirname "$node")

# npm must run on the chosen node too (Debian's npm script uses "env node").
PATH=$nodedir:$PATH
export PATH
npm_cmd="npm"
[ -x "$nodedir/npm" ] && npm_cmd="$nodedir/npm"

hash_now=$(cat "$here/package.json" "$here/package-lock.json" 2>/dev/null | sha256sum | cut -c1-64)
stamp=$here/node_modules/.tollgate-deps-hash
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash_now" ]; then
    echo "setup: installing test dependencies (npm) in tests/" >&2
    if [ -f "$here/package-lock.json" ]; then
        (cd "$here" && $npm_cmd ci --no-audit --no-fund --loglevel=error >&2)
    else
        (cd "$here" && $npm_cmd install --no-audit --no-fund --loglevel=error >&2)
    fi
    echo "$hash_now" >"$stamp"
fi
echo "$node"
