#!/bin/sh
# The `certs` and `sim-certs` services of docker-compose.yml (image
# services/certs/Dockerfile).
#
#   no arguments        first start: create what is missing (CA, broker certificate with
#                       the compose names + $BROKER_SANS, ingest, monitor and api
#                       (a controller) identities;
#                       charger identities amtron-1..$SIM_COUNT for the simulator only
#                       when SIM_COUNT is set, which only the sim profile's sim-certs
#                       does), re-sign the CRL when it expires within 90 days, regenerate
#                       the ACL
#   any arguments       run `chargelift-certs --dir $CERTS_DIR <arguments>`, e.g.
#                       `docker compose run --rm certs client wb-garage --role charger`
#
# Either way it ends by giving every private key to the one account that reads it
# (0600): broker.key to Mosquitto (uid $MOSQUITTO_UID; the broker drops to it before it
# reads the key), ingest.key to ingest (uid 10001), api.key to the API (uid 10002),
# charger keys to the poller
# (uid 10003); the CA key (in its own volume, $CHARGELIFT_CA_KEY) stays root's.
# That chown is why compose runs it as root.
set -eu
dir=${CERTS_DIR:-/certs}
certs() { chargelift-certs --dir "$dir" "$@"; }

# The CA's key lives in its own volume ($CHARGELIFT_CA_KEY, mounted only here). A
# certs volume from before (or an old backup) still has it beside ca.crt: move it.
if [ -n "${CHARGELIFT_CA_KEY:-}" ] && [ -f "$dir/ca.key" ] && [ "$dir/ca.key" != "$CHARGELIFT_CA_KEY" ]; then
    if [ -f "$CHARGELIFT_CA_KEY" ]; then
        echo "certs: $dir/ca.key and $CHARGELIFT_CA_KEY both exist; keeping $CHARGELIFT_CA_KEY" >&2
        rm -f "$dir/ca.key"
    else
        mkdir -p "$(dirname "$CHARGELIFT_CA_KEY")"
        chmod 700 "$(dirname "$CHARGELIFT_CA_KEY")"
        cp -p "$dir/ca.key" "$CHARGELIFT_CA_KEY" && rm -f "$dir/ca.key"
        echo "certs: moved the CA key to $CHARGELIFT_CA_KEY (not mounted by any service)" >&2
    fi
fi

if [ "$#" -gt 0 ]; then
    status=0
    certs "$@" || status=$?
else
    status=0
    [ -f "$dir/ca.crt" ] || certs init
    if [ ! -f "$dir/broker.crt" ]; then
        set --
        for san in $(echo "${BROKER_SANS:-}" | tr ',' ' '); do set -- "$@" --san "$san"; done
        certs server "$@"
    fi
    # api: a controller of every charger (it publishes the commands it accepts)
    for id in ingest monitor api; do
        [ -f "$dir/clients/$id.crt" ] || certs client "$id" --role service
    done
    # the broker's health check logs in with an identity of its own (role monitor): the
    # broker binds a client id to its identity, so it must not share one with a dashboard
    [ -f "$dir/clients/healthcheck.crt" ] || certs client healthcheck --role monitor
    # the second ingest of the scale-out profile (an identity of role ingest)
    [ -f "$dir/clients/ingest-2.crt" ] || certs client ingest-2 --role ingest
    i=1
    while [ "$i" -le "${SIM_COUNT:-0}" ]; do
        [ -f "$dir/clients/amtron-$i.crt" ] || certs client "amtron-$i" --role charger
        i=$((i + 1))
    done
    # An expired CRL makes the broker refuse every client: every `up` renews it in time.
    certs crl --if-within 90
    certs acl >/dev/null
fi

[ -f "$dir/broker.key" ] && chown "${MOSQUITTO_UID:-1883}" "$dir/broker.key"
for key in "$dir"/clients/*.key; do
    [ -f "$key" ] || continue
    case "$(basename "$key" .key)" in
        ingest|ingest-[0-9]*) chown 10001 "$key" ;;
        api) chown 10002 "$key" ;;
        monitor|healthcheck|poller) ;;
        *) chown 10003 "$key" ;;
    esac
done
exit "$status"
