"""Start-up checks: what must hold before the poller connects to anything.

Every charger's driver is registered; every MQTT identity has its key pair (with the
edge identity: the edge's, and its certificate lists every charger of the file, or the
broker would drop the connection at the first refused publish); the CA bundle exists.
A failed check is a :class:`StartupError` whose message says what to do (never a secret).
"""

from __future__ import annotations

from chargelift_edge.announce import EdgeCertificateError, listed_chargers
from chargelift_poller.config import MqttSettings, PollerConfig
from chargelift_poller.drivers import REGISTRY, DriverRegistryError
from chargelift_runtime.mqtt import TlsFiles


class StartupError(Exception):
    """The poller cannot start; the message says why (and never contains a secret)."""


def _require_key_pair(tls: TlsFiles, who: str, hint: str) -> None:
    for path in (tls.cert_file, tls.key_file):
        if not path.is_file():
            raise StartupError(f"{who}: no certificate file {path} {hint}")


def startup_checks(mqtt: MqttSettings, config: PollerConfig) -> None:
    """Raise :class:`StartupError` for the first thing that would stop the poller."""
    chargers = config.chargers
    for c in chargers:
        try:
            REGISTRY.factory(c.driver)
        except DriverRegistryError as exc:
            raise StartupError(f"charger {c.id}: {exc}") from None
    edge_id = config.mqtt.edge_id
    if edge_id is not None:
        tls = mqtt.tls(edge_id)
        _require_key_pair(
            tls,
            f"edge {edge_id}",
            f"(issue one: chargelift-certs client {edge_id} --role edge --charger <id> ...)",
        )
        try:
            listed = listed_chargers(tls.cert_file)
        except EdgeCertificateError as exc:
            raise StartupError(f"edge {edge_id}: {exc}") from None
        missing = sorted(c.id for c in chargers if c.id not in listed)
        if missing:
            shown = ", ".join(missing[:10]) + (
                f" and {len(missing) - 10} more" if missing[10:] else ""
            )
            raise StartupError(
                f"edge {edge_id}: its certificate {tls.cert_file} does not list "
                f"charger(s) {shown}; the broker would refuse their messages and drop the "
                f"edge's connection each time. Re-issue it with every charger: chargelift-certs "
                f"client {edge_id} --role edge --charger <id> ... --force, then reload "
                "the broker"
            )
    else:
        for c in chargers:
            _require_key_pair(
                mqtt.tls(c.identity),
                f"charger {c.id}",
                f"for identity {c.identity!r} (issue one: chargelift-certs client {c.identity})",
            )
    if not mqtt.ca_file.is_file():
        raise StartupError(f"MQTT_CA_FILE {mqtt.ca_file} does not exist")
