#!/usr/bin/env bash
# A throw-away PostgreSQL server for tests (tests/test_tune.py): initdb in DIR, listening on 127.0.0.1:PORT only,
# trust authentication, a database and user named otxlite.
#
#   scripts/postgres_test_server.sh start DIR PORT   # installs Debian's postgresql with apt-get if missing
#   scripts/postgres_test_server.sh stop DIR
#
# PostgreSQL refuses to run as root: as root the server runs as the postgres user (Debian's package creates it).
# Exit 3 (with the reason on stdout) when no server can be had here, so the caller can skip instead of failing.
set -euo pipefail

action=${1:?start DIR PORT | stop DIR}
dir=${2:?DIR}

server_bin() {  # the newest installed server's bin folder, or nothing
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$found" ] && command -v initdb >/dev/null; then
        found=$(dirname "$(readlink -f "$(command -v initdb)")")
    fi
    echo "$found"
}

as_db() {  # run a server program as the database owner
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

bin=$(server_bin)
case "$action" in
start)
    port=${3:?PORT}
    if [ -z "$bin" ]; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "PostgreSQL is not installed and cannot be installed here (needs root and apt-get)"; exit 3
        fi
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >"$dir.apt.log" 2>&1; then
            echo "apt-get install postgresql failed (no package index or network?): see $dir.apt.log"; exit 3
        fi
        bin=$(server_bin)
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        echo "running as root without a postgres user to run the server as"; exit 3
    fi
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_db "$bin/initdb" -D "$dir/data" -U otxlite --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
    as_db "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=50 -c fsync=off" start >/dev/null
    as_db "$bin/createdb" -h 127.0.0.1 -p "$port" -U otxlite otxlite
    echo "postgresql://otxlite@127.0.0.1:$port/otxlite"
    ;;
stop)
    as_db "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
*)
    echo "unknown action $action: start DIR PORT | stop DIR" >&2; exit 2
    ;;
esac
