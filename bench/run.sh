#!/bin/bash
# bench/run.sh BINARY: `make bench`. One run on this machine, same mock upstream and the same
# wrk load against three targets:
#   direct    the mock itself (its plain HTTP port: no proxy, no TLS)
#   nginx     nginx proxy_pass to the mock over HTTPS (the pure-proxy baseline)
#   tollgate  BINARY to the mock over HTTPS, metering on, settling into a real redis-server
#   portkey   the Portkey gateway (npm @portkey-ai/gateway, pinned in bench/portkey/) to the
#             mock over HTTPS, the usual alternative; installed by the bench with npm ci into
#             build/bench-portkey the first time; skipped (said so) when it cannot be installed
# Rows: 1 KB and 100 KB chat-completion bodies x non-streamed / SSE x 16 / 256 connections.
# The proxies run pinned to core 0 (one worker / one node process each); wrk, the mock and Redis run on the other
# cores. Then "first stream event" latency, sequential, over keep-alive connections. Prints a
# table and the targets, PASS/MISS (bench/summary.js).
# Environment: BENCH_DURATION (s, default 5), BENCH_WARMUP (s, 1), BENCH_FIRST_EVENT_N (200),
#   BENCH_WRK_THREADS (1), BENCH_MOCK_WORKERS (node cluster workers of the mock; default 1 on
#   <= 3 cores), BENCH_PERF (1: perf profile of tollgate when its CPU target is missed),
#   BENCH_PORTKEY (1: the portkey target too; 0: without it), BENCH_PORTKEY_WARMUP (s, 15: its
#   JIT needs that much load before its throughput is steady, once before its first run),
#   BENCH_CAPS (1: the tenant's plan has budget and rate caps that never bind, so every request
#   is admitted in Redis as well as settled; 0: no caps, settlement only), BENCH_STRICT (1: exit 1
#   on a MISS), BENCH_KEEP (1: keep the temp dir), BENCH_TIMEOUT (900 s).
# BENCH_CALLGRIND=1: instead of the table, tollgate alone runs under valgrind's callgrind and the
#   run prints its instructions per request for each body (4 conns) and keeps each profile:
#   a repeatable measure on a shared or noisy machine, where CPU time is not.
set -eu
set -o pipefail

