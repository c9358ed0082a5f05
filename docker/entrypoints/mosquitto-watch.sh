#!/bin/sh
# The broker of docker-compose.yml: Mosquitto, and a watch on the certificate files that
# the `certs` service rewrites, so that certificate changes take effect on their own
# (docs/security.md, "Revoking a certificate"):
#
#   mosquitto.acl changed (a certificate issued)  -> SIGHUP: Mosquitto re-reads ACL and CRL
#   crl.pem changed (a certificate revoked)       -> restart Mosquitto (SIGTERM, it saves
#       its state, then start again): TLS is checked only at the handshake, so this is
#       what closes the revoked identity's open connections; every other client
#       reconnects within seconds (persistent sessions and retained values are kept)
#
# Checked every WATCH_INTERVAL seconds (default 1). SIGTERM/SIGINT stop Mosquitto cleanly;
# SIGHUP is passed on.
set -u
conf=${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}
certs=${MOSQUITTO_CERTS:-/mosquitto/certs}
interval=${WATCH_INTERVAL:-1}
pid=

stamp() { cksum "$certs/$1" 2>/dev/null | cut -d' ' -f1,2; }
start() { /usr/sbin/mosquitto -c "$conf" & pid=$!; }
stop() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
trap 'stop; exit 0' TERM INT
# `docker compose kill -s HUP mosquitto` (the manual reload) still reaches the broker
trap 'kill -HUP "$pid" 2>/dev/null' HUP

start
acl=$(stamp mosquitto.acl)
crl=$(stamp crl.pem)
while kill -0 "$pid" 2>/dev/null; do
    sleep "$interval" & wait $!
    now_acl=$(stamp mosquitto.acl)
    now_crl=$(stamp crl.pem)
    if [ "$now_crl" != "$crl" ]; then
        echo "mosquitto-watch: crl.pem changed: restarting the broker to close revoked connections" >&2
        stop
        start
    elif [ "$now_acl" != "$acl" ]; then
        echo "mosquitto-watch: mosquitto.acl changed: reloading" >&2
        kill -HUP "$pid" 2>/dev/null
    fi
    acl=$now_acl
    crl=$now_crl
done
wait "$pid"
