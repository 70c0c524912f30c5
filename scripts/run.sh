#!/bin/sh
# make run: start a local redis-server when none answers at [redis] url, then
# run tollgate with proxy.conf.example in the foreground.
set -e
bin=$1
conf=${TOLLGATE_CONF:-proxy.conf.example}
url=$(sed -n 's/^[[:space:]]*url[[:space:]]*=[[:space:]]*\(redis:[^[:space:];]*\).*/\1/p' "$conf" | head -1)
hostport=$(echo "${url:-redis://127.0.0.1:6379}" | sed -e 's|^redis://||' -e 's|^[^@]*@||' -e 's|/.*$||')
host=${hostport%:*}
port=${hostport##*:}
[ "$port" = "$hostport" ] && port=6379
if ! redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; then
    case "$host" in
    127.0.0.1|localhost)
        mkdir -p var/redis
        echo "run: starting redis-server on $host:$port (data in var/redis)"
        redis-server --bind "$host" --port "$port" --dir "$PWD/var/redis" --daemonize yes \
            --pidfile "$PWD/var/redis/redis.pid" --logfile "$PWD/var/redis/redis.log" >/dev/null
        i=0
        until redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; do
            i=$((i + 1)); [ $i -gt 50 ] && { echo "run: redis-server did not start" >&2; exit 1; }
            sleep 0.1
        done ;;
    *) echo "run: no Redis answers at $host:$port; tollgate starts degraded" >&2 ;;
    esac
fi
mkdir -p var
echo "run: tollgate -c $conf (apps: OPENAI_BASE_URL=http://127.0.0.1:8080/v1)"
exec "$bin" -c "$conf"
