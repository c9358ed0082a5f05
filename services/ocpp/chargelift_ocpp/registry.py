"""The charge point registry: who may connect, with which security profile.

One TOML file (``OCPP_CHARGE_POINTS``), written by ``chargelift-ocpp register`` and
readable by a person::

    [charge_points.garage-1]
    profile = 2             # 1: Basic over ws:// (LAN), 2: TLS + Basic, 3: TLS + certificate
    password = "scrypt$16384$8$1$<salt>$<hash>"   # profiles 1 and 2, never in clear
    chargers = ["garage-1-1", "garage-1-2"]       # optional: the charger ids it reports for

The gateway re-reads the file when it changes (checked at each handshake); a file that
does not parse leaves the last good registry in force (logged, counted).

Passwords are hashed with scrypt (a fresh 16-byte salt each) and compared in constant
time; a new password is 24 random bytes (32 characters, URL-safe base64).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from chargelift_contract.topics import CHARGER_ID_RE, CHARGER_ID_RULE
from chargelift_ocpp.mapping import (
    CONNECTOR_SEPARATOR,
    MAX_CHARGE_POINT_ID_CHARS,
    MappingError,
    validate_charge_point_id,
)

log = logging.getLogger(__name__)

Profile = Literal[1, 2, 3]
PROFILES: tuple[Profile, ...] = (1, 2, 3)
#: The shortest password the gateway accepts (OCPP 1.6 security whitepaper: 16 bytes).
MIN_PASSWORD_BYTES = 16
#: The longest password compared (a longer one is refused before any hashing).
MAX_PASSWORD_BYTES = 128
#: Random bytes of a new password.
NEW_PASSWORD_BYTES = 24
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN = 2**14, 8, 1, 32
_SCHEME = "scrypt"


class RegistryError(ValueError):
    """The registry file (or an entry) is invalid; the message says where, never a secret."""


#: What a charge point id may be (the ids of its chargers are derived from it).
CHARGE_POINT_ID_RULE = (
    f"1-{MAX_CHARGE_POINT_ID_CHARS} of a-z, 0-9, '-', '_', without '{CONNECTOR_SEPARATOR}'"
)


def valid_charge_point_id(cp_id: str) -> bool:
    """A charge point id is what the mapper can name chargers after (the charger-id
    grammar, at most 48 characters, no ``__``: :func:`.mapping.validate_charge_point_id`)."""
    try:
        validate_charge_point_id(cp_id)
    except MappingError:
        return False
    return True


def new_password() -> str:
    """A fresh password: 24 random bytes, URL-safe base64 (32 characters)."""
    return secrets.token_urlsafe(NEW_PASSWORD_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$<salt>$<hash>`` of ``password`` (base64 salt and hash)."""
    raw = password.encode()
    if len(raw) < MIN_PASSWORD_BYTES:
        raise RegistryError(f"a password needs at least {MIN_PASSWORD_BYTES} bytes")
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(
        raw, salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=_SCRYPT_LEN
    )
    return f"{_SCHEME}${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        raise RegistryError("a password hash must be scrypt$N$r$p$<salt>$<hash>")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = (
            base64.b64decode(parts[4], validate=True),
            base64.b64decode(parts[5], validate=True),
        )
    except ValueError as exc:
        raise RegistryError("a password hash must be scrypt$N$r$p$<salt>$<hash>") from exc
    # Bounded cost: a hand-edited file cannot make a handshake take minutes.
    if not (2**10 <= n <= 2**17 and n & (n - 1) == 0 and 1 <= r <= 16 and 1 <= p <= 4):
        raise RegistryError("scrypt parameters out of range (N 2^10..2^17, r 1..16, p 1..4)")
    if len(salt) < 8 or not 16 <= len(digest) <= 64:
        raise RegistryError("scrypt salt or hash too short")
    return n, r, p, salt, digest


