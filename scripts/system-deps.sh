#!/usr/bin/env bash
# system-deps.sh servers|dev|test: make sure the Debian packages a make target needs are there.
#   servers (benchmarks, chaos): Mosquitto 2.x and PostgreSQL 15 or newer
#   dev     (make dev):  the servers, and the clients the README's "Try it" uses:
#                        mosquitto-clients and curl
#   test    (make test): the servers, promtool (package prometheus), which checks
#                        and unit-tests the alert rules in deploy/prometheus/, and a
#                        headless chromium, which checks that the API's /docs render
#                        with every other host blocked, and jq, with which a test runs
#                        the evcc configuration of docs/integrations/evcc.md
# Installs what is missing with apt-get when running as root (as CI does); otherwise
# prints the one `sudo apt-get install` line to run and fails.
set -euo pipefail
what=${1:?usage: system-deps.sh servers|dev|test}

have_pg() {  # PostgreSQL >= 15 where chargelift_devstack.postgres looks for it
  local d v
  for d in /usr/lib/postgresql/*/bin; do
    v=${d#/usr/lib/postgresql/}; v=${v%/bin}
    [[ $v =~ ^[0-9]+$ ]] && [ "$v" -ge 15 ] && [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && return 0
  done
  return 1
}
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

# The distribution's PostgreSQL (the `postgresql` metapackage) when it is 15 or newer
# (Debian 12: 15, Debian 13: 17, Ubuntu 24.04: 16), else postgresql-15 (older releases:
# from apt.postgresql.org). The metapackage depends on postgresql-<major>.
pg_package() {
  local major
  major=$(apt-cache show --no-all-versions postgresql 2>/dev/null \
          | sed -n 's/^Depends:.*postgresql-\([0-9][0-9]*\).*/\1/p' | head -n1) || true
  if [ -z "$major" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq  # a fresh machine may have no package lists yet
    major=$(apt-cache show --no-all-versions postgresql 2>/dev/null \
            | sed -n 's/^Depends:.*postgresql-\([0-9][0-9]*\).*/\1/p' | head -n1) || true
  fi
  if [ -z "$major" ] || [ "$major" -ge 15 ]; then echo postgresql; else echo postgresql-15; fi
}

missing=()
have mosquitto || missing+=(mosquitto)
have_pg || missing+=("$(pg_package)")
case $what in
  dev)
    have mosquitto_sub || missing+=(mosquitto-clients)
    have curl || missing+=(curl)
    ;;
  test)
    have promtool || missing+=(prometheus)
    have chromium || have chromium-browser || missing+=(chromium)
    have jq || missing+=(jq)
    ;;
  servers) ;;
  *) echo "usage: system-deps.sh servers|dev|test" >&2; exit 2 ;;
esac
[ ${#missing[@]} -eq 0 ] && exit 0

exec "$(dirname "$0")/apt-install.sh" "make $what" "${missing[@]}"
