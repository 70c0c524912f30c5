#!/bin/sh
# make demo: a month of a SaaS's AI traffic through tollgate, then its margin report.
# Starts a private redis-server, the mock upstream (tests/mock/upstream.js, HTTPS with a CA
# made here) and tollgate, all on free ports of 127.0.0.1; demo/drive.js sends about 30
# tenants' traffic through the official SDKs for every day of the month so far (restarting
# tollgate with TOLLGATE_CLOCK_OFFSET per simulated day); then prints `tollgate report`
# and the dashboard's address. On a terminal it keeps everything running until Ctrl-C;
# otherwise (CI, a pipe) it stops everything and exits 0. Nothing outlives the script.
#
#   demo/run.sh [path/to/tollgate]        (make demo passes build/release/tollgate)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${1:-build/release/tollgate}
case "$bin" in /*) ;; *) bin=$root/$bin ;; esac
[ -x "$bin" ] || { echo "demo: $bin not found (run make first)" >&2; exit 1; }

node=$(tests/setup.sh)
work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-demo.XXXXXX")
redis_pid=""
mock_pid=""
tg_pid=""

stop() { # $1: pid; SIGTERM, then SIGKILL after 10 s
    [ -n "$1" ] || return 0
    kill -TERM "$1" 2>/dev/null || return 0
    i=0
    while kill -0 "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 100 ] && { kill -KILL "$1" 2>/dev/null || true; break; }
        sleep 0.1
    done
}
cleanup() {
    trap - EXIT INT TERM HUP
    stop "$tg_pid"
    stop "$mock_pid"
    stop "$redis_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "demo: stopped"; exit 0' INT TERM HUP

wait_for() { # $1: what, $2: tries of 0.1 s, $3...: command
    what=$1 tries=$2
    shift 2
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -gt "$tries" ] && { echo "demo: $what did not start" >&2; return 1; }
        sleep 0.1
    done
}

# Free ports (bound and released by node) and a throw-away CA (tests/lib/certs.js).
set -- $("$node" -e "require('./tests/lib/util').freePorts(3).then((p) => console.log(p.join(' ')))")
redis_port=$1 port=$2 admin_port=$3
cadir=$(TOLLGATE_KEEP_TMP=1 "$node" -e "console.log(require('./tests/lib/certs').makeCerts().dir)")
mv "$cadir" "$work/ca"

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    --daemonize no --loglevel warning >"$work/redis.log" 2>&1 &
redis_pid=$!
wait_for "redis-server" 100 redis-cli -h 127.0.0.1 -p "$redis_port" ping

"$node" tests/mock/upstream.js --cert "$work/ca/server.pem" --key "$work/ca/server.key" \
    --port 0 >"$work/mock.out" 2>"$work/mock.log" &
mock_pid=$!
wait_for "the mock upstream" 100 grep -q '"https"' "$work/mock.out"
mock_port=$(sed -n 's/.*"https":\([0-9]*\).*/\1/p' "$work/mock.out")

admin_token=demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
conf=$work/tollgate.conf
sed -e "s|@PORT@|$port|g" -e "s|@ADMIN_PORT@|$admin_port|g" -e "s|@ADMIN_TOKEN@|$admin_token|g" \
    -e "s|@REDIS_URL@|redis://127.0.0.1:$redis_port/0|g" -e "s|@MOCK_URL@|https://127.0.0.1:$mock_port|g" \
    -e "s|@CA@|$work/ca/ca.pem|g" -e "s|@WORK@|$work|g" -e "s|@ROOT@|$root|g" \
    demo/demo.conf.in >"$conf"
"$node" demo/drive.js --tenants >>"$conf"
"$bin" -t -c "$conf" >/dev/null

# The period: this month's days so far; early in a month, the whole previous month.
today=$(date -u +%d | sed 's/^0//')
if [ "$today" -ge 7 ]; then
    period=$(date -u +%Y-%m)
    days=$today
else
    period=$(date -u -d "$(date -u +%Y-%m-01) -1 day" +%Y-%m)
    days=$(date -u -d "$(date -u +%Y-%m-01) -1 day" +%d | sed 's/^0//')
fi

echo "demo: $period, days 1..$days: 32 tenants on free / starter / growth / pro / business (one tollgate run per day)"
"$node" demo/drive.js --bin "$bin" --conf "$conf" --port "$port" --admin-port "$admin_port" \
    --period "$period" --days "$days"

# tollgate for the dashboard, on today's clock.
"$bin" -c "$conf" 2>"$work/tollgate.log" &
tg_pid=$!
wait_for "tollgate" 150 curl -fsS "http://127.0.0.1:$admin_port/healthz"

echo
echo "\$ tollgate report -c CONF --period $period"
"$bin" report -c "$conf" --period "$period"
echo
echo "\$ tollgate report -c CONF --period $period --tenant brightdesk --by model"
"$bin" report -c "$conf" --period "$period" --tenant brightdesk --by model
if [ "$period" = "$(date -u +%Y-%m)" ]; then
    echo
    echo "\$ curl -H 'X-Tenant-Id: quillstack' http://127.0.0.1:$port/v1/tollgate/usage   # what the app may show"
    curl -fsS -H 'X-Tenant-Id: quillstack' "http://127.0.0.1:$port/v1/tollgate/usage"
    echo
fi
echo
echo "\$ tollgate report -c CONF --period $period --format json   (hooli-docs: its response cache)"
"$bin" report -c "$conf" --period "$period" --format json | "$node" -e '
let s = ""; process.stdin.on("data", (d) => { s += d; }).on("end", () => {
  const r = JSON.parse(s), t = r.tenants.find((x) => x.tenant === "hooli-docs") || {};
  const cost = Number(t.cost_usd || 0), saved = Number(t.saved_usd || 0);
  console.log(`hooli-docs: ${t.cache_hits} of ${t.requests} requests answered from the cache, ` +
    `saved $${saved.toFixed(2)}: it cost $${cost.toFixed(2)} instead of $${(cost + saved).toFixed(2)} ` +
    `(${cost + saved > 0 ? ((100 * saved) / (cost + saved)).toFixed(1) : 0}% less)`);
  console.log(`all tenants: $${Number(r.totals.saved_usd).toFixed(2)} saved by ${r.totals.cache_hits} cache hits`);
}); '
echo
echo "dashboard: http://127.0.0.1:$admin_port/dashboard (admin token: $admin_token)"
echo "proxy:     http://127.0.0.1:$port (OPENAI_BASE_URL=http://127.0.0.1:$port/v1, header X-Tenant-Id)"

if [ -t 0 ]; then
    echo "demo: running until Ctrl-C"
    while kill -0 "$tg_pid" 2>/dev/null; do sleep 1; done
    echo "demo: tollgate exited" >&2
    exit 1
fi
exit 0
