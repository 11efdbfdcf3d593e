#!/bin/sh
# The official image's contract: on an empty data folder, initdb with POSTGRES_USER as the
# superuser and POSTGRES_PASSWORD (scram-sha-256 over TCP), create POSTGRES_DB; then run
# `postgres ARGS` as the postgres user, listening on every interface.
set -e
if [ "$1" = postgres ]; then
    user=${POSTGRES_USER:-postgres}
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    as_postgres="setpriv --reuid=postgres --regid=postgres --init-groups"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >/tmp/pwfile
        chown postgres /tmp/pwfile
        $as_postgres initdb -D "$PGDATA" -U "$user" --pwfile=/tmp/pwfile \
            --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        rm -f /tmp/pwfile
        echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
        if [ -n "$POSTGRES_DB" ] && [ "$POSTGRES_DB" != postgres ]; then
            $as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
            $as_postgres psql -q -U "$user" -d postgres -c "create database \"$POSTGRES_DB\""
            $as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
        fi
    fi
    shift
    exec $as_postgres postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
