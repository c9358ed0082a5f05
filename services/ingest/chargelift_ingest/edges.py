"""Which chargers an edge may affect: those its certificate lists, nothing else.

The broker lets an edge write only its chargers' topics and its own ``edges/<edge>/…``,
but it cannot check what a payload says: the charger list on ``edges/<edge>/chargers``
could name any charger. Ingest therefore keeps, of every list, only the chargers the
edge's own certificate names (``urn:chargelift:charger:<id>`` URI SANs, written by
``chargelift-certs``), read from the certificate directory it already has
(``MQTT_CERTS_DIR/clients/<edge>.crt``). An edge without a readable edge certificate
there (revoked: moved aside; never issued) affects no charger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from chargelift_contract.identity import chargers_of_uris

log = logging.getLogger(__name__)

#: The role (OU) of an edge certificate.
EDGE_ROLE = "edge"


@dataclass(frozen=True, slots=True)
class _Entry:
    stamp: tuple[int, int, int] | None  # (inode, size, mtime_ns) of the file read
    chargers: frozenset[str]


class EdgeCertificates:
    """The chargers each edge's certificate lists, re-read when its file changes."""

    def __init__(self, clients_dir: Path) -> None:
        self._dir = clients_dir
        self._cache: dict[str, _Entry] = {}

    def chargers(self, edge: str) -> frozenset[str]:
        path = self._dir / f"{edge}.crt"
        try:
            st = path.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        cached = self._cache.get(edge)
        if cached is not None and cached.stamp == stamp:
            return cached.chargers
        chargers = frozenset() if stamp is None else self._read(edge, path)
        if stamp is None:
            log.warning("edge %s: no certificate %s: it may affect no charger", edge, path)
        self._cache[edge] = _Entry(stamp, chargers)
        return chargers

    @staticmethod
    def _read(edge: str, path: Path) -> frozenset[str]:
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            log.warning("edge %s: cannot read %s (%s): it may affect no charger", edge, path, exc)
            return frozenset()
        cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        ous = [
            a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        ]
        if cns != [edge] or ous != [EDGE_ROLE]:
            log.warning(
                "edge %s: %s is not its edge certificate (CN %s, OU %s): it may affect no charger",
                edge,
                path,
                cns,
                ous,
            )
            return frozenset()
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return frozenset()
        return chargers_of_uris(san.value.get_values_for_type(x509.UniformResourceIdentifier))