def verify_password(password: bytes, stored: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    n, r, p, salt, digest = _parse_hash(stored)
    if not MIN_PASSWORD_BYTES <= len(password) <= MAX_PASSWORD_BYTES:
        return False
    candidate = hashlib.scrypt(
        password, salt=salt, n=n, r=r, p=p, dklen=len(digest), maxmem=256 * 1024 * 1024
    )
    return hmac.compare_digest(candidate, digest)


@dataclass(frozen=True, slots=True)
class ChargePointEntry:
    """One registered charge point."""

    id: str
    profile: Profile
    #: The scrypt hash (profiles 1 and 2), None for profile 3.
    password_hash: str | None = None
    #: The charger ids it may report for; empty: every connector (docs/ocpp.md).
    chargers: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never the hash in a log line
        return f"ChargePointEntry(id={self.id!r}, profile={self.profile})"


def _entry(cp_id: str, raw: object) -> ChargePointEntry:
    where = f"charge_points.{cp_id}"
    if not valid_charge_point_id(cp_id):
        raise RegistryError(f"{where}: invalid charge point id: {CHARGE_POINT_ID_RULE}")
    if not isinstance(raw, Mapping):
        raise RegistryError(f"{where}: must be a table")
    unknown = set(raw) - {"profile", "password", "chargers"}
    if unknown:
        raise RegistryError(f"{where}: unknown keys {sorted(unknown)}")
    profile = raw.get("profile")
    if profile not in PROFILES or isinstance(profile, bool):
        raise RegistryError(f"{where}.profile: must be 1, 2 or 3")
    password = raw.get("password")
    if profile == 3:
        if password is not None:
            raise RegistryError(f"{where}: profile 3 authenticates by certificate, no password")
    else:
        if not isinstance(password, str):
            raise RegistryError(f"{where}.password: profile {profile} needs a password hash")
        _parse_hash(password)
    chargers = raw.get("chargers", [])
    if not isinstance(chargers, list) or not all(
        isinstance(c, str) and CHARGER_ID_RE.fullmatch(c) for c in chargers
    ):
        raise RegistryError(f"{where}.chargers: a list of charger ids ({CHARGER_ID_RULE})")
    return ChargePointEntry(cp_id, profile, password, tuple(chargers))


def parse_registry(text: str) -> dict[str, ChargePointEntry]:
    """The entries of a registry file's text (raises :class:`RegistryError`)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"not valid TOML: {exc}") from exc
    unknown = set(doc) - {"charge_points"}
    if unknown:
        raise RegistryError(f"unknown top-level keys {sorted(unknown)}")
    table = doc.get("charge_points", {})
    if not isinstance(table, Mapping):
        raise RegistryError("charge_points must be a table")
    return {cp_id: _entry(cp_id, raw) for cp_id, raw in table.items()}


def render_registry(entries: Sequence[ChargePointEntry]) -> str:
    """The TOML text of ``entries`` (ids and hashes need no escaping: checked)."""
    lines = [
        "# chargelift OCPP gateway: registered charge points (docs/ocpp.md).",
        "# Written by `chargelift-ocpp register`; passwords are stored hashed only.",
    ]
    for e in sorted(entries, key=lambda e: e.id):
        lines += ["", f"[charge_points.{e.id}]", f"profile = {e.profile}"]
        if e.password_hash is not None:
            lines.append(f'password = "{e.password_hash}"')
        if e.chargers:
            lines.append("chargers = [" + ", ".join(f'"{c}"' for c in e.chargers) + "]")
    text = "\n".join(lines) + "\n"
    parse_registry(text)  # what is written must read back
    return text


def write_registry(path: Path, entries: Sequence[ChargePointEntry]) -> None:
    """Replace the registry file atomically (mode 0600: it holds password hashes)."""
    text = render_registry(entries)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def read_registry(path: Path) -> dict[str, ChargePointEntry]:
    """The entries of the file at ``path``; a missing file is an empty registry."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return parse_registry(text)


class Registry:
    """The registry file, re-read when it changes (size, mtime or inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[str, ChargePointEntry] = {}
        #: Reloads that failed (the last good registry stayed in force).
        self.failed_reloads = 0
        self.refresh(strict=True)

    def _current_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self, *, strict: bool = False) -> None:
        """Re-read the file if it changed; ``strict``: raise on a bad file (start-up)."""
        stamp = self._current_stamp()
        if stamp == self._stamp and self._stamp is not None:
            return
        try:
            entries = read_registry(self.path)
        except (RegistryError, OSError) as exc:
            if strict:
                raise RegistryError(f"{self.path}: {exc}") from exc
            self.failed_reloads += 1
            self._stamp = stamp  # logged once per change of the file
            log.error("%s: not reloaded, the previous registry stays: %s", self.path, exc)
            return
        if self._stamp is not None:
            log.info("%s: reloaded, %d charge points", self.path, len(entries))
        self._stamp = stamp
        self._entries = entries

    def get(self, cp_id: str) -> ChargePointEntry | None:
        self.refresh()
        return self._entries.get(cp_id)

    def __len__(self) -> int:
        return len(self._entries)
