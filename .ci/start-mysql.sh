#!/usr/bin/env bash
# Start a throwaway MariaDB (the MySQL family Front50 supports) on 127.0.0.1 (a free port) with one
# database and one user, for tests and the bench.
#
#   bash .ci/start-mysql.sh [ENV_FILE]
#
# Installs Debian's mariadb-server package only when no server binary is present (needs root or
# passwordless sudo), runs the server from a private data directory under $TMPDIR (as the `mysql`
# user when run as root), and prints
#   export PIPELINE_SYNC_TEST_MYSQL_URL=mysql://USER:PASSWORD@127.0.0.1:PORT/DATABASE
#   export PIPELINE_SYNC_TEST_MYSQL_STOP='...'   (a command that stops it and removes its files)
# to stdout, or writes them to ENV_FILE. The user may create and drop databases (the tests make one
# per test). Safe to run again: if PIPELINE_SYNC_TEST_MYSQL_URL already names a server that
# answers, that one is reused and nothing new is started.
# Settings: PIPELINE_SYNC_MYSQL_DB (database name, default pipeline_sync_test);
# PIPELINE_SYNC_MYSQL_DURABLE=1 flushes the log at every commit (the default does not: a throwaway
# needs no crash safety).
set -euo pipefail

out="${1:-}"
db="${PIPELINE_SYNC_MYSQL_DB:-pipeline_sync_test}"
user=pipeline_sync
log() { echo "start-mysql: $*" >&2; }
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

emit() {
  # $1 = url, $2 = stop command
  local text
  text="export PIPELINE_SYNC_TEST_MYSQL_URL=$(printf '%q' "$1")
export PIPELINE_SYNC_TEST_MYSQL_STOP=$(printf '%q' "$2")"
  if [ -n "$out" ]; then
    (umask 077 && printf '%s\n' "$text" >"$out")
    log "wrote the connection settings to $out"
  else
    printf '%s\n' "$text"
  fi
}

# The first of several names a program has had (MariaDB renamed mysqld to mariadbd, and so on).
first_program() {
  local name
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
    if [ -x "/usr/sbin/$name" ]; then
      echo "/usr/sbin/$name"
      return 0
    fi
  done
}

# Reuse a server that is already up (idempotence: a second call changes nothing).
if [ -n "${PIPELINE_SYNC_TEST_MYSQL_URL:-}" ]; then
  admin=$(first_program mariadb-admin mysqladmin)
  hostport="${PIPELINE_SYNC_TEST_MYSQL_URL#*://}"
  hostport="${hostport#*@}"
  hostport="${hostport%%/*}"
  if [ -n "$admin" ] && "$admin" --no-defaults --protocol=tcp --host="${hostport%%:*}" \
    --port="${hostport##*:}" --connect-timeout=3 ping >/dev/null 2>&1 </dev/null; then
    log "reusing the server at ${hostport}"
    emit "$PIPELINE_SYNC_TEST_MYSQL_URL" "${PIPELINE_SYNC_TEST_MYSQL_STOP:-true}"
    exit 0
  fi
fi

server=$(first_program mariadbd mysqld)
if [ -z "$server" ]; then
  log "installing Debian's mariadb-server package (no mariadbd or mysqld found)"
  # The package's post-install script may try to start its own server; on a machine without an
  # init system (or with a policy-rc.d that forbids it) that is skipped. We never use that server.
  apt_install MariaDB mariadb-server
  server=$(first_program mariadbd mysqld)
  if [ -z "$server" ]; then
    log "mariadb-server was installed but no mariadbd or mysqld was found"
    exit 1
  fi
fi
install_db=$(first_program mariadb-install-db mysql_install_db)
admin=$(first_program mariadb-admin mysqladmin)
client=$(first_program mariadb mysql)
if [ -z "$install_db" ] || [ -z "$admin" ] || [ -z "$client" ]; then
  log "the MariaDB server is installed but mariadb-install-db, mariadb-admin or mariadb is missing"
  exit 1
fi

run_as=()
if [ "$(id -u)" -eq 0 ]; then
  if ! id mysql >/dev/null 2>&1; then
    useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin mysql
  fi
  run_as=(runuser -u mysql --)
fi

base=$(mktemp -d "${TMPDIR:-/tmp}/pipeline-sync-mysql.XXXXXX")
chmod 700 "$base"
if [ "$(id -u)" -eq 0 ]; then
  chown mysql: "$base"
fi
data="$base/data"
socket="$base/mysqld.sock"

# --no-defaults: nothing from /etc/mysql; root may log in over the private socket without a password.
"${run_as[@]}" "$install_db" --no-defaults --datadir="$data" --auth-root-authentication-method=normal \
  --skip-test-db >"$base/install-db.log" 2>&1 </dev/null \
  || { cat "$base/install-db.log" >&2; rm -rf "$base"; exit 1; }

durable=(--innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0)
if [ "${PIPELINE_SYNC_MYSQL_DURABLE:-0}" = "1" ]; then
  durable=()
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
  # The server settings Front50's my.cnf names (front50-sql/src/main/resources/db/my.cnf).
  setsid "${run_as[@]}" "$server" --no-defaults --datadir="$data" --socket="$socket" \
    --pid-file="$base/mysqld.pid" --log-error="$base/server.log" --bind-address=127.0.0.1 --port="$port" \
    --skip-name-resolve --skip-log-bin --max-connections=200 --innodb-buffer-pool-size=128M \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci "${durable[@]}" \
    </dev/null >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do
    if "$admin" --no-defaults --socket="$socket" -u root ping >/dev/null 2>&1 </dev/null; then
      started=1
      break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      break  # it exited: most likely the port was taken meanwhile
    fi
    sleep 0.5
  done
  if [ -n "$started" ]; then
    break
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  log "could not start on port $port; trying another"
done
if [ -z "$started" ]; then
  log "MariaDB did not start; its log:"
  cat "$base/server.log" >&2 || true
  rm -rf "$base"
  exit 1
fi

password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
"$client" --no-defaults --socket="$socket" -u root </dev/null >&2 -e "
  CREATE DATABASE \`$db\` DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
  CREATE USER '$user'@'127.0.0.1' IDENTIFIED BY '$password';
  CREATE USER '$user'@'localhost' IDENTIFIED BY '$password';
  GRANT ALL PRIVILEGES ON *.* TO '$user'@'127.0.0.1';
  GRANT ALL PRIVILEGES ON *.* TO '$user'@'localhost';"

stop="$admin --no-defaults --socket=$socket -u root shutdown >/dev/null 2>&1; rm -rf $base"
log "$("$server" --version | sed 's/^.*Ver //') is up on 127.0.0.1:$port (data in $base)"
emit "mysql://$user:$password@127.0.0.1:$port/$db" "$stop"
