"""The small CA behind chargelift's mutual TLS: create, issue, list, revoke, ACL.

Layout of a certificate directory (``certs/`` by default)::

    ca.crt, ca.key                 the CA (10 years by default); the key may live
                                   elsewhere: CHARGELIFT_CA_KEY (compose keeps it in a
                                   volume of its own that only the certs service mounts)
    broker.crt, broker.key         the broker's server certificate
    clients/<identity>.crt, .key   one pair per client; CN = identity, OU = role
                                   (charger, service or edge; an edge certificate
                                   lists its chargers as urn:chargelift:charger:<id>
                                   URI SANs)
    clients/revoked/               revoked pairs, moved aside as <identity>-<serial>.*
    crl.pem                        the certificate revocation list (always present)
    mosquitto.acl                  the broker's ACL, regenerated on every issue/revoke

Keys are ECDSA P-256 (RSA-3072 on request) and are created with mode 0600 (never
chmod-ed after the fact, so there is no moment at which they are readable). Nothing
is overwritten without ``force``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chargelift_contract.acl import (
    Grant,
    acl_lines,
    bridge_grants,
    charger_grants,
    controller_grants,
    edge_grants,
    homeassistant_grants,
    monitor_grants,
    reader_grants,
)
from chargelift_contract.identity import charger_urn, listed_chargers
from chargelift_contract.topics import CHARGER_ID_RE, CHARGER_ID_RULE

KeyType = Literal["ec", "rsa"]
Role = Literal[
    "charger", "service", "edge", "ingest", "monitor", "controller", "bridge", "homeassistant"
]
ROLES: tuple[Role, ...] = (
    "charger", "service", "edge", "ingest", "monitor", "controller", "bridge", "homeassistant"
)  # fmt: skip
#: Roles whose certificate may list chargers (URI SANs): an edge must, a controller may
#: (none listed: it may command every charger), Home Assistant may (the chargers it may
#: command; none listed: it may command none).
LISTING_ROLES = frozenset({"edge", "controller", "homeassistant"})
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

#: Identities of the services; they can never be charger ids.
SERVICE_IDENTITIES = frozenset({"ingest", "api", "poller", "monitor"})
#: What each reading role may do on the broker. The broker binds a client's id to its
#: identity (one connection per identity), so a second ingest process of a ``$share``
#: group or a second dashboard needs an identity of its own with the same rights:
#: ``chargelift-certs client ingest-2 --role ingest``. The service identities
#: ``ingest`` and ``monitor`` (role ``service``) have the rights of these roles.
ROLE_RULES: dict[str, tuple[str, ...]] = {
    # stores every reading: reads all chargers' topics and the edges' (an edge's last
    # will marks its chargers offline); writes nothing
    "ingest": tuple(acl_lines(reader_grants())),
    # dashboards, people (mosquitto_sub) and the broker's health check: read-only
    "monitor": tuple(acl_lines(monitor_grants())),
    # the Home Assistant bridge (services/bridge): reads every charger, writes its own
    # output (chargelift/ha/#) and the discovery documents
    "bridge": tuple(acl_lines(bridge_grants())),
}
#: The role of a service identity with role ``service``: ingest reads, monitor reads,
#: the API is a controller of every charger (it publishes the commands it accepts).
_SERVICE_ROLES = {"ingest": "ingest", "monitor": "monitor", "api": "controller"}
DEV_CHARGERS = ("amtron-1", "amtron-2", "amtron-3")
DEV_SERVICES = ("ingest", "api", "monitor")
#: The Home Assistant bridge's identity, and Home Assistant's (allowed to command the
#: development chargers), in a development set.
DEV_BRIDGE = "bridge"
DEV_HOMEASSISTANT = "homeassistant"
BROKER_SANS = ("localhost", "mosquitto", "127.0.0.1")
CRL_DAYS = 365
#: `dev-set` and the compose `certs` service re-sign the CRL when less than this is left,
#: so a stack that is restarted now and then never reaches an expired CRL.
CRL_RENEW_DAYS = 90

#: The services' fixed ACL rules ship inside the package (package data: a checkout, a
#: wheel and the container image all have them here); CHARGELIFT_SERVICES_ACL may point
#: elsewhere.
SERVICES_ACL = Path(__file__).resolve().parent / "acl.services"


class CertError(Exception):
    """Something the operator must fix; the message says what to do."""


@dataclass(frozen=True, slots=True)
class CertInfo:
    """One certificate in the directory, as ``list`` shows it."""

    identity: str
    kind: Literal["ca", "broker", "client"]
    role: str
    serial: int
    not_after: dt.datetime
    revoked: bool
    path: Path
    #: The chargers an edge certificate may write for (empty for other roles).
    chargers: tuple[str, ...] = ()

    @property
    def days_left(self) -> int:
        return (self.not_after - _now()).days

    @property
    def status(self) -> str:
        if self.revoked:
            return "revoked"
        return "expired" if self.not_after <= _now() else "valid"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- files --------------------------------------------------------------------------


def _write_private(path: Path, data: bytes, *, force: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    if force and path.exists():
        path.unlink()  # a fresh inode, created 0600, whoever owned the old one
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    tmp.replace(path)  # atomic: the broker never reads half a CRL or ACL


def _new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def ca_key_path(certs_dir: Path) -> Path:
    """The CA's private key: ``CHARGELIFT_CA_KEY``, else ``ca.key`` beside ``ca.crt``."""
    return Path(os.environ.get("CHARGELIFT_CA_KEY") or certs_dir / "ca.key")


