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

Parsing uses only the standard library's public API: the first certificate or CRL of a
PEM file is base64-decoded and the few DER fields needed (a certificate's notAfter and
subject commonName, a CRL's nextUpdate) are read by a small DER walker below. No X.509
package: ``cryptography`` would cost the poller on a Raspberry Pi 7.6 MB of RSS for
good (it reads its edge certificate in a child process for that reason, and
tests/unit/poller/test_main.py checks that it never loads it); CPython's own decoder,
``ssl._ssl._test_decode_cert``, is private.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
    that can be decoded.
    """
    der = _pem_block(path, _PEM_CERT, "certificate")
    try:
        subject, not_after = _subject_and_not_after(der)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable certificate ({exc})") from None
    return [CertExpiry(file=path, subject=subject, not_after=not_after)]


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


# --- the few DER fields we need, with the standard library --------------------------
#
# Certificate ::= SEQUENCE { tbsCertificate TBSCertificate, ... }
# TBSCertificate ::= SEQUENCE { version [0] EXPLICIT OPTIONAL, serialNumber INTEGER,
#                               signature AlgorithmIdentifier, issuer Name,
#                               validity SEQUENCE { notBefore Time, notAfter Time },
#                               subject Name, ... }
# Name ::= SEQUENCE OF SET OF SEQUENCE { type OBJECT IDENTIFIER, value ANY }
# CertificateList ::= SEQUENCE { tbsCertList TBSCertList, ... }
# TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature AlgorithmIdentifier,
#                            issuer Name, thisUpdate Time, nextUpdate Time OPTIONAL, ... }
# Time ::= UTCTime (tag 0x17, YYMMDDHHMMSSZ) | GeneralizedTime (tag 0x18, YYYYMMDDHHMMSSZ)

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----(.+?)-----END X509 CRL-----", re.DOTALL)
_COMMON_NAME = bytes([0x55, 0x04, 0x03])  # OID 2.5.4.3
# DirectoryString and the like: UTF8String, PrintableString, TeletexString, IA5String,
# UniversalString, BMPString.
_STRING_CODECS = {
    0x0C: "utf-8",
    0x13: "ascii",
    0x14: "latin-1",
    0x16: "ascii",
    0x1C: "utf-32-be",
    0x1E: "utf-16-be",
}


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
    if tag == 0x17:  # UTCTime: years 1950-2049 (RFC 5280 4.1.2.5.1), not strptime's %y
        century = "19" if text[:2].isdigit() and int(text[:2]) >= 50 else "20"
        parsed = time.strptime(century + text, "%Y%m%d%H%M%SZ")
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
    der = _pem_block(path, _PEM_CRL, "X509 CRL")
    try:
        return _next_update(der)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable CRL ({exc})") from None


def _pem_block(path: Path, pattern: re.Pattern[bytes], what: str) -> bytes:
    """The DER of the first ``what`` PEM block in the file at ``path``."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    found = pattern.search(pem)
    if found is None:
        raise ValueError(f"{path}: no {what} in it")
    try:
        return base64.b64decode(b"".join(found.group(1).split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{path}: not a readable {what} ({exc})") from None


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The DER items one after the other in ``der[start:end]``."""
    items = []
    pos = start
    while pos < end:
        item = _der_item(der, pos)
        if item[2] > end:
            raise ValueError("truncated DER")
        items.append(item)
        pos = item[2]
    return items


def _subject_and_not_after(der: bytes) -> tuple[str, float]:
    _, outer, outer_end = _der_item(der, 0)  # Certificate
    tag, start, end = _der_item(der, outer)  # TBSCertificate
    if tag != 0x30 or end > outer_end:
        raise ValueError("not a certificate")
    fields = _children(der, start, end)
    if fields and fields[0][0] == 0xA0:  # version is optional
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or fields[3][0] != 0x30 or fields[4][0] != 0x30:
        raise ValueError("no validity or subject")
    validity = _children(der, fields[3][1], fields[3][2])
    if len(validity) != 2:
        raise ValueError("bad validity")
    tag, start, end = validity[1]
    not_after = _der_time(tag, der[start:end])
    common_name = ""
    for rdn in _children(der, fields[4][1], fields[4][2]):
        for attribute in _children(der, rdn[1], rdn[2]):
            parts = _children(der, attribute[1], attribute[2])
            if len(parts) != 2 or parts[0][0] != 0x06:
                raise ValueError("bad name attribute")
            (_, oid_start, oid_end), (value_tag, value_start, value_end) = parts
            if der[oid_start:oid_end] == _COMMON_NAME:  # the last one counts, as it did
                codec = _STRING_CODECS.get(value_tag)
                if codec is None:
                    raise ValueError(f"commonName is not a string (tag {value_tag:#x})")
                common_name = der[value_start:value_end].decode(codec)
    return common_name, not_after


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
