#!/usr/bin/env bash
# Start a throwaway PostgreSQL on 127.0.0.1 (a free port) with one database, for tests and the bench.
#
#   bash .ci/start-postgres.sh [ENV_FILE]
#
# Installs Debian's postgresql package only when no server binaries are present (needs root or
# passwordless sudo), runs the server from a private data directory under $TMPDIR (as the
# `postgres` user when run as root: PostgreSQL refuses to run as root), and prints
#   export PIPELINE_SYNC_TEST_POSTGRES_URL=postgresql://...
#   export PIPELINE_SYNC_TEST_POSTGRES_STOP='...'   (a command that stops it and removes its files)
# to stdout, or writes them to ENV_FILE. Safe to run again: if PIPELINE_SYNC_TEST_POSTGRES_URL
# already names a server that answers, that one is reused and nothing new is started.
# Settings: PIPELINE_SYNC_PG_DB (database name, default pipeline_sync_test);
# PIPELINE_SYNC_PG_DURABLE=1 keeps fsync on (the default turns it off: a throwaway needs no crash safety).
set -euo pipefail

out="${1:-}"
db="${PIPELINE_SYNC_PG_DB:-pipeline_sync_test}"
log() { echo "start-postgres: $*" >&2; }
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

emit() {
  # $1 = url, $2 = stop command
  local text
  text="export PIPELINE_SYNC_TEST_POSTGRES_URL=$(printf '%q' "$1")
export PIPELINE_SYNC_TEST_POSTGRES_STOP=$(printf '%q' "$2")"
  if [ -n "$out" ]; then
    printf '%s\n' "$text" >"$out"
    log "wrote the connection settings to $out"
  else
    printf '%s\n' "$text"
  fi
}

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ]; then
    echo "$dir"
  fi
}

install_postgres() {
  log "installing Debian's postgresql package (no server binaries under /usr/lib/postgresql)"
  # The package's post-install script may try to start its own cluster; on a machine without
  # an init system that fails harmlessly. We never use that cluster.
  apt_install PostgreSQL postgresql
}

# Reuse a server that is already up (idempotence: a second call changes nothing).
if [ -n "${PIPELINE_SYNC_TEST_POSTGRES_URL:-}" ] && command -v pg_isready >/dev/null 2>&1 \
  && pg_isready -q -d "$PIPELINE_SYNC_TEST_POSTGRES_URL" -t 3 </dev/null; then
  log "reusing the server at $PIPELINE_SYNC_TEST_POSTGRES_URL"
  emit "$PIPELINE_SYNC_TEST_POSTGRES_URL" "${PIPELINE_SYNC_TEST_POSTGRES_STOP:-true}"
  exit 0
fi

bindir=$(pg_bindir)
if [ -z "$bindir" ]; then
  install_postgres
  bindir=$(pg_bindir)
  if [ -z "$bindir" ]; then
    log "postgresql was installed but no server binaries were found under /usr/lib/postgresql/*/bin"
    exit 1
  fi
fi

run_as=()
if [ "$(id -u)" -eq 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
  run_as=(runuser -u postgres --)
fi

base=$(mktemp -d "${TMPDIR:-/tmp}/pipeline-sync-pg.XXXXXX")
chmod 700 "$base"
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$base"
fi
data="$base/data"

"${run_as[@]}" "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-sync >"$base/initdb.log" 2>&1 \
  || { cat "$base/initdb.log" >&2; rm -rf "$base"; exit 1; }

durable=()
if [ "${PIPELINE_SYNC_PG_DURABLE:-0}" != "1" ]; then
  durable=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
fi

free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

started=""
for _ in 1 2 3 4 5; do
  port=$(free_port)
  options="-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$base -c max_connections=200 ${durable[*]}"
  if "${run_as[@]}" "$bindir/pg_ctl" -D "$data" -l "$base/server.log" -o "$options" -w -t 60 start \
    </dev/null >/dev/null 2>&1; then
    started=1
    break
  fi
  log "could not start on port $port; trying another"
done
if [ -z "$started" ]; then
  log "PostgreSQL did not start; its log:"
  cat "$base/server.log" >&2 || true
  rm -rf "$base"
  exit 1
fi

"$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
  -c "CREATE DATABASE \"$db\"" </dev/null >&2

stop="${run_as[*]:+${run_as[*]} }$bindir/pg_ctl -D $data -m fast -w stop >/dev/null 2>&1; rm -rf $base"
log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') is up on 127.0.0.1:$port (data in $base)"
emit "postgresql://postgres@127.0.0.1:$port/$db" "$stop"
