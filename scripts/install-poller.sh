#!/usr/bin/env bash
# Install the edge poller without Docker on Raspberry Pi OS / Debian (docs/raspberry-pi.md).
# Run as root from a checkout of this repository:
#
#   sudo scripts/install-poller.sh
#
# - a system user `chargelift`;
# - /opt/chargelift/venv with the poller's dependencies from a hash-pinned lock
#   (deploy/raspberry-pi/requirements-poller.lock) and the poller itself;
# - /etc/chargelift/{poller.env,poller.toml} from the examples (never overwritten),
#   /etc/chargelift/certs for the CA and this device's certificate;
# - the systemd unit (not started: configure first).
# PREFIX, ETC_DIR and UNIT_DIR change the three locations; NO_SYSTEM=1 skips the user,
# ownership and systemctl steps (an unprivileged trial install).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/opt/chargelift}
ETC_DIR=${ETC_DIR:-/etc/chargelift}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
NO_SYSTEM=${NO_SYSTEM:-0}

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install-poller: Python 3.11 or newer is needed (Raspberry Pi OS 12 'bookworm' has it)" >&2
  exit 1; }
if [ "$NO_SYSTEM" != 1 ] && ! id chargelift >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/chargelift-poller --no-create-home \
          --shell /usr/sbin/nologin chargelift
fi

python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q --disable-pip-version-check --require-hashes \
  -r deploy/raspberry-pi/requirements-poller.lock
"$PREFIX/venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation \
  ./services/contract ./services/runtime ./services/edge ./services/poller
mkdir -p "$PREFIX/docs" && cp docs/raspberry-pi.md docs/poller.md "$PREFIX/docs/"

install -d -m 750 "$ETC_DIR" "$ETC_DIR/certs" "$ETC_DIR/certs/clients"
[ -e "$ETC_DIR/poller.env" ] || install -m 640 deploy/raspberry-pi/poller.env.example "$ETC_DIR/poller.env"
[ -e "$ETC_DIR/poller.toml" ] || install -m 640 deploy/raspberry-pi/poller.toml.example "$ETC_DIR/poller.toml"
install -d "$UNIT_DIR"
install -m 644 deploy/systemd/chargelift-poller.service "$UNIT_DIR/chargelift-poller.service"

if [ "$NO_SYSTEM" != 1 ]; then
  chgrp -R chargelift "$ETC_DIR"
  systemctl daemon-reload
fi
cat >&2 <<MSG
install-poller: installed $PREFIX/venv/bin/chargelift-poller.
Next (docs/raspberry-pi.md):
  1. copy ca.crt and clients/<charger>.crt/.key from the VM into $ETC_DIR/certs/
  2. edit $ETC_DIR/poller.toml (chargers) and $ETC_DIR/poller.env (broker host, PINs)
  3. systemctl enable --now chargelift-poller && journalctl -fu chargelift-poller
MSG
