#!/usr/bin/env bash
# Make sure the servers the native stack and the tests run are installed:
# Mosquitto (2.x) and PostgreSQL (15 or newer), promtool for the alert rules, and a headless
# Chromium that checks the API's /docs offline. Installs them with apt-get when missing and
# running as root (as CI does); otherwise says what to install.
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
# chromium renders /docs and /redoc with every other host blocked (tests/integration/api).
have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }

missing=()
have_mosquitto || missing+=(mosquitto)
have_pg || missing+=(postgresql-15)
have_promtool || missing+=(prometheus)
have_chromium || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

exec "$(dirname "$0")/apt-install.sh" system-deps "${missing[@]}"