[ $# -ge 1 ] || { echo "usage: bench/run.sh BINARY" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[ -x "$bin" ] || { echo "bench: $1: not an executable" >&2; exit 2; }
cd "$root"

CG=${BENCH_CALLGRIND:-0}
DUR=${BENCH_DURATION:-5}
WARM=${BENCH_WARMUP:-1}
FE_N=${BENCH_FIRST_EVENT_N:-200}
THREADS=${BENCH_WRK_THREADS:-1}
TIMEOUT=${BENCH_TIMEOUT:-900}

# ---- what it needs ----------------------------------------------------------------------
need=""
for c in nginx wrk redis-server redis-cli node openssl curl taskset; do
    command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || need="$need $c"
done
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "bench: missing$need; installing"
        TOLLGATE_EXTRA_PKGS="nginx-light wrk" scripts/deps.sh
    else
        echo "bench: missing$need; as root: TOLLGATE_EXTRA_PKGS=\"nginx-light wrk\" scripts/deps.sh" >&2
        exit 1
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

ncpu=$(nproc)
if [ "$ncpu" -ge 2 ]; then other="1-$((ncpu - 1))"; else other=0; fi
MOCK_WORKERS=${BENCH_MOCK_WORKERS:-$(( ncpu <= 3 ? 1 : (ncpu - 2 > 4 ? 4 : ncpu - 2) ))}

# ---- start/stop -------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
pids=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local rc=$? p i
    trap - EXIT INT TERM
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for i in $(seq 50); do
        local alive=""
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $tmp"; else rm -rf "$tmp"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# bounded in time: the whole run is stopped after BENCH_TIMEOUT seconds
(
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$TIMEOUT" & sp=$!
    wait "$sp" && { echo "bench: over ${TIMEOUT}s, stopping" >&2; kill -TERM $$; }
) 2>/dev/null &
pids="$pids $!"

die() { echo "bench: $*" >&2; for f in "$tmp"/*.err "$tmp"/*.log; do [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done; exit 1; }
wait_for() { # wait_for SECONDS CMD...: retry CMD every 0.1 s
    local n=$(( $1 * 10 )); shift
    until "$@" >/dev/null 2>&1; do n=$((n - 1)); [ $n -gt 0 ] || return 1; sleep 0.1; done
}
free_ports() { # free_ports N: N distinct free TCP ports on 127.0.0.1
    node -e '
      const net = require("node:net"); const n = +process.argv[1]; const socks = [];
      (async () => { for (let i = 0; i < n; i++) socks.push(await new Promise((r) => {
        const s = net.createServer(); s.listen(0, "127.0.0.1", () => r(s)); }));
        console.log(socks.map((s) => s.address().port).join(" ")); socks.forEach((s) => s.close()); })();' "$1"
}
cpu_ticks() { # cpu_ticks PID: "utime stime" in clock ticks (all threads)
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'
}
quiet() { # quiet PID: wait (10 s at most) until PID uses under 5% of a core: the Portkey
    # gateway goes on with the requests wrk gave up on, and the next run must not share core 0
    local p=$1 a b tck; tck=$(getconf CLK_TCK)
    [ -n "$p" ] || return 0
    for _ in $(seq 20); do
        a=$(cpu_ticks "$p" | awk '{ print $1 + $2 }'); sleep 0.5; b=$(cpu_ticks "$p" | awk '{ print $1 + $2 }')
        [ $(( (b - a) * 40 )) -le "$tck" ] && return 0
    done
    return 0 # still busy after 10 s: measured all the same
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# redis-server's own count, in microseconds: CPU (user + sys) and time inside commands
redis_cpu_us() {
    redis-cli -p "$redis_port" info cpu | tr -d '\r' |
        awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%d", s * 1e6 }'
}
redis_cmd_us() {
    redis-cli -p "$redis_port" info commandstats | tr -d '\r' |
        awk -F'usec=' '/^cmdstat_/ { split($2, a, ","); s += a[1] } END { printf "%d", s }'
}

# ---- certificates (as tests/lib/certs.js: EC P-256 CA + server cert for 127.0.0.1) --------
(
    cd "$tmp"
    ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    # shellcheck disable=SC2086
    openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=tollgate bench CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    # shellcheck disable=SC2086
    openssl req $ec -keyout server.key -out server.csr -subj /CN=localhost
    printf '%s\n' subjectAltName=IP:127.0.0.1,DNS:localhost basicConstraints=CA:FALSE \
        keyUsage=critical,digitalSignature,keyEncipherment extendedKeyUsage=serverAuth > ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
        -days 2 -extfile ext.cnf
) >/dev/null 2>"$tmp/openssl.err" || die "openssl failed"
node bench/bodies.js "$tmp"

# ---- the mock upstream --------------------------------------------------------------------
mock_args="--cert $tmp/server.pem --key $tmp/server.key --port 0 --http-port 0" # no --log
if [ "$MOCK_WORKERS" -gt 1 ]; then
    # shellcheck disable=SC2086
    taskset -c "$other" node bench/mock_cluster.js "$MOCK_WORKERS" $mock_args >"$tmp/mock.out" 2>"$tmp/mock.err" &
else
    # shellcheck disable=SC2086
    taskset -c "$other" node tests/mock/upstream.js $mock_args >"$tmp/mock.out" 2>"$tmp/mock.err" &
fi
mock_pid=$!
pids="$pids $mock_pid"
wait_for 10 grep -q '"https"' "$tmp/mock.out" || die "the mock did not start"
mock_tls=$(sed -n 's/.*"https":\([0-9]*\).*/\1/p' "$tmp/mock.out" | head -1)
mock_http=$(sed -n 's/.*"http":\([0-9]*\).*/\1/p' "$tmp/mock.out" | head -1)

# ---- redis-server ------------------------------------------------------------------------
read -r redis_port tg_port tg_admin nginx_port pk_port <<<"$(free_ports 5)"
taskset -c "$other" redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --dir "$tmp" --logfile "$tmp/redis.log" >/dev/null 2>"$tmp/redis.err" &
redis_pid=$!
pids="$pids $redis_pid"
wait_for 10 redis-cli -p "$redis_port" ping || die "redis-server did not start"

# ---- tollgate ----------------------------------------------------------------------------
# upstream_pool_size = 64 matches nginx's "keepalive 64" (tollgate's default is 32)
cat >"$tmp/tollgate.conf" <<EOF
; written by bench/run.sh
[server]
listen = 127.0.0.1:$tg_port
admin_listen = 127.0.0.1:$tg_admin
admin_token = bench-admin-token
workers = 1
log_level = warn
drain_timeout = 2s
upstream_pool_size = 64
[redis]
url = redis://127.0.0.1:$redis_port/0
journal_dir = $tmp/journal
[upstream openai]
url = https://127.0.0.1:$mock_tls
ca_file = $tmp/ca.pem
[upstream anthropic]
url = https://127.0.0.1:$mock_tls
ca_file = $tmp/ca.pem
[upstream gemini]
url = https://127.0.0.1:$mock_tls
ca_file = $tmp/ca.pem
[pricing]
file = $root/conf/pricing.conf
[records]
file = $tmp/usage.jsonl
[plan free]
price = 0
EOF
if [ "$CG" = 1 ]; then
    # 50x slower under valgrind: Redis answers in time all the same
    sed -i 's|^url = redis://.*|&\ntimeout = 30s|' "$tmp/tollgate.conf"
fi
if [ "${BENCH_CAPS:-1}" = 1 ]; then
    # caps that never bind: every request still goes through admission (rate limits and
    # budget in Redis) before it is forwarded, as a capped tenant's would
    printf '%s\n' 'budget_monthly = 1000000' 'budget_daily = 1000000' 'rpm = 1000000000' \
        'tpm = 1000000000000' >>"$tmp/tollgate.conf"
fi
# a copy: the binary under test stays the same (and perf finds its symbols) if it is rebuilt meanwhile
cp "$bin" "$tmp/tollgate"
if [ "$CG" = 1 ]; then
    valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out" --vgdb=yes \
        --compress-strings=no --compress-pos=no \
        "$tmp/tollgate" -c "$tmp/tollgate.conf" >"$tmp/tollgate.log" 2>"$tmp/tollgate.err" &
else
    taskset -c 0 "$tmp/tollgate" -c "$tmp/tollgate.conf" >"$tmp/tollgate.log" 2>"$tmp/tollgate.err" &
fi
tg_pid=$!
pids="$pids $tg_pid"
wait_for 60 curl -sf "http://127.0.0.1:$tg_admin/healthz" || die "tollgate did not start"

# ---- instructions per request under callgrind (BENCH_CALLGRIND=1) -------------------------
if [ "$CG" = 1 ]; then
    echo "bench: tollgate under callgrind; ${DUR}s of wrk (4 conns) per body after ${WARM}s of warm-up"
    for b in 1k 1k-stream 100k 100k-stream; do
        BENCH_BODY="$tmp/body-$b.json" timeout $(( WARM + 60 )) wrk -t 1 -c 4 -d "${WARM}s" \
            --timeout 30s -s bench/post.lua "http://127.0.0.1:$tg_port" >/dev/null 2>&1 || true
        rm -f "$tmp"/callgrind.out.*
        callgrind_control -d "$tg_pid" >/dev/null 2>&1 || die "callgrind_control -d failed"
        wait_for 30 ls "$tmp"/callgrind.out.* || die "no callgrind dump"
        out=$(BENCH_BODY="$tmp/body-$b.json" timeout $(( DUR + 60 )) wrk -t 1 -c 4 -d "${DUR}s" \
            --timeout 30s -s bench/post.lua "http://127.0.0.1:$tg_port" 2>&1) || die "wrk failed: $out"
        rm -f "$tmp"/callgrind.out.*
        callgrind_control -d "$tg_pid" >/dev/null 2>&1 || die "callgrind_control -d failed"
        wait_for 30 ls "$tmp"/callgrind.out.* || die "no callgrind dump"
        sleep 1
        dump=$(ls "$tmp"/callgrind.out.* | head -1)
        reqs=$(echo "$out" | sed -n 's/^BENCHJSON {"requests":\([0-9]*\).*/\1/p')
        errs=$(echo "$out" | sed -n 's/^BENCHJSON .*"err_status":\([0-9]*\).*/\1/p')
        ir=$(cat "$tmp"/callgrind.out.* | sed -n 's/^summary: *\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s }')
        [ "${reqs:-0}" -gt 0 ] || die "no requests completed: $out"
        echo
        echo "$b: $reqs requests ($errs non-2xx), $(( ir / reqs )) instructions per request (all threads)"
        mv "$dump" "$tmp/cg-$b.out"
        echo "  profile: $tmp/cg-$b.out (kept with BENCH_KEEP=1; kcachegrind reads it)"
    done
    exit 0
fi

# ---- nginx -------------------------------------------------------------------------------
mkdir -p "$tmp/nginx-body" "$tmp/nginx-proxy" "$tmp/nginx-fastcgi" "$tmp/nginx-uwsgi" "$tmp/nginx-scgi"
sed -e "s|@TMP@|$tmp|g" -e "s|@PORT@|$nginx_port|g" -e "s|@MOCKPORT@|$mock_tls|g" \
    -e "s|@CA@|$tmp/ca.pem|g" bench/nginx.conf.in >"$tmp/nginx.conf"
taskset -c 0 "$NGINX" -e "$tmp/nginx-error.log" -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon off;' \
    >"$tmp/nginx.log" 2>"$tmp/nginx.err" &
nginx_pid=$!
pids="$pids $nginx_pid"
worker_of() { # the nginx worker: the master's only child
    local c
    c=$(cat "/proc/$1/task/$1/children" 2>/dev/null || pgrep -P "$1" || true)
    # shellcheck disable=SC2086 # split on purpose
    set -- $c
    [ $# -ge 1 ] && echo "$1"
}
wait_for 10 worker_of "$nginx_pid" || die "nginx did not start"
nginx_worker=$(worker_of "$nginx_pid")

# ---- the Portkey gateway (BENCH_PORTKEY=1) -------------------------------------------------
# Installed once with npm ci from bench/portkey/'s lock file into build/bench-portkey (again when
# the lock file changes); no install scripts run. It reaches the mock over HTTPS like the others,
# trusting the bench CA, and reads its upstream from the x-portkey-* headers of each request.
targets="direct nginx tollgate"
pk_pid=""
pk_headers="x-portkey-provider: openai|x-portkey-custom-host: https://127.0.0.1:$mock_tls/v1"
if [ "${BENCH_PORTKEY:-1}" = 1 ]; then
    pk_dir="$root/build/bench-portkey"
    pk_main="$pk_dir/node_modules/@portkey-ai/gateway/build/start-server.js"
    if [ ! -f "$pk_main" ] || ! cmp -s bench/portkey/package-lock.json "$pk_dir/package-lock.json"; then
        echo "bench: installing the Portkey gateway (npm ci into $pk_dir)"
        rm -rf "$pk_dir" && mkdir -p "$pk_dir" && cp bench/portkey/package.json bench/portkey/package-lock.json "$pk_dir/"
        (cd "$pk_dir" && timeout 300 npm ci --ignore-scripts --no-audit --no-fund) >"$tmp/portkey-install.log" 2>&1 ||
            { rm -rf "$pk_dir"; echo "bench: the Portkey gateway could not be installed ($(tail -1 "$tmp/portkey-install.log")); no portkey rows"; }
    fi
    if [ -f "$pk_main" ]; then
        NODE_EXTRA_CA_CERTS="$tmp/ca.pem" taskset -c 0 node --require "$root/bench/portkey/loopback.js" \
            "$pk_main" --port="$pk_port" --headless >"$tmp/portkey.log" 2>"$tmp/portkey.err" &
        pk_pid=$!
        pids="$pids $pk_pid"
        wait_for 30 grep -q 'Ready for connections' "$tmp/portkey.log" || die "the Portkey gateway did not start"
        targets="$targets portkey"
    fi
fi

# ---- one request through each target first ------------------------------------------------
port_of() { case $1 in direct) echo "$mock_http" ;; nginx) echo "$nginx_port" ;; tollgate) echo "$tg_port" ;; portkey) echo "$pk_port" ;; esac; }
pid_of() { case $1 in direct) echo "" ;; nginx) echo "$nginx_worker" ;; tollgate) echo "$tg_pid" ;; portkey) echo "$pk_pid" ;; esac; }
headers_of() { if [ "$1" = portkey ]; then echo "$pk_headers"; fi; } # "Name: value|Name: value"
for t in $targets; do
    for b in body-1k.json body-100k-stream.json; do
        hargs=()
        IFS='|' read -r -a hl <<<"$(headers_of "$t")"
        for h in "${hl[@]}"; do [ -n "$h" ] && hargs+=(-H "$h"); done
        code=$(curl -s -o "$tmp/check.out" -w '%{http_code}' -H 'Content-Type: application/json' \
            -H 'X-Tenant-Id: bench' -H 'Authorization: Bearer sk-bench' "${hargs[@]}" --data-binary "@$tmp/$b" \
            "http://127.0.0.1:$(port_of $t)/v1/chat/completions" || true)
        [ "$code" = 200 ] || die "$t answered $code to $b: $(head -c 300 "$tmp/check.out")"
    done