def _load_ca(certs_dir: Path) -> tuple[x509.Certificate, PrivateKey]:
    crt, key = certs_dir / "ca.crt", ca_key_path(certs_dir)
    if not crt.exists() or not key.exists():
        raise CertError(f"no CA in {certs_dir}: run `chargelift-certs --dir {certs_dir} init`")
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertError(f"{key}: unsupported key type")
    return _load_cert(crt), loaded


def validate_identity(identity: str) -> str:
    if not CHARGER_ID_RE.fullmatch(identity):  # an identity may be a charger's: its rule
        raise CertError(f"invalid identity {identity!r}: {CHARGER_ID_RULE}")
    return identity


def validate_chargers(role: str, chargers: Iterable[str]) -> tuple[str, ...]:
    """The charger list of a certificate of ``role``: required for an edge, optional for
    a controller (none: every charger), else none."""
    listed = tuple(dict.fromkeys(chargers))  # duplicates collapse, order kept
    if role not in LISTING_ROLES:
        if listed:
            raise CertError(
                "only an edge, controller or homeassistant certificate lists chargers "
                f"(role {role!r})"
            )
        return ()
    if not listed and role == "edge":
        raise CertError("an edge certificate needs at least one --charger <id>")
    for charger in listed:
        if not CHARGER_ID_RE.fullmatch(charger):
            raise CertError(f"invalid charger id {charger!r}: {CHARGER_ID_RULE}")
        if charger in SERVICE_IDENTITIES:
            raise CertError(f"{charger!r} is reserved for a service, not a charger id")
    return listed


def client_paths(certs_dir: Path, identity: str) -> tuple[Path, Path]:
    clients = certs_dir / "clients"
    return clients / f"{identity}.crt", clients / f"{identity}.key"


# --- CA -----------------------------------------------------------------------------


def create_ca(
    certs_dir: Path, *, force: bool = False, days: int = 3650, key_type: KeyType = "ec"
) -> None:
    """Create the CA, an empty CRL and the ACL. Refuses to replace a CA without ``force``."""
    crt = certs_dir / "ca.crt"
    if crt.exists() and not force:
        return
    key = _new_key(key_type)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chargelift"),
            x509.NameAttribute(NameOID.COMMON_NAME, "chargelift CA"),
        ]
    )
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .sign(key, hashes.SHA256())
    )
    _write_private(ca_key_path(certs_dir), _key_pem(key), force=force)
    _write_public(crt, cert.public_bytes(serialization.Encoding.PEM))
    (certs_dir / "crl.pem").unlink(missing_ok=True)  # entries of another CA mean nothing
    _write_crl(certs_dir, revoked=())
    write_acl(certs_dir)


