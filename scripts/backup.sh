#!/usr/bin/env bash
# Back up a running compose stack: the database (pg_dump, custom format), every issued
# certificate and key (the certs volume), the CA's private key (the ca volume), the OCPP
# gateway's registry of charge points (the ocpp-registry volume: password hashes), and
# .env (the secrets and settings a restore needs).
#
#   sudo scripts/backup.sh [DIR]   # default: backups/<UTC time>/ in the checkout
#
# Run it as the owner of the checkout and its .env (root, as docs/deploy.md installs
# them). DIR (mode 700) gets chargelift.dump, certs.tar, ca.tar, ocpp.tar, env (a copy of
# .env, mode 600) and SHA256SUMS. ca.tar holds the CA's private key and env the secrets: keep
# them offline or encrypted (e.g. `age -r …`), never next to the VM.
# The broker's volume (retained values, queued sessions) is not backed up: the pollers
# republish every field at their next snapshot, and readings in flight are in the
# edges' outboxes until ingest has committed them.
# COMPOSE overrides the compose command (default: docker compose), ENV_FILE the .env
# (default: .env of the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
COMPOSE=${COMPOSE:-docker compose}
ENV_FILE=${ENV_FILE:-.env}
dir=${1:-backups/$(date -u +%Y%m%dT%H%M%SZ)}
fail() { echo "backup: $*" >&2; exit 1; }
# Before anything is written: a user who cannot read .env cannot run the stack's
# compose commands either (the checkout and .env are root's: docs/deploy.md).
[ -r "$ENV_FILE" ] || fail "cannot read $ENV_FILE (it holds the secrets): run as its owner, e.g. sudo $0"
umask 077
mkdir -p "$dir" 2>/dev/null && [ -w "$dir" ] ||
  fail "cannot write to $dir: run as the checkout's owner (sudo $0) or name a folder you can write"
chmod 700 "$dir"

echo "backup: settings and secrets → $dir/env" >&2
cp "$ENV_FILE" "$dir/env.part"
chmod 600 "$dir/env.part"
mv "$dir/env.part" "$dir/env"

echo "backup: database → $dir/chargelift.dump" >&2
$COMPOSE exec -T timescale pg_dump -U chargelift -d chargelift --format=custom \
  > "$dir/chargelift.dump.part"
mv "$dir/chargelift.dump.part" "$dir/chargelift.dump"

echo "backup: certificates → $dir/certs.tar" >&2
$COMPOSE run --rm --no-deps -T --entrypoint tar certs -C /certs -c . > "$dir/certs.tar.part"
mv "$dir/certs.tar.part" "$dir/certs.tar"
echo "backup: the CA's key → $dir/ca.tar" >&2
$COMPOSE run --rm --no-deps -T --entrypoint tar certs -C /ca -c . > "$dir/ca.tar.part"
mv "$dir/ca.tar.part" "$dir/ca.tar"
echo "backup: the OCPP gateway's registry → $dir/ocpp.tar" >&2
$COMPOSE run --rm --no-deps -T --entrypoint tar certs -C /ocpp -c . > "$dir/ocpp.tar.part"
mv "$dir/ocpp.tar.part" "$dir/ocpp.tar"

(cd "$dir" && sha256sum chargelift.dump certs.tar ca.tar ocpp.tar env > SHA256SUMS)
echo "backup: done: $dir ($(du -sh "$dir" | cut -f1))" >&2