done

ntargets=$(echo "$targets" | wc -w)
runs=$(( 8 * ntargets ))
echo "bench: $ncpu cores; nginx worker (pid $nginx_worker), tollgate (pid $tg_pid)${pk_pid:+ and portkey (pid $pk_pid)} on core 0;" \
    "wrk ($THREADS thread), mock ($MOCK_WORKERS node process), redis on cores $other"
echo "bench: $runs runs of ${WARM}s warm-up + ${DUR}s, then $FE_N first-event requests per target (~$(( runs * (WARM + DUR + 1) / 60 + 1 )) min)"

# ---- the load ----------------------------------------------------------------------------
results="$tmp/results.jsonl"
: >"$results"
wrk_run() { # wrk_run SECONDS CONNS PORT BODYFILE [--latency]; BENCH_HEADERS: see post.lua
    local d=$1 c=$2 p=$3 b=$4; shift 4
    BENCH_BODY="$b" timeout $(( d + 30 )) taskset -c "$other" wrk -t "$THREADS" -c "$c" -d "${d}s" \
        --timeout 5s "$@" -s bench/post.lua "http://127.0.0.1:$p"
}
alive_or_die() { # alive_or_die WHEN: stop, with its exit status, if a server went away
    local name p rc
    for name in mock:$mock_pid redis:$redis_pid tollgate:$tg_pid nginx:$nginx_pid ${pk_pid:+portkey:$pk_pid}; do
        p=${name#*:}
        kill -0 "$p" 2>/dev/null && continue
        rc=0; wait "$p" || rc=$?
        [ $rc -gt 128 ] && rc="$rc (signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128))))"
        die "${name%%:*} (pid $p) exited $1, status $rc"
    done
}
if [ -n "$pk_pid" ]; then
    echo "bench: warming the Portkey gateway up for ${BENCH_PORTKEY_WARMUP:-15}s (its JIT)"
    BENCH_HEADERS=$pk_headers wrk_run "${BENCH_PORTKEY_WARMUP:-15}" 16 "$pk_port" "$tmp/body-1k.json" >/dev/null 2>&1 || true
fi
i=0
for size in 1k 100k; do
    for stream in 0 1; do
        body="$tmp/body-$size.json"
        [ $stream = 1 ] && body="$tmp/body-$size-stream.json"
        for conns in 16 256; do
            for t in $targets; do
                i=$((i + 1))
                port=$(port_of $t)
                pid=$(pid_of $t)
                hdrs=$(headers_of "$t")
                BENCH_HEADERS=$hdrs wrk_run "$WARM" "$conns" "$port" "$body" >/dev/null 2>&1 || true
                alive_or_die "before $size stream=$stream $conns conns"
                c0="0 0"; [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
                r0=$(cpu_ticks "$redis_pid")
                ru0=$(redis_cpu_us); rc0=$(redis_cmd_us)
                out=$(BENCH_HEADERS=$hdrs wrk_run "$DUR" "$conns" "$port" "$body" --latency 2>&1) || die "wrk failed: $out"
                alive_or_die "during $size stream=$stream $conns conns against $t"
                c1="0 0"; [ -n "$pid" ] && c1=$(cpu_ticks "$pid")
                r1=$(cpu_ticks "$redis_pid")
                ru1=$(redis_cpu_us); rc1=$(redis_cmd_us)
                rss=0; [ -n "$pid" ] && rss=$(rss_kb "$pid")
                quiet "$pid"
                w=$(echo "$out" | sed -n 's/^BENCHJSON //p')
                [ -n "$w" ] || die "no wrk summary: $out"
                # shellcheck disable=SC2086 # split on purpose
                set -- $c0 $c1 $r0 $r1
                printf '{"size":"%s","stream":%s,"conns":%s,"target":"%s","utime":%s,"stime":%s,"redis_ticks":%s,"redis_cpu_us":%s,"redis_cmd_us":%s,"rss_kb":%s,"wrk":%s}\n' \
                    "$size" "$stream" "$conns" "$t" $(( $3 - $1 )) $(( $4 - $2 )) $(( $7 + $8 - $5 - $6 )) \
                    $(( ru1 - ru0 )) $(( rc1 - rc0 )) "$rss" "$w" >>"$results"
                printf 'bench: [%2d/%d] %-4s %-6s %3s conns %-8s %s\n' "$i" "$runs" "$size" \
                    "$([ $stream = 1 ] && echo sse || echo json)" "$conns" "$t" \
                    "$(echo "$w" | sed 's/.*"requests":\([0-9]*\).*"duration_us":\([0-9]*\).*/\1 \2/' |
                        awk '{ printf "%.0f req/s", $1 / ($2 / 1e6) }')"
            done
        done
    done
done

# ---- first stream event ------------------------------------------------------------------
alive_or_die "after the load"
timeout 300 taskset -c "$other" node bench/first_event.js "$tmp/body-1k-stream.json" "$FE_N" \
    "direct=$mock_http" "nginx=$nginx_port" "tollgate=$tg_port" ${pk_pid:+"portkey=$pk_port|$pk_headers"} \
    >"$tmp/first_event.json" ||
    die "first_event.js failed"

# ---- what tollgate metered -----------------------------------------------------------------
# Every record must have its settlement: the tally flushes each second, records are written in
# batches, and a settlement Redis missed under load waits in the journal (this run's own dir) until
# it is replayed; so wait (20 s at most) for the counts to meet.
month=$(date -u +%Y-%m)
metered() {
    settled=$(redis-cli -p "$redis_port" hget "tollgate:{bench}:m:$month" requests 2>/dev/null || true)
    records=$(wc -l <"$tmp/usage.jsonl" 2>/dev/null || echo 0)
    # a client wrk cut while its request was being admitted: recorded, never forwarded, so not settled
    unsent=$(grep -c '"status":499,"outcome":"client_aborted","input_tokens":0,.*"estimated":false' "$tmp/usage.jsonl" 2>/dev/null || true)
    journaled=$(cat "$tmp"/journal/*.jsonl 2>/dev/null | wc -l)
    [ "${settled:-0}" = "$(( records - ${unsent:-0} ))" ] && [ "$journaled" = 0 ]
}
for _ in $(seq 40); do metered && break; sleep 0.5; done
records_ok=$(grep -c '"outcome":"ok"' "$tmp/usage.jsonl" 2>/dev/null || true)
cat >"$tmp/meta.json" <<EOF
{"ncpu":$ncpu,"other":"$other","threads":$THREADS,"mock_workers":$MOCK_WORKERS,"duration":$DUR,"warmup":$WARM,
 "caps":${BENCH_CAPS:-1},"clk_tck":$(getconf CLK_TCK),"settled":"${settled:-0}","records":$records,"records_ok":${records_ok:-0},"unsent":${unsent:-0},"journaled":$journaled,"first_event_n":$FE_N}
EOF

# ---- the table -----------------------------------------------------------------------------
echo
node bench/summary.js "$tmp" || die "summary.js failed"
verdict=$(cat "$tmp/verdict")

# ---- where tollgate's time goes, when its CPU target was missed ------------------------------
if [ -s "$tmp/cpu_miss" ] && [ "${BENCH_PERF:-1}" = 1 ] && command -v perf >/dev/null 2>&1; then
    while read -r size stream conns; do
        body="$tmp/body-$size.json"
        [ "$stream" = 1 ] && body="$tmp/body-$size-stream.json"
        echo
        echo "where tollgate's time goes ($size, stream=$stream, $conns conns; perf record, 3 s):"
        wrk_run 5 "$conns" "$tg_port" "$body" </dev/null >/dev/null 2>&1 &
        wpid=$!
        sleep 1
        if timeout 20 perf record -q -F 499 --call-graph dwarf,16384 -o "$tmp/perf.data" -p "$tg_pid" \
            -- sleep 3 </dev/null >/dev/null 2>&1; then
            echo "  by library (self):"
            timeout 120 perf report -i "$tmp/perf.data" --stdio --no-children --sort dso -g none </dev/null 2>/dev/null |
                grep -E '^ +[0-9.]+%' | head -8 || true
            echo "  by user-space function (named, >= 2%), children% (with callees) and self%:"
            timeout 120 perf report -i "$tmp/perf.data" --stdio --children --sort dso,symbol -g none \
                --percent-limit 2 </dev/null 2>/dev/null | grep -E '^ +[0-9.]+%' | sed 's/ *- *- *$//' |
                grep -Ev '\] (0x[0-9a-f]+|clone3|start_thread|event_base_loop|run)$|\[k\]' | head -20 || true
        else
            echo "  (perf record failed here)"
        fi
        wait "$wpid" 2>/dev/null || true
    done <"$tmp/cpu_miss"
fi

[ "${BENCH_STRICT:-0}" = 1 ] && [ "$verdict" != PASS ] && exit 1
exit 0