def _issue(
    certs_dir: Path,
    *,
    subject: x509.Name,
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    crt_path: Path,
    key_path: Path,
    days: int,
    force: bool,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    key_type: KeyType = "ec",
) -> Path:
    if crt_path.exists() and not force:
        raise CertError(f"{crt_path} exists: use --force to replace it (or `rotate`)")
    ca_cert, ca_key = _load_ca(certs_dir)
    key = _new_key(key_type)
    start = not_before or (_now() - dt.timedelta(minutes=5))
    end = not_after or (_now() + dt.timedelta(days=days))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_private(key_path, _key_pem(key), force=force)
    _write_public(crt_path, cert.public_bytes(serialization.Encoding.PEM))
    return crt_path


def issue_server(
    certs_dir: Path, *, sans: Iterable[str] = (), days: int = 825, force: bool = False
) -> Path:
    """The broker's certificate: localhost, mosquitto (compose), 127.0.0.1 and ``sans``."""
    names: list[x509.GeneralName] = []
    for name in (*BROKER_SANS, *sans):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chargelift"),
            x509.NameAttribute(NameOID.COMMON_NAME, "chargelift broker"),
        ]
    )
    return _issue(
        certs_dir,
        subject=subject,
        sans=names,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        crt_path=certs_dir / "broker.crt",
        key_path=certs_dir / "broker.key",
        days=days,
        force=force,
    )


def issue_client(
    certs_dir: Path,
    identity: str,
    *,
    role: Role = "charger",
    chargers: Sequence[str] = (),
    days: int = 825,
    force: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Path:
    """A client certificate for ``identity`` (CN) with ``role`` (OU); regenerates the ACL.

    An ``edge`` certificate (one poller's identity for all the chargers of its site)
    carries ``chargers`` as URI SANs; the ACL lets it write exactly their topics and
    its own ``edges/<identity>/...``. With ``force``, the certificate it replaces is
    revoked first (as ``rotate`` does), so no valid certificate is ever left unlisted.
    """
    validate_identity(identity)
    listed = validate_chargers(role, chargers)
    if role == "service" and identity not in SERVICE_IDENTITIES:
        raise CertError(
            f"{identity!r} is not a service identity (services: {sorted(SERVICE_IDENTITIES)})"
        )
    if role in ("charger", "edge", "controller") and identity in SERVICE_IDENTITIES:
        raise CertError(f"{identity!r} is reserved for a service: pick another {role} id")
    if role in ROLE_RULES and identity in SERVICE_IDENTITIES - {role}:
        raise CertError(f"{identity!r} is reserved for a service: pick another {role} id")
    crt, key = client_paths(certs_dir, identity)
    if crt.exists() and force:
        # The certificate being replaced stays valid until it expires unless it is
        # revoked: revoke it (listed under clients/revoked/, its serial in the CRL).
        revoke(certs_dir, identity)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chargelift"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.COMMON_NAME, identity),
        ]
    )
    path = _issue(
        certs_dir,
        subject=subject,
        sans=[x509.UniformResourceIdentifier(charger_urn(c)) for c in listed],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        crt_path=crt,
        key_path=key,
        days=days,
        force=force,
        not_before=not_before,
        not_after=not_after,
    )
    write_acl(certs_dir)
    return path


# --- revocation -----------------------------------------------------------------------


def _read_crl(certs_dir: Path) -> x509.CertificateRevocationList | None:
    path = certs_dir / "crl.pem"
    if not path.exists():
        return None
    return x509.load_pem_x509_crl(path.read_bytes())


def revoked_serials(certs_dir: Path) -> set[int]:
    crl = _read_crl(certs_dir)
    return set() if crl is None else {entry.serial_number for entry in crl}


def _write_crl(certs_dir: Path, revoked: Iterable[x509.RevokedCertificate]) -> None:
    ca_cert, ca_key = _load_ca(certs_dir)
    old = _read_crl(certs_dir)
    number = 1
    if old is not None:
        ext = old.extensions.get_extension_for_class(x509.CRLNumber)
        number = ext.value.crl_number + 1
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=CRL_DAYS))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca_key, hashes.SHA256())
    _write_public(certs_dir / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))


