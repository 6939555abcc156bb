#!/bin/bash
# A throwaway PostgreSQL server for tests, from Debian's postgresql packages: initdb and pg_ctl
# run as an unprivileged user (nobody) in a temporary directory; the server listens on a unix
# socket in that directory only (no TCP). Trust authentication is safe there because the
# directory is 0700 and owned by that user: only it and root can reach the socket.
#
#   tests/pg.sh start DIR   -> prints the connection string (host=DIR ...) on stdout
#   tests/pg.sh stop DIR    -> stops the server (the directory is left for the caller)
#   tests/pg.sh restart DIR -> starts a server stopped by stop again
#   tests/pg.sh run CMD...  -> starts one in a new temporary directory, runs CMD with
#                              PROVFS_TEST_PG set to its connection string, stops and removes it;
#                              exits with CMD's status (77, skipped, when PostgreSQL is missing)
set -u
pgbin=""
for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && pgbin=$d
done
runas=nobody

as_user() {
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid="$runas" --regid=nogroup --clear-groups -- "$@"
    else
        "$@"
    fi
}

pg_start() {
    local dir=$1
    [ -n "$pgbin" ] || { echo "pg.sh: PostgreSQL server binaries not found" >&2; return 77; }
    mkdir -p "$dir" && chmod 0700 "$dir"
    [ "$(id -u)" -eq 0 ] && chown "$runas:nogroup" "$dir"
    as_user "$pgbin/initdb" -D "$dir/data" -U provfs --auth=trust -E UTF8 --no-sync \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
    pg_restart "$dir" || return 1
    echo "host=$dir dbname=postgres user=provfs"
}

pg_restart() {
    local dir=$1
    as_user "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -k $dir -c fsync=off -c max_connections=200" start \
        >/dev/null || { cat "$dir/server.log" >&2; return 1; }
}

pg_stop() {
    local dir=$1
    [ -d "$dir/data" ] && as_user "$pgbin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
    return 0
}

case "${1:-}" in
start) pg_start "$2" ;;
stop) pg_stop "$2" ;;
restart) pg_restart "$2" ;;
run)
    shift
    dir=$(mktemp -d /tmp/provfs-pg.XXXXXX)
    conn=$(pg_start "$dir")
    rc=$?
    if [ $rc -ne 0 ]; then
        rm -rf "$dir"
        exit $rc
    fi
    PROVFS_TEST_PG=$conn "$@"
    rc=$?
    pg_stop "$dir"
    rm -rf "$dir"
    exit $rc
    ;;
*) echo "usage: tests/pg.sh start DIR | stop DIR | restart DIR | run CMD..." >&2; exit 2 ;;
esac
