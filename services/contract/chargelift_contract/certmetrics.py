"""When the certificates a service can see expire, as a Prometheus metric.

An expired CA, broker or client certificate stops every connection that depends on it,
and nothing in the data flow warns before it happens. Each service therefore exports

    chargelift_certificate_expiry_timestamp_seconds{file="…", subject="…"}

(the certificate's notAfter, Unix seconds) for the certificate files it uses, read at
every scrape so that a renewed file is picked up without a restart. An alert compares
it with ``time()`` (deploy/prometheus/alerts.yml). A file that cannot be read or parsed
is reported as ``chargelift_certificate_read_errors`` instead of failing the scrape.

Parsing uses only the standard library (the same decoder ``getpeercert()`` uses), so
the poller on a Raspberry Pi needs no X.509 package for it.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# CPython's PEM decoder behind SSLSocket.getpeercert(); present in every CPython 3.
# ``ssl.SSLContext.get_ca_certs`` would be public but returns CA certificates only.
_decode_cert: Callable[[str], dict[str, Any]] = ssl._ssl._test_decode_cert  # type: ignore[attr-defined]

EXPIRY_METRIC = "chargelift_certificate_expiry_timestamp_seconds"
ERRORS_METRIC = "chargelift_certificate_read_errors"


@dataclass(frozen=True, slots=True)
class CertExpiry:
    """One certificate of a PEM file: whose it is and when it stops being valid."""

    file: Path
    subject: str
    not_after: float


def read_expiry(path: Path) -> list[CertExpiry]:
    """The (first) certificate in the PEM file at ``path``.

    Raises ValueError when the file is missing, unreadable or holds no certificate
    the TLS library can decode.
    """
    try:
        cert = _decode_cert(str(path))
    except ssl.SSLError as exc:
        raise ValueError(f"{path}: {exc.args[0] if exc.args else exc}") from None
    subject = dict(rdn[0] for rdn in cert["subject"])
    return [
        CertExpiry(
            file=path,
            subject=str(subject.get("commonName", "")),
            not_after=float(ssl.cert_time_to_seconds(str(cert["notAfter"]))),
        )
    ]


def certificate_files(certs_dir: Path | None, *extra: Path) -> list[Path]:
    """``extra`` plus every ``*.crt`` in ``certs_dir`` and its ``clients/`` (sorted, unique).

    Keys are never opened: only ``.crt`` files, which hold public data.
    """
    paths: dict[Path, None] = {p: None for p in extra}
    if certs_dir is not None:
        for folder in (certs_dir, certs_dir / "clients"):
            if folder.is_dir():
                for p in sorted(folder.glob("*.crt")):
                    paths.setdefault(p, None)
    return list(paths)


class CertificateExpiryCollector(Collector):
    """A collector that reads the files from ``files()`` at every scrape."""

    def __init__(self, files: Callable[[], Iterable[Path]]) -> None:
        self._files = files

    def collect(self) -> Iterator[GaugeMetricFamily]:
        expiry = GaugeMetricFamily(
            EXPIRY_METRIC,
            "notAfter of a certificate this service uses (Unix time)",
            labels=["file", "subject"],
        )
        errors = 0
        for path in self._files():
            try:
                certs = read_expiry(path)
            except (OSError, ValueError):
                errors += 1
                continue
            for cert in certs:
                expiry.add_metric([str(cert.file), cert.subject], cert.not_after)
        yield expiry
        yield GaugeMetricFamily(
            ERRORS_METRIC, "certificate files that could not be read at this scrape", errors
        )