def crl_next_update(certs_dir: Path) -> dt.datetime | None:
    """When the CRL expires (its nextUpdate); None when there is no CRL."""
    crl = _read_crl(certs_dir)
    return None if crl is None else crl.next_update_utc


def refresh_crl(certs_dir: Path, *, within_days: int | None = None) -> bool:
    """Re-sign the CRL with a fresh nextUpdate, same entries; return whether it did.

    With ``within_days``, only when the CRL expires within that many days (or is
    missing). An expired CRL makes the broker refuse every client: re-sign it at
    least yearly (`dev-set` and the compose ``certs`` service do it when
    :data:`CRL_RENEW_DAYS` are left).
    """
    old = _read_crl(certs_dir)
    if within_days is not None and old is not None:
        next_update = old.next_update_utc
        if next_update is not None and next_update - _now() > dt.timedelta(days=within_days):
            return False
    _write_crl(certs_dir, list(old) if old is not None else [])
    return True


def revoke(certs_dir: Path, identity: str) -> int:
    """Revoke the current certificate of ``identity``; return its serial.

    Adds the serial to ``crl.pem`` (earlier entries kept), moves the pair aside to
    ``clients/revoked/`` and regenerates the ACL. The broker needs a reload (SIGHUP).
    """
    validate_identity(identity)
    crt, key = client_paths(certs_dir, identity)
    if not crt.exists():
        raise CertError(f"no certificate for {identity!r} in {certs_dir / 'clients'}")
    serial = _load_cert(crt).serial_number
    old = _read_crl(certs_dir)
    entries = list(old) if old is not None else []
    if serial not in {e.serial_number for e in entries}:
        entries.append(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(_now() - dt.timedelta(seconds=1))
            .build()
        )
    _write_crl(certs_dir, entries)
    aside = certs_dir / "clients" / "revoked"
    aside.mkdir(parents=True, exist_ok=True)
    crt.replace(aside / f"{identity}-{serial:x}.crt")
    if key.exists():
        key.replace(aside / f"{identity}-{serial:x}.key")
    write_acl(certs_dir)
    return serial


def rotate(certs_dir: Path, identity: str, *, days: int = 825) -> Path:
    """Revoke the current certificate of ``identity`` and issue a new one: same role,
    same chargers (an edge's)."""
    crt, _ = client_paths(certs_dir, identity)
    if not crt.exists():
        raise CertError(f"no certificate for {identity!r} to rotate")
    cert = _load_cert(crt)
    role = _role(cert)
    new_role: Role = next((r for r in ROLES if r == role), "charger")
    chargers = _chargers(cert) if new_role in LISTING_ROLES else ()
    revoke(certs_dir, identity)
    return issue_client(certs_dir, identity, role=new_role, chargers=chargers, days=days)


# --- listing and the ACL --------------------------------------------------------------


def _role(cert: x509.Certificate) -> str:
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return str(ous[0].value) if ous else "?"


