#!/usr/bin/env bash
# Start PostgreSQL and RabbitMQ on this machine when they are down, enable RabbitMQ's
# management plugin, and create the role and databases the project uses. Idempotent.
set -euo pipefail

DB_ROLE=${MOTCUA_DB_ROLE:-motcua}
DATABASES=${MOTCUA_DATABASES:-"motcua motcua_test"}

say() { echo "[local-services] $*"; }

as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -c "$*"; else bash -c "$*"; fi; }

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  say "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 -q || { say "PostgreSQL did not start"; exit 1; }

psql_admin() { as_postgres "psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$DB_ROLE'")" != "1" ]; then
  say "creating role $DB_ROLE"
  psql_admin "CREATE ROLE $DB_ROLE LOGIN CREATEDB"
fi
for db in $DATABASES; do
  if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
    say "creating database $db"
    psql_admin "CREATE DATABASE $db OWNER $DB_ROLE"
  fi
done

if ! rabbitmqctl -q status >/dev/null 2>&1; then
  say "starting RabbitMQ"
  rabbitmq-server -detached
fi
rabbitmqctl -q await_startup --timeout 120 >/dev/null
for plugin in rabbitmq_management rabbitmq_prometheus; do
  if ! rabbitmq-plugins -q list -e -m 2>/dev/null | grep -qx "$plugin"; then
    say "enabling $plugin"
    rabbitmq-plugins -q enable "$plugin" >/dev/null
  fi
done
for _ in $(seq 1 60); do
  curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1 && break; sleep 1
done
curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null || { say "RabbitMQ management API is not answering"; exit 1; }
for _ in $(seq 1 30); do curl -fsS http://127.0.0.1:15692/metrics >/dev/null 2>&1 && break; sleep 1; done
curl -fsS http://127.0.0.1:15692/metrics >/dev/null || { say "RabbitMQ's Prometheus endpoint is not answering"; exit 1; }
say "PostgreSQL and RabbitMQ are ready"
