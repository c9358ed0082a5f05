#!/usr/bin/env bash
# What `make test-compose` needs from the system: a Docker engine (Debian docker.io) and
# debootstrap (the stand-in base images). Installs them with apt-get when missing and
# running as root (as CI does); otherwise says what to install. The engine itself is
# started by the test when none runs.
set -euo pipefail
missing=()
command -v docker >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
[ ${#missing[@]} -eq 0 ] && exit 0
exec "$(dirname "$0")/apt-install.sh" docker-deps "${missing[@]}"