def _chargers(cert: x509.Certificate) -> tuple[str, ...]:
    """The chargers an edge certificate lists (its ``urn:chargelift:charger:`` URI SANs)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return listed_chargers(uris)


def _cn(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else "?"


def list_certs(certs_dir: Path) -> list[CertInfo]:
    """Every certificate: the CA, the broker and each client (revoked ones included)."""
    revoked = revoked_serials(certs_dir)
    out: list[CertInfo] = []

    def add(path: Path, kind: Literal["ca", "broker", "client"], identity: str | None) -> None:
        cert = _load_cert(path)
        out.append(
            CertInfo(
                identity=identity or _cn(cert),
                kind=kind,
                role=_role(cert) if kind == "client" else kind,
                serial=cert.serial_number,
                not_after=cert.not_valid_after_utc,
                revoked=cert.serial_number in revoked,
                path=path,
                chargers=_chargers(cert) if kind == "client" else (),
            )
        )

    if (certs_dir / "ca.crt").exists():
        add(certs_dir / "ca.crt", "ca", "ca")
    if (certs_dir / "broker.crt").exists():
        add(certs_dir / "broker.crt", "broker", "broker")
    clients = certs_dir / "clients"
    for path in sorted(clients.glob("*.crt")):
        add(path, "client", None)
    for path in sorted((clients / "revoked").glob("*.crt")):
        add(path, "client", None)
    return out


def render_acl(certs_dir: Path, services_acl: Path | None = None) -> str:
    """The broker's ACL: the services' fixed rules, then one entry per valid charger
    or edge certificate."""
    services = services_acl or Path(os.environ.get("CHARGELIFT_SERVICES_ACL") or SERVICES_ACL)
    if not services.is_file():
        # Refuse rather than write a broker policy that silently differs from
        # chargelift_certs/acl.services.
        raise CertError(
            f"the services' ACL rules {services} are missing: set CHARGELIFT_SERVICES_ACL"
        )
    lines = [
        "# Generated by chargelift-certs from the issued certificates. Do not edit:",
        "# it is rewritten on every issue, rotate and revoke. No `pattern` lines: an",
        "# identity not listed here may neither publish nor subscribe.",
        "",
    ]
    lines += [services.read_text().rstrip(), ""]
    revoked = revoked_serials(certs_dir)
    for info in list_certs(certs_dir):
        if info.kind != "client" or info.serial in revoked or info.status != "valid":
            continue
        role = _SERVICE_ROLES.get(info.identity, "") if info.role == "service" else info.role
        grants: tuple[Grant, ...]
        if role in ROLE_RULES:
            lines += [f"user {info.identity}", *ROLE_RULES[role], ""]
            continue
        if role == "charger":
            # its fields and availability; read its commands, write their results
            grants = charger_grants(info.identity)
        elif role == "edge":
            # An edge: the same rights as each listed charger's own identity, plus the
            # edge's availability and charger list (edges/<edge>/availability, .../chargers).
            grants = edge_grants(info.identity, info.chargers)
        elif role == "controller":
            # commands to the listed chargers (every charger when none is listed)
            grants = controller_grants(info.chargers)
        elif role == "homeassistant":
            # the bridge's output, discovery, availability, its birth message; commands
            # only to the listed chargers (none listed: read-only)
            grants = homeassistant_grants(info.chargers)
        else:
            continue
        lines += [f"user {info.identity}", *acl_lines(grants), ""]
    return "\n".join(lines)


def write_acl(certs_dir: Path, services_acl: Path | None = None) -> Path:
    path = certs_dir / "mosquitto.acl"
    _write_public(path, render_acl(certs_dir, services_acl).encode())
    return path


def expiring(certs_dir: Path, warn_days: int) -> list[CertInfo]:
    """Valid (not revoked) certificates that expire within ``warn_days`` or already did."""
    return [
        c
        for c in list_certs(certs_dir)
        if not c.revoked and c.not_after - _now() <= dt.timedelta(days=warn_days)
    ]


def dev_set(certs_dir: Path) -> None:
    """A complete development set; skips what exists, so it is safe to run every time."""
    create_ca(certs_dir)
    if not (certs_dir / "broker.crt").exists():
        issue_server(certs_dir)
    for name in DEV_SERVICES:
        if not client_paths(certs_dir, name)[0].exists():
            issue_client(certs_dir, name, role="service")
    for name in DEV_CHARGERS:
        if not client_paths(certs_dir, name)[0].exists():
            issue_client(certs_dir, name, role="charger")
    if not client_paths(certs_dir, DEV_BRIDGE)[0].exists():
        issue_client(certs_dir, DEV_BRIDGE, role="bridge")
    if not client_paths(certs_dir, DEV_HOMEASSISTANT)[0].exists():
        issue_client(certs_dir, DEV_HOMEASSISTANT, role="homeassistant", chargers=DEV_CHARGERS)
    refresh_crl(certs_dir, within_days=CRL_RENEW_DAYS)
    write_acl(certs_dir)
