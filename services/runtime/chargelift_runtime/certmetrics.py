"""When the certificates a service can see expire, as a Prometheus metric.

An expired CA, broker or client certificate stops every connection that depends on it,
and nothing in the data flow warns before it happens. Each service therefore exports

    chargelift_certificate_expiry_timestamp_seconds{file="…", subject="…"}

(the certificate's notAfter, Unix seconds) for the certificate files it uses, read at
every scrape so that a renewed file is picked up without a restart. The broker's
certificate revocation list expires too, and an expired CRL makes the broker refuse
*every* client; a service that sees it exports

    chargelift_crl_next_update_timestamp_seconds{file="…"}

(the CRL's nextUpdate). Alerts compare both with ``time()`` (deploy/prometheus/alerts.yml).
A file that cannot be read or parsed is reported as ``chargelift_certificate_read_errors``
instead of failing the scrape.

Parsing uses only the standard library (the same decoder ``getpeercert()`` uses), so
the poller on a Raspberry Pi needs no X.509 package for it.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
import ssl
import time
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
CRL_METRIC = "chargelift_crl_next_update_timestamp_seconds"


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


# --- the CRL's nextUpdate, from its DER with the standard library ----------------------
#
# CertificateList ::= SEQUENCE { tbsCertList TBSCertList, ... }
# TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature AlgorithmIdentifier,
#                            issuer Name, thisUpdate Time, nextUpdate Time OPTIONAL, ... }
# Time ::= UTCTime (tag 0x17, YYMMDDHHMMSSZ) | GeneralizedTime (tag 0x18, YYYYMMDDHHMMSSZ)

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----(.+?)-----END X509 CRL-----", re.DOTALL)


def _der_item(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER item at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _der_time(tag: int, raw: bytes) -> float:
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime: years 1950-2049 (RFC 5280 4.1.2.5.1)
        parsed = time.strptime(text, "%y%m%d%H%M%SZ")
    elif tag == 0x18:
        parsed = time.strptime(text, "%Y%m%d%H%M%SZ")
    else:
        raise ValueError(f"not a time (tag {tag:#x})")
    return float(calendar.timegm(parsed))


def read_crl_next_update(path: Path) -> float:
    """The nextUpdate (Unix seconds) of the PEM CRL at ``path``.

    Raises ValueError when the file is missing, unreadable, not a CRL or has no
    nextUpdate (a CRL without one never expires, which the broker's CRL check rejects).
    """
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    found = _PEM_CRL.search(pem)
    if found is None:
        raise ValueError(f"{path}: no X509 CRL in it")
    try:
        der = base64.b64decode(b"".join(found.group(1).split()), validate=True)
        return _next_update(der)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable CRL ({exc})") from None


def _next_update(der: bytes) -> float:
    _, outer, _ = _der_item(der, 0)  # CertificateList
    _, pos, tbs_end = _der_item(der, outer)  # TBSCertList
    fields: list[tuple[int, int, int]] = []
    while pos < tbs_end and len(fields) < 5:
        item = _der_item(der, pos)
        fields.append(item)
        pos = item[2]
    if fields and fields[0][0] == 0x02:  # version is optional
        fields = fields[1:]
    # signature, issuer, thisUpdate, nextUpdate
    if len(fields) < 4 or fields[3][0] not in (0x17, 0x18):
        raise ValueError("no nextUpdate")
    tag, start, end = fields[3]
    return _der_time(tag, der[start:end])


class CertificateExpiryCollector(Collector):
    """A collector that reads the files from ``files()`` (certificates) and ``crls()``
    (revocation lists) at every scrape."""

    def __init__(
        self,
        files: Callable[[], Iterable[Path]],
        crls: Callable[[], Iterable[Path]] = tuple,
    ) -> None:
        self._files = files
        self._crls = crls

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
        crl = GaugeMetricFamily(
            CRL_METRIC,
            "nextUpdate of the certificate revocation list the broker checks (Unix time): "
            "once past, the broker refuses every client",
            labels=["file"],
        )
        for path in self._crls():
            try:
                crl.add_metric([str(path)], read_crl_next_update(path))
            except ValueError:
                errors += 1
        yield crl
        yield GaugeMetricFamily(
            ERRORS_METRIC, "certificate files that could not be read at this scrape", errors
        )
