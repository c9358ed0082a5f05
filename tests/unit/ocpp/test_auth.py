"""The handshake decisions that need no network (the rest: tests/integration/ocpp)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from chargelift_ocpp import auth as auth_module
from chargelift_ocpp.auth import (
    Accepted,
    Authenticator,
    basic_credentials,
    charge_point_id,
    offers_subprotocol,
    printable,
)
from chargelift_ocpp.registry import (
    ChargePointEntry,
    Registry,
    hash_password,
    verify_password,
    write_registry,
)


class H:
    def __init__(self, **values: list[str]) -> None:
        self.values = {k.replace("_", "-").lower(): v for k, v in values.items()}

    def get_all(self, key: str) -> list[str]:
        return self.values.get(key.lower(), [])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ocpp/cp-1", "cp-1"),
        ("/ocpp/cp-1?x=1", "cp-1"),
        ("/ocpp/", None),
        ("/ocpp", None),
        ("/other/cp-1", None),
        ("/ocpp/a/b", None),
        ("/ocppx/cp-1", None),
    ],
)
def test_the_id_is_the_last_path_segment(path: str, expected: str | None) -> None:
    assert charge_point_id(path, "/ocpp") == expected


def test_the_id_under_the_root_path() -> None:
    assert charge_point_id("/cp-1", "") == "cp-1"


def test_basic_credentials() -> None:
    token = base64.b64encode(b"cp-1:pass:word").decode()
    assert basic_credentials(H(Authorization=[f"Basic {token}"])) == ("cp-1", b"pass:word")
    assert basic_credentials(H()) is None
    assert basic_credentials(H(Authorization=["Bearer x"])) is None
    assert basic_credentials(H(Authorization=["Basic !!!"])) is None
    assert (
        basic_credentials(H(Authorization=["Basic " + base64.b64encode(b"nocolon").decode()]))
        is None
    )
    assert basic_credentials(H(Authorization=["Basic " + "A" * 100_000])) is None
    assert basic_credentials(H(Authorization=[f"Basic {token}", f"Basic {token}"])) is None


def test_the_subprotocol_must_be_offered() -> None:
    assert offers_subprotocol(H(Sec_WebSocket_Protocol=["ocpp2.0.1, ocpp1.6"]))
    assert not offers_subprotocol(H(Sec_WebSocket_Protocol=["ocpp2.0.1"]))
    assert not offers_subprotocol(H())


def test_printable_cuts_and_masks() -> None:
    assert printable("cp-1") == "cp-1"
    assert printable("a\nb%0a" + "x" * 200) == "a?b?0a" + "x" * 58


async def test_a_proved_password_is_not_checked_with_scrypt_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A charge point that reconnects (a flaky link) does not cost a scrypt check each
    time; a wrong password or a changed entry always does."""
    registry_file = tmp_path / "cp.toml"
    password = "the-right-password-0123456789"
    write_registry(registry_file, [ChargePointEntry("cp-1", 2, hash_password(password))])
    auth = Authenticator(Registry(registry_file), "/ocpp")
    checks: list[bytes] = []

    def counting(given: bytes, stored: str) -> bool:
        checks.append(given)
        return verify_password(given, stored)

    monkeypatch.setattr(auth_module, "verify_password", counting)

    def headers(pw: str) -> H:
        token = base64.b64encode(f"cp-1:{pw}".encode()).decode()
        return H(Authorization=[f"Basic {token}"], Sec_WebSocket_Protocol=["ocpp1.6"])

    async def check(pw: str) -> bool:
        decision = await auth.check("/ocpp/cp-1", headers(pw), tls=True, peer_cn=None)
        return isinstance(decision, Accepted)

    assert await check(password)
    assert await check(password)
    assert len(checks) == 1  # the second connection cost no scrypt
    assert not await check("a-wrong-password-0123456789")
    assert len(checks) == 2  # a wrong one always does
    # a new password in the registry: the old one is not remembered any more
    write_registry(registry_file, [ChargePointEntry("cp-1", 2, hash_password(password + "2"))])
    os.utime(registry_file, ns=(1, 1))  # a new mtime even within the same clock tick
    assert not await check(password)
    assert await check(password + "2")
