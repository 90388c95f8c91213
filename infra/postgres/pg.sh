#!/usr/bin/env bash
# Runs a real PostgreSQL server for development and tests, on 127.0.0.1 and a unix socket in
# its state folder, with `trust` authentication for local and loopback connections only.
#   pg.sh up      create the cluster if new, start it, wait until it answers, create the role and
#                 database `healthstream` if missing; prints the DSN as its last line on stdout
#   pg.sh down    stop it (fast mode: open sessions are rolled back); fine if it is not running
#   pg.sh status  say whether it runs
#   pg.sh dsn     print the DSN: postgresql://healthstream@127.0.0.1:$PG_PORT/healthstream
# Settings (environment): PG_PORT (55432), PG_STATE_DIR (<repo>/.local/postgres),
# PG_READY_TIMEOUT seconds (60), PG_FAST=1 for a test-speed server that may lose or corrupt
# data on a crash (fsync, synchronous_commit and full_page_writes off; default off).
# Binaries: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin (Debian package
# `postgresql`). As root, the server runs as the `postgres` system user, which owns the state
# folder; every folder above it must be traversable by that user.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${PG_PORT:-55432}"
state_dir="${PG_STATE_DIR:-$repo/.local/postgres}"
fast="${PG_FAST:-0}"
ready_timeout="${PG_READY_TIMEOUT:-60}"
data_dir="$state_dir/data"
log_file="$state_dir/server.log"
database=healthstream
role=healthstream
dsn="postgresql://$role@127.0.0.1:$port/$database"
run_as=postgres

die() { echo "pg.sh: $*" >&2; exit 1; }

