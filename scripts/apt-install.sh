#!/usr/bin/env bash
# apt-install.sh WHO PACKAGE...: install Debian packages the make targets need.
# As root with apt-get (CI): installs them without starting their system services
# (policy-rc.d; the stack and the tests start their own servers). Otherwise: says
# what to install and fails. WHO names the caller in messages.
set -euo pipefail
who=$1; shift
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "$who: installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
else
  echo "$who: please install the Debian packages: $*" >&2
  echo "  sudo apt-get install $*" >&2
  exit 1
fi
