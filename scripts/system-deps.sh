#!/usr/bin/env bash
# Make sure the servers the native stack and the tests run are installed:
# Mosquitto (2.x) and PostgreSQL (15 or newer), and promtool for the alert rules. Installs them with apt-get when
# missing and running as root (as CI does); otherwise says what to install.
set -euo pipefail

have_pg() {
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && return 0
  done
  command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1
}
have_mosquitto() { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; }
# promtool (Debian package prometheus) checks and unit-tests deploy/prometheus/.
have_promtool() { command -v promtool >/dev/null 2>&1; }

missing=()
have_mosquitto || missing+=(mosquitto)
have_pg || missing+=(postgresql-15)
have_promtool || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps Debian from starting system-wide services we do not use:
  # the stack and the tests start their own servers on loopback.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "system-deps: please install: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
