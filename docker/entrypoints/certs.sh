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
#                       the OCPP gateway: its edge identity ocpp-gateway (listing the
#                       chargers of every registered charge point), a copy of the broker's
#                       server certificate for its wss:// port, the spare charge point
#                       $OCPP_CHARGE_POINT_ID (profile 2; password $OCPP_PASSWORD, or one
#                       made once and kept in $OCPP_REGISTRY_DIR/spare.password) and, with
#                       SIM_COUNT, the simulated charge point ocpp-sim-1
#   ocpp <arguments>    run `chargelift-ocpp <arguments> --registry <the gateway's registry>`,
#                       then re-issue the gateway's identity if its chargers changed, e.g.
#                       `docker compose run --rm certs ocpp register garage-1 --url wss://HOST:9000/ocpp`
#   any arguments       run `chargelift-certs --dir $CERTS_DIR <arguments>`, e.g.
#                       `docker compose run --rm certs client wb-garage --role charger`
#
# Either way it ends by giving every private key to the one account that reads it
# (0600): broker.key to Mosquitto (uid $MOSQUITTO_UID; the broker drops to it before it
# reads the key), ingest.key to ingest (uid 10001), api.key to the API (uid 10002),
# charger keys to the poller
# (uid 10003), the OCPP gateway's files to it (uid 10005), bridge.key to the bridge (uid 10006), the simulated OCPP charge
# point's password to the simulator (uid 10004); the CA key (in its own volume, $CHARGELIFT_CA_KEY) stays root's.
# That chown is why compose runs it as root.
set -eu
dir=${CERTS_DIR:-/certs}
certs() { chargelift-certs --dir "$dir" "$@"; }
ocpp_dir=${OCPP_REGISTRY_DIR:-/ocpp}
registry=$ocpp_dir/charge_points.toml
spare=${OCPP_CHARGE_POINT_ID:-ocpp-spare}
# A password of 24 random bytes (32 characters), as `chargelift-ocpp register` makes them.
new_password() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

# The gateway's edge identity lists one charger per registered charge point (its id:
# connector 1) plus the `chargers` the registry names; re-issued only when that list
# changed (a re-issue revokes the old certificate, which restarts the broker).
ocpp_identity() {
    [ -f "$registry" ] || return 0
    wanted=$(python3 - "$registry" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    cps = tomllib.load(f).get("charge_points", {})
print(" ".join(sorted({c for cp, e in cps.items() for c in e.get("chargers", [cp])})))
PY
)
    [ -n "$wanted" ] || return 0
    have=$(certs list --json | python3 -c '
import json, sys
rows = [r for r in json.load(sys.stdin) if r["identity"] == "ocpp-gateway" and r["status"] == "valid"]
print(" ".join(sorted(rows[0]["chargers"])) if rows else "")')
    [ "$wanted" = "$have" ] && return 0
    set --
    for c in $wanted; do set -- "$@" --charger "$c"; done
    certs client ocpp-gateway --role edge --force "$@" >/dev/null
    echo "certs: the OCPP gateway's identity now lists: $wanted" >&2
}

# Register $1 with the password in file $2 (replacing an older registration).
ocpp_register() {
    chargelift-ocpp register "$1" --registry "$registry" --password-file "$2" --force >/dev/null
}

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

mkdir -p "$ocpp_dir" "$dir/ocpp"
if [ "${1:-}" = "ocpp" ]; then
    shift
    status=0
    chargelift-ocpp "$@" --registry "$registry" || status=$?
    ocpp_identity
elif [ "$#" -gt 0 ]; then
    status=0
    certs "$@" || status=$?
else
    status=0
    [ -f "$dir/ca.crt" ] || certs init
    if [ ! -f "$dir/broker.crt" ]; then
        set --
        for san in $(echo "${BROKER_SANS:-}" | tr ',' ' '); do set -- "$@" --san "$san"; done
        # ocpp: the OCPP gateway serves wss:// with this certificate too
        certs server --san ocpp "$@"
    fi
    # api: a controller of every charger (it publishes the commands it accepts)
    for id in ingest monitor api; do
        [ -f "$dir/clients/$id.crt" ] || certs client "$id" --role service
    done
    # the broker's health check logs in with an identity of its own (role monitor): the
    # broker binds a client id to its identity, so it must not share one with a dashboard
    [ -f "$dir/clients/healthcheck.crt" ] || certs client healthcheck --role monitor
    # the Home Assistant bridge (docs/integrations/home-assistant.md)
    [ -f "$dir/clients/bridge.crt" ] || certs client bridge --role bridge
    # the second ingest of the scale-out profile (an identity of role ingest)
    [ -f "$dir/clients/ingest-2.crt" ] || certs client ingest-2 --role ingest
    i=1
    while [ "$i" -le "${SIM_COUNT:-0}" ]; do
        [ -f "$dir/clients/amtron-$i.crt" ] || certs client "amtron-$i" --role charger
        i=$((i + 1))
    done
    # The OCPP gateway: the spare charge point (a real charger or any OCPP client can use
    # it at once: docs/ocpp.md) and, in the sim profile, the simulated one.
    if [ -n "${OCPP_PASSWORD:-}" ]; then
        (umask 077; printf '%s\n' "$OCPP_PASSWORD" >"$ocpp_dir/spare.password")
    elif [ ! -f "$ocpp_dir/spare.password" ]; then
        (umask 077; new_password >"$ocpp_dir/spare.password")
    fi
    ocpp_register "$spare" "$ocpp_dir/spare.password"
    if [ "${SIM_COUNT:-0}" -gt 0 ]; then
        [ -f "$dir/ocpp/sim.password" ] || (umask 077; new_password >"$dir/ocpp/sim.password")
        ocpp_register ocpp-sim-1 "$dir/ocpp/sim.password"
    fi
    ocpp_identity
    # the gateway's wss:// port: the broker's server certificate, a copy it may read
    for f in crt key; do
        cmp -s "$dir/broker.$f" "$dir/ocpp/server.$f" || (umask 077; cp "$dir/broker.$f" "$dir/ocpp/server.$f")
    done
    # An expired CRL makes the broker refuse every client: every `up` renews it in time.
    certs crl --if-within 90
    certs acl >/dev/null
fi

for f in "$registry" "$dir/ocpp/server.crt" "$dir/ocpp/server.key"; do
    [ -f "$f" ] && chown 10005 "$f"
done
[ -f "$dir/ocpp/sim.password" ] && chown 10004 "$dir/ocpp/sim.password"
[ -f "$dir/broker.key" ] && chown "${MOSQUITTO_UID:-1883}" "$dir/broker.key"
for key in "$dir"/clients/*.key; do
    [ -f "$key" ] || continue
    case "$(basename "$key" .key)" in
        ingest|ingest-[0-9]*) chown 10001 "$key" ;;
        api) chown 10002 "$key" ;;
        ocpp-gateway) chown 10005 "$key" ;;
        bridge) chown 10006 "$key" ;;
        monitor|healthcheck|poller) ;;
        *) chown 10003 "$key" ;;
    esac
done
exit "$status"
