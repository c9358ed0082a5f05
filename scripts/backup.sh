#!/usr/bin/env bash
# Back up a running compose stack: the database (pg_dump, custom format) and the
# certificate authority with every issued certificate and key (the certs volume).
#
#   scripts/backup.sh [DIR]        # default: backups/<UTC time>/
#
# DIR gets chargelift.dump, certs.tar and SHA256SUMS. certs.tar holds the CA's private
# key: keep it offline or encrypted (e.g. `age -r … certs.tar`), never next to the VM.
# The broker's volume (retained values, queued sessions) is not backed up: the pollers
# republish every field at their next snapshot, and readings in flight are in the
# edges' outboxes until ingest has committed them.
# COMPOSE overrides the compose command (default: docker compose); run from the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
COMPOSE=${COMPOSE:-docker compose}
dir=${1:-backups/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$dir"
chmod 700 "$dir"
umask 077

echo "backup: database → $dir/chargelift.dump" >&2
$COMPOSE exec -T timescale pg_dump -U chargelift -d chargelift --format=custom \
  > "$dir/chargelift.dump.part"
mv "$dir/chargelift.dump.part" "$dir/chargelift.dump"

echo "backup: certificates → $dir/certs.tar" >&2
$COMPOSE run --rm --no-deps -T --entrypoint tar certs -C /certs -c . > "$dir/certs.tar.part"
mv "$dir/certs.tar.part" "$dir/certs.tar"

(cd "$dir" && sha256sum chargelift.dump certs.tar > SHA256SUMS)
echo "backup: done: $dir ($(du -sh "$dir" | cut -f1))" >&2
