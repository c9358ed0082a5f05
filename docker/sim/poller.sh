#!/bin/sh
# The poller of the compose `sim` profile: writes the chargers file for the simulator's
# $SIM_COUNT chargers (amtron-1..N at simulator:25000..) and runs chargelift-poller on it.
# For real chargers write your own file (docs/poller.md), mount it at
# /etc/chargelift/poller.toml and keep the image's entrypoint.
set -eu
count=${SIM_COUNT:-3}
case $count in
    '' | *[!0-9]*) echo "SIM_COUNT must be a number of chargers, not '$count'" >&2 && exit 2 ;;
esac
config=${TMPDIR:-/tmp}/poller.toml
{
    printf '# Written by docker/sim/poller.sh: the %s chargers of the simulator.\n' "$count"
    printf '[defaults]\ndriver = "mhcp"\ninterval = 1.0\n'
    i=1
    while [ "$i" -le "$count" ]; do
        printf '\n[[chargers]]\nid = "amtron-%d"\nurl = "http://simulator:%d"\npin_env = "SIM_PIN"\n' \
            "$i" $((25000 + i - 1))
        i=$((i + 1))
    done
} >"$config"
POLLER_CONFIG=$config exec chargelift-poller "$@"
