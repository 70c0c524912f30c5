#!/bin/sh
# make run: run tollgate in the foreground with ./proxy.conf when it exists, else
# proxy.conf.example (TOLLGATE_CONF overrides both). When no Redis answers at the
# config's redis:// url on this machine, a redis-server is started for the session
# and stopped again when tollgate exits (Ctrl-C included); a Redis that was already
# running is left alone.
set -e
bin=$1
if [ -n "${TOLLGATE_CONF:-}" ]; then
    conf=$TOLLGATE_CONF
elif [ -f proxy.conf ]; then
    conf=proxy.conf
else
    conf=proxy.conf.example
fi
[ -f "$conf" ] || { echo "run: $conf does not exist" >&2; exit 1; }

# First redis url in the file; unix sockets and TLS urls are not started here.
url=$(sed -n 's/^[[:space:]]*url[[:space:]]*=[[:space:]]*\(redis:[^[:space:];]*\).*/\1/p' "$conf" | head -1)
hostport=$(echo "${url:-redis://127.0.0.1:6379}" | sed -e 's|^redis://||' -e 's|^[^@]*@||' -e 's|/.*$||')
host=${hostport%:*}
port=${hostport##*:}
[ "$port" = "$hostport" ] && port=6379

redis_pidfile=""
stop_redis() {
    [ -n "$redis_pidfile" ] && [ -f "$redis_pidfile" ] || return 0
    echo "run: stopping the redis-server it started on $host:$port"
    kill "$(cat "$redis_pidfile")" 2>/dev/null || true
    redis_pidfile=""
}

if ! redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; then
    case "$host" in
    127.0.0.1 | localhost)
        mkdir -p var/redis
        echo "run: starting redis-server on $host:$port for this session (data in var/redis; stopped on exit)"
        redis-server --bind "$host" --port "$port" --dir "$PWD/var/redis" --daemonize yes \
            --pidfile "$PWD/var/redis/redis.pid" --logfile "$PWD/var/redis/redis.log" >/dev/null
        redis_pidfile=$PWD/var/redis/redis.pid
        i=0
        until redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; do
            i=$((i + 1))
            [ $i -gt 50 ] && { echo "run: redis-server did not start (see var/redis/redis.log)" >&2; exit 1; }
            sleep 0.1
        done
        ;;
    *) echo "run: no Redis answers at $host:$port; tollgate starts degraded" >&2 ;;
    esac
else
    echo "run: using the Redis already answering at $host:$port (left running)"
fi

# Where to look, from the config itself (first listen / admin_listen lines).
listen=$(sed -n 's/^[[:space:]]*listen[[:space:]]*=[[:space:]]*\([^[:space:];]*\).*/\1/p' "$conf" | head -1)
admin=$(sed -n 's/^[[:space:]]*admin_listen[[:space:]]*=[[:space:]]*\([^[:space:];]*\).*/\1/p' "$conf" | head -1)
token=$(sed -n 's/^[[:space:]]*admin_token[[:space:]]*=[[:space:]]*\([^[:space:];]*\).*/\1/p' "$conf" | head -1)
case "$token" in env:*) token="the value of \$${token#env:}" ;; esac
mkdir -p var
echo "run: tollgate -c $conf"
echo "run: apps: OPENAI_BASE_URL=http://${listen:-127.0.0.1:8080}/v1  ANTHROPIC_BASE_URL=http://${listen:-127.0.0.1:8080}"
echo "run: dashboard: http://${admin:-127.0.0.1:9090}/dashboard (admin token: ${token:-none set})"

trap stop_redis EXIT
# tollgate runs as a child so this shell can stop the redis-server it started; INT and
# TERM are passed on to it, and it drains and exits on either.
"$bin" -c "$conf" &
child=$!
trap 'kill -INT $child 2>/dev/null' INT
trap 'kill -TERM $child 2>/dev/null' TERM
status=0
while :; do
    wait "$child" && status=0 || status=$?
    kill -0 "$child" 2>/dev/null || break # wait was cut short by a trapped signal
done
exit "$status"
