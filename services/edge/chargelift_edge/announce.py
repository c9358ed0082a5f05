"""The edge identity's own topics: what the edge announces on every MQTT connection.

With ``[mqtt] identity = "edge"`` one connection carries all chargers of the poller,
and its last will (``edges/{edge}/availability`` = ``offline``, retained, QoS 1) is the
only thing the broker publishes when the poller dies. So on every connection, before
the chargers' own rows matter, the edge publishes (retained, QoS 1):

1. ``edges/{edge}/chargers``: the JSON list of its charger ids, so that a consumer
   knows which chargers the will speaks for (ingest records each of them offline);
2. ``edges/{edge}/availability`` = ``online`` (the will may have said ``offline``).

Each charger's own ``chargers/{id}/availability`` still travels through the outbox as
with the per-charger identity (:mod:`chargelift_edge.publisher`, :mod:`.coordinator`).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from chargelift_contract import (
    edge_availability_topic,
    edge_chargers_topic,
    encode_edge_chargers,
)
from chargelift_contract.identity import chargers_of_uris
from chargelift_contract.topics import ONLINE
from chargelift_edge.publisher import PublishClient
from chargelift_runtime.mqtt import ConnectionLostError, PublishRefusedError

log = logging.getLogger(__name__)


class EdgeCertificateError(ValueError):
    """The edge certificate cannot be read or does not cover the configured chargers."""


def listed_chargers(cert_file: Path, *, timeout: float = 30.0) -> frozenset[str]:
    """The chargers an edge certificate lists, read in a child process.

    Checked at start-up: Mosquitto answers a publish the ACL denies with 0x87 *and*
    closes the connection (2.0.11, measured), so with the edge identity one charger
    the certificate lacks would disconnect all the others again and again. A child
    process, because importing ``cryptography`` costs the poller 7.6 MB of RSS for
    good (measured), 5 % of its 150 MB budget at 1,000 chargers.
    """
    done = subprocess.run(  # noqa: S603 - our own interpreter and module, a path argument
        [sys.executable, "-m", "chargelift_edge.announce", str(cert_file)],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise EdgeCertificateError(lines[-1] if lines else f"exit code {done.returncode}")
    return frozenset(orjson.loads(done.stdout))


def certificate_chargers(cert_file: Path) -> frozenset[str]:
    """The chargers an edge certificate lists (its ``urn:chargelift:charger:`` URI SANs)."""
    from cryptography import x509  # only here: see listed_chargers

    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise EdgeCertificateError(f"cannot read the edge certificate {cert_file}: {exc}") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return frozenset()
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return chargers_of_uris(uris)


class EdgeAnnouncer:
    """Publishes the edge's charger list and ``online`` on each connection."""

    def __init__(self, edge_id: str, chargers: Sequence[str], client: PublishClient) -> None:
        self.edge_id = edge_id
        self._client = client
        self._chargers_topic = edge_chargers_topic(edge_id)
        self._availability_topic = edge_availability_topic(edge_id)
        self._chargers = encode_edge_chargers(chargers)
        self.announced = 0  # connections on which both messages were acknowledged

    async def run(self) -> None:
        """Announce on every connection, for the life of the process."""
        while True:
            await self._client.wait_connected()
            try:
                await self.announce()
            except ConnectionLostError:
                continue  # the next connection announces again
            except PublishRefusedError as exc:
                # The certificate is not an edge certificate of this id (or the ACL is
                # stale): nobody will learn that the chargers go offline with the edge.
                log.error(
                    "edge %s: %s; check the certificate (chargelift-certs client %s "
                    "--role edge) and reload the broker",
                    self.edge_id,
                    exc,
                    self.edge_id,
                )
                # Mosquitto drops a connection whose retained publish it refuses; the
                # next connection (after the client's backoff) tries again.
            await self._client.wait_disconnected()

    async def announce(self) -> None:
        """Publish the charger list, then ``online``; return when both are acknowledged."""
        listed = self._client.publish_nowait(
            self._chargers_topic, self._chargers, qos=1, retain=True
        )
        try:
            online = self._client.publish_nowait(
                self._availability_topic, ONLINE, qos=1, retain=True
            )
        except ConnectionLostError:
            listed.cancel()
            raise
        results = await asyncio.gather(listed, online, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self.announced += 1
        log.info("edge %s announced (%s)", self.edge_id, self._chargers_topic)


def _main(argv: Sequence[str]) -> int:
    """``python -m chargelift_edge.announce CERT``: the listed chargers as a JSON array."""
    try:
        chargers = certificate_chargers(Path(argv[0]))
    except EdgeCertificateError as exc:
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.buffer.write(orjson.dumps(sorted(chargers)))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