find_bindir() {
  local dir
  if command -v pg_config >/dev/null && dir="$(pg_config --bindir 2>/dev/null)" \
    && [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
    echo "$dir"
    return
  fi
  dir="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
    echo "$dir"
    return
  fi
  die "no PostgreSQL server binaries (initdb, pg_ctl) found via pg_config or in" \
    "/usr/lib/postgresql/*/bin; install the Debian package: apt-get install postgresql"
}

# Runs a server program: as the `postgres` user when we are root (initdb and postgres refuse
# to run as root), from the state folder so it can read its working directory.
as_server_user() {
  if ((EUID == 0)); then
    (cd "$state_dir" && runuser -u "$run_as" -- "$@")
  else
    (cd "$state_dir" && "$@")
  fi
}

running() {
  [[ -f "$data_dir/PG_VERSION" ]] \
    && as_server_user "$bindir/pg_ctl" status -D "$data_dir" >/dev/null 2>&1
}

# The port of the running server, from line 4 of postmaster.pid.
running_port() { sed -n 4p "$data_dir/postmaster.pid" 2>/dev/null; }

psql_admin() {
  "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$state_dir" -p "$port" -U postgres -d postgres "$@"
}

prepare_state_dir() {
  mkdir -p "$state_dir"
  touch "$log_file"
  if ((EUID == 0)); then
    id -u "$run_as" >/dev/null 2>&1 \
      || die "no '$run_as' system user; install the Debian package postgresql"
    chown "$run_as:" "$state_dir" "$log_file"
    runuser -u "$run_as" -- test -w "$state_dir" -a -x "$state_dir" \
      || die "user '$run_as' cannot reach $state_dir (a folder above it is not traversable);" \
        "choose a PG_STATE_DIR under a world-traversable folder such as /tmp"
  fi
  # A unix socket path holds at most 107 bytes.
  local socket="$state_dir/.s.PGSQL.$port"
  ((${#socket} <= 107)) \
    || die "socket path too long (${#socket} > 107 bytes): $socket; choose a shorter PG_STATE_DIR"
}

init_cluster() {
  if [[ -f "$data_dir/PG_VERSION" ]]; then
    local have want
    have="$(cat "$data_dir/PG_VERSION")"
    want="$("$bindir/pg_ctl" --version | awk '{print $3}' | cut -d. -f1)"
    [[ "$have" == "$want" ]] || die "$data_dir holds a PostgreSQL $have cluster but $bindir is" \
      "version $want; remove $state_dir (its data goes too) or install PostgreSQL $have"
    return
  fi
  echo "creating a PostgreSQL cluster in $data_dir" >&2
  as_server_user "$bindir/initdb" -D "$data_dir" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=trust >>"$log_file" 2>&1 \
    || { tail -20 "$log_file" >&2; die "initdb failed; log $log_file"; }
  # Trust only the unix socket and IPv4 loopback (the server listens nowhere else).
  as_server_user tee "$data_dir/pg_hba.conf" >/dev/null <<'HBA'
# Written by infra/postgres/pg.sh: a development and test server, trust on loopback only.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
local   replication all               trust
host    replication all 127.0.0.1/32  trust
HBA
  echo "include_if_exists = 'healthstream.conf'" \
    | as_server_user tee -a "$data_dir/postgresql.conf" >/dev/null
}

# Settings rewritten at each start, so PG_PORT, PG_STATE_DIR and PG_FAST changes take effect.
write_settings() {
  {
    echo "# Written by infra/postgres/pg.sh at each start; edits here are lost."
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '${state_dir//\'/\'\'}'"
    echo "max_connections = 200"
    if [[ "$fast" == 1 ]]; then
      echo "# PG_FAST=1: test speed; a crash may lose or corrupt data."
      echo "fsync = off"
      echo "synchronous_commit = off"
      echo "full_page_writes = off"
    fi
  } | as_server_user tee "$data_dir/healthstream.conf" >/dev/null
}

wait_ready() {
  local deadline=$((SECONDS + ready_timeout))
  until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres; do
    if ! running; then
      tail -20 "$log_file" >&2
      die "the server is not running; log $log_file"
    fi
    if ((SECONDS >= deadline)); then
      tail -20 "$log_file" >&2
      die "no answer on 127.0.0.1:$port after $ready_timeout s; log $log_file"
    fi
    sleep 0.1
  done
}

ensure_database() {
  if [[ -z "$(psql_admin -tAc "select 1 from pg_roles where rolname = '$role'")" ]]; then
    psql_admin -c "create role $role login createdb"
  fi
  if [[ -z "$(psql_admin -tAc "select 1 from pg_database where datname = '$database'")" ]]; then
    psql_admin -c "create database $database owner $role"
  fi
}

up() {
  prepare_state_dir
  init_cluster
  if running; then
    local actual
    actual="$(running_port)"
    [[ "$actual" == "$port" ]] || die "the server in $state_dir already runs on port $actual," \
      "not PG_PORT=$port; stop it first: $0 down"
    echo "PostgreSQL already running on 127.0.0.1:$port ($state_dir)" >&2
  else
    write_settings
    as_server_user "$bindir/pg_ctl" start -D "$data_dir" -l "$log_file" -w -t "$ready_timeout" \
      >/dev/null \
      || { tail -20 "$log_file" >&2; die "the server did not start; log $log_file"; }
  fi
  wait_ready
  ensure_database
  local note=""
  [[ "$fast" == 1 ]] && note=", PG_FAST=1: fsync off"
  echo "PostgreSQL up on 127.0.0.1:$port (log $log_file$note)" >&2
  echo "$dsn"
}

down() {
  if ! running; then
    echo "no PostgreSQL running from $state_dir" >&2
    return
  fi
  as_server_user "$bindir/pg_ctl" stop -D "$data_dir" -m fast -w >/dev/null
  echo "PostgreSQL stopped" >&2
}

status() {
  if running; then
    local actual
    actual="$(running_port)"
    echo "running (pid $(head -1 "$data_dir/postmaster.pid")) on 127.0.0.1:$actual," \
      "postgresql://$role@127.0.0.1:$actual/$database"
  else
    echo "stopped"
    return 1
  fi
}

case "${1:-}" in
  up | down | status) bindir="$(find_bindir)" ;;
esac
case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  dsn) echo "$dsn" ;;
  *) echo "usage: $0 up|down|status|dsn" >&2; exit 2 ;;
esac
