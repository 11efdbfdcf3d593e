#!/bin/sh
# edoburu/pgbouncer's contract, for the variables compose.yaml sets: one database DB_NAME on
# DB_HOST, one user DB_USER/DB_PASSWORD, on port 5432.
set -e
cat >/etc/pgbouncer/pgbouncer.ini <<INI
[databases]
${DB_NAME:?} = host=${DB_HOST:?} port=${DB_PORT:-5432} dbname=${DB_NAME}

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 5432
unix_socket_dir =
auth_type = ${AUTH_TYPE:-md5}
auth_file = /etc/pgbouncer/userlist.txt
pool_mode = ${POOL_MODE:-session}
max_client_conn = ${MAX_CLIENT_CONN:-100}
default_pool_size = ${DEFAULT_POOL_SIZE:-20}
server_login_retry = ${SERVER_LOGIN_RETRY:-15}
ignore_startup_parameters = extra_float_digits
INI
printf '"%s" "%s"\n' "${DB_USER:?}" "${DB_PASSWORD:?}" >/etc/pgbouncer/userlist.txt
chown -R postgres /etc/pgbouncer
exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
