"""``chargelift-ocpp register``: add a charge point to the registry, print its setup.

Profiles 1 and 2 get a fresh password (24 random bytes), printed once and stored only
as its scrypt hash. Profile 3 gets a client certificate from the project's CA: the
command runs ``chargelift-certs client <id> --role charger`` (the certificate tool owns
the CA; the gateway only reads the files it writes). What to enter in the charger's web
UI is printed at the end.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from chargelift_ocpp.registry import (
    CHARGE_POINT_ID_RULE,
    ChargePointEntry,
    Profile,
    RegistryError,
    hash_password,
    new_password,
    read_registry,
    valid_charge_point_id,
    write_registry,
)


class RegistrationError(Exception):
    """Something the operator must fix; the message says what."""


@dataclass(frozen=True, slots=True)
class Registered:
    entry: ChargePointEntry
    #: The clear password (profiles 1 and 2): shown once, never stored.
    password: str | None
    #: The client certificate and key (profile 3).
    certificate: Path | None = None
    key: Path | None = None


def issue_certificate(certs_dir: Path, cp_id: str, *, force: bool) -> tuple[Path, Path]:
    """A client certificate for ``cp_id`` from ``chargelift-certs`` (its own process)."""
    crt, key = certs_dir / "clients" / f"{cp_id}.crt", certs_dir / "clients" / f"{cp_id}.key"
    if crt.exists() and not force:
        return crt, key  # already issued: reused (``--force`` reissues it)
    cmd = [sys.executable, "-m", "chargelift_certs.main", "--dir", str(certs_dir)]
    cmd += ["client", cp_id, "--role", "charger", *(["--force"] if force else [])]
    # S603: a fixed command; cp_id follows the charger-id grammar (checked by the caller).
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)  # noqa: S603
    if done.returncode != 0:
        raise RegistrationError(
            f"chargelift-certs could not issue the certificate: {done.stderr.strip()}"
        )
    return crt, key


def register(
    registry: Path,
    cp_id: str,
    *,
    profile: Profile = 2,
    chargers: tuple[str, ...] = (),
    certs_dir: Path | None = None,
    force: bool = False,
    password: str | None = None,
) -> Registered:
    """Add ``cp_id`` to the registry file (``force``: replace it, a new secret).

    ``password`` (profiles 1 and 2): this one instead of a fresh random one, for
    provisioning that keeps its secrets elsewhere (at least 16 bytes)."""
    if not valid_charge_point_id(cp_id):
        raise RegistrationError(f"invalid charge point id {cp_id!r}: {CHARGE_POINT_ID_RULE}")
    try:
        entries = read_registry(registry)
    except RegistryError as exc:
        raise RegistrationError(f"{registry}: {exc}") from exc
    if cp_id in entries and not force:
        raise RegistrationError(
            f"{cp_id} is registered already (--force replaces it, with a new secret)"
        )
    entry = ChargePointEntry(cp_id, profile, None, chargers)
    certificate = key = None
    if profile == 3:
        if password is not None:
            raise RegistrationError("profile 3 authenticates with a certificate: no password")
        if certs_dir is None:
            raise RegistrationError("profile 3 needs --certs-dir (the chargelift-certs directory)")
        certificate, key = issue_certificate(certs_dir, cp_id, force=force)
    else:
        password = new_password() if password is None else password
        try:
            entry = replace(entry, password_hash=hash_password(password))
        except RegistryError as exc:  # too short
            raise RegistrationError(str(exc)) from None
    try:
        write_registry(registry, [*(e for e in entries.values() if e.id != cp_id), entry])
    except RegistryError as exc:  # pragma: no cover - ids and hashes are checked above
        raise RegistrationError(str(exc)) from exc
    return Registered(entry, password, certificate, key)


def instructions(done: Registered, *, url: str, ca_file: str) -> str:
    """What to enter in the charger's web UI (the password only here, once)."""
    e = done.entry
    if e.profile == 1 and url.startswith("wss://"):
        # Profile 1 connects to the plain listener (OCPP_PLAIN_HOST:OCPP_PLAIN_PORT).
        url = "ws://<gateway LAN address>:9080/ocpp"
    lines = [
        f"charge point {e.id} registered (profile {e.profile}).",
        "",
        "Enter in the charger's OCPP settings:",
        f"  Central system URL:   {url.rstrip('/')}",
        f"      (the charger appends its id; if it wants the full URL: {url.rstrip('/')}/{e.id})",
        f"  Charge point id:      {e.id}",
    ]
    if done.password is not None:
        lines.append(f"  Password (AuthorizationKey): {done.password}")
    if done.certificate is not None:
        lines += [
            f"  Client certificate:   {done.certificate}",
            f"  Client key:           {done.key}",
        ]
    if e.profile != 1:
        lines.append(f"  CA certificate to trust: {ca_file}")
    if done.password is not None:
        lines += ["", "The password is shown only now; only its hash is stored."]
    return "\n".join(lines)
