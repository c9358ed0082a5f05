"""A certificate directory for a test session, made with the project's own CA tool."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chargelift_runtime.mqtt import TlsFiles

SERVICES = ("ingest", "api", "monitor")
CHARGERS = ("amtron-1", "amtron-2", "amtron-3", "charger-a", "charger-b")


@dataclass(frozen=True)
class TestCerts:
    """``dir`` in the layout of chargelift-certs, with services and chargers issued."""

    __test__ = False  # not a test class
    dir: Path

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    def tls(self, identity: str) -> TlsFiles:
        return TlsFiles.for_identity(self.ca_file, self.dir, identity)

    def issue_charger(self, identity: str) -> TlsFiles:
        """Issue a charger certificate (and regenerate the ACL: reload the broker after)."""
        from chargelift_certs import pki

        if not (self.dir / "clients" / f"{identity}.crt").exists():
            pki.issue_client(self.dir, identity, role="charger")
        return self.tls(identity)

    def issue_reader(self, identity: str, role: str = "ingest") -> TlsFiles:
        """Issue an identity of a reading role (``ingest`` or ``monitor``): the broker
        allows one connection per identity. Reload the broker after."""
        from chargelift_certs import pki

        if role not in pki.ROLE_RULES:
            raise ValueError(f"not a reading role: {role}")
        if not (self.dir / "clients" / f"{identity}.crt").exists():
            pki.issue_client(self.dir, identity, role="ingest" if role == "ingest" else "monitor")
        return self.tls(identity)

    def issue_edge(self, identity: str, chargers: tuple[str, ...]) -> TlsFiles:
        """Issue an edge certificate for ``chargers`` (reload the broker after)."""
        from chargelift_certs import pki

        if not (self.dir / "clients" / f"{identity}.crt").exists():
            pki.issue_client(self.dir, identity, role="edge", chargers=chargers)
        return self.tls(identity)

    def issue_controller(self, identity: str, chargers: tuple[str, ...] = ()) -> TlsFiles:
        """Issue a controller certificate for ``chargers`` (none: every charger); reload
        the broker after."""
        from chargelift_certs import pki

        if not (self.dir / "clients" / f"{identity}.crt").exists():
            pki.issue_client(self.dir, identity, role="controller", chargers=chargers)
        return self.tls(identity)

    def issue_role(self, identity: str, role: str, chargers: tuple[str, ...] = ()) -> TlsFiles:
        """Issue a certificate of any role (``bridge``, ``homeassistant`` with the chargers
        it may command, ...); reload the broker after."""
        from chargelift_certs import pki

        if not (self.dir / "clients" / f"{identity}.crt").exists():
            pki.issue_client(self.dir, identity, role=role, chargers=chargers)  # type: ignore[arg-type]
        return self.tls(identity)


def make_certs(directory: Path) -> TestCerts:
    from chargelift_certs import pki

    pki.create_ca(directory)
    pki.issue_server(directory)
    for name in SERVICES:
        pki.issue_client(directory, name, role="service")
    for name in CHARGERS:
        pki.issue_client(directory, name, role="charger")
    return TestCerts(directory)
