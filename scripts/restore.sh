#!/usr/bin/env bash
# Restore a backup made by scripts/backup.sh into a stack with EMPTY volumes (a new VM,
# or after `docker compose down --volumes`). It refuses to overwrite a database that
# already holds chargelift data.
#
#   scripts/restore.sh DIR
#   docker compose up -d            # then start everything (migrate applies newer
#                                   # migrations if the code is newer than the backup)
#
# Order: .env first when there is none (a new VM: the backup's env, mode 600; an
# existing .env is kept), then the certificates (so the certs one-shot finds the CA and
# issues nothing new: every edge device keeps its certificate) and the OCPP gateway's
# registry (every charger keeps its password), then the database into
# a fresh PostgreSQL/TimescaleDB, with timescaledb_pre_restore()/post_restore() when the
# extension is there. Run it as the owner of the checkout (sudo, docs/deploy.md).
# COMPOSE overrides the compose command (default: docker compose), ENV_FILE the .env
# (default: .env of the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
COMPOSE=${COMPOSE:-docker compose}
ENV_FILE=${ENV_FILE:-.env}
dir=${1:?usage: scripts/restore.sh DIR (a folder written by scripts/backup.sh)}
(cd "$dir" && sha256sum --check --quiet SHA256SUMS) || {
  echo "restore: $dir fails its checksums; refusing" >&2; exit 1; }

if [ -e "$dir/env" ]; then
  if [ ! -e "$ENV_FILE" ]; then
    echo "restore: settings and secrets → $ENV_FILE" >&2
    (umask 077 && cp "$dir/env" "$ENV_FILE.part")
    chmod 600 "$ENV_FILE.part"
    mv "$ENV_FILE.part" "$ENV_FILE"
  elif ! cmp -s "$dir/env" "$ENV_FILE"; then
    echo "restore: keeping $ENV_FILE, which differs from the backup's $dir/env" >&2
  fi
fi

psql() { $COMPOSE exec -T timescale psql -U chargelift -d chargelift -v ON_ERROR_STOP=1 -qAt "$@"; }

echo "restore: certificates" >&2
$COMPOSE run --rm --no-deps -T --entrypoint sh certs -c \
  'test ! -e /certs/ca.crt || { echo "restore: the certs volume already has a CA; remove it first" >&2; exit 1; }'
$COMPOSE run --rm --no-deps -T --entrypoint tar certs -C /certs -x < "$dir/certs.tar"
# ca.tar: the CA's key in its own volume (a backup from before it had one keeps the key
# in certs.tar; the certs service moves it at the next start)
if [ -f "$dir/ca.tar" ]; then
  $COMPOSE run --rm --no-deps -T --entrypoint tar certs -C /ca -x < "$dir/ca.tar"
fi
# ocpp.tar: the OCPP gateway's registered charge points (none in an older backup)
if [ -f "$dir/ocpp.tar" ]; then
  $COMPOSE run --rm --no-deps -T --entrypoint tar certs -C /ocpp -x < "$dir/ocpp.tar"
fi

echo "restore: starting the database" >&2
$COMPOSE up --detach --wait timescale
if [ "$(psql -c "SELECT to_regclass('public.schema_migrations') IS NOT NULL")" = "t" ]; then
  echo "restore: the database already holds chargelift tables; restore needs an empty one" >&2
  exit 1
fi
timescale=$(psql -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
if [ "$timescale" != 0 ]; then
  psql -c "CREATE EXTENSION IF NOT EXISTS timescaledb" -c "SELECT timescaledb_pre_restore()" >/dev/null
fi
echo "restore: database" >&2
# --no-privileges: the grants name the services' roles, which belong to the server,
# not to the dump; `chargelift-ingest migrate` (at the next `up`) makes the roles and
# grants again (services/ingest/chargelift_ingest/migrations/privileges.sql).
$COMPOSE exec -T timescale pg_restore -U chargelift -d chargelift --exit-on-error --no-privileges \
  $([ "$timescale" = 0 ] && echo --single-transaction) < "$dir/chargelift.dump"
if [ "$timescale" != 0 ]; then
  psql -c "SELECT timescaledb_post_restore()" >/dev/null
fi
psql -c "ANALYZE"
echo "restore: done; now: docker compose up -d" >&2
