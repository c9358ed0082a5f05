"""The handshake decisions that need no network (the rest: tests/integration/ocpp)."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
from http import HTTPStatus
from pathlib import Path

import pytest

from chargelift_ocpp import auth as auth_module
from chargelift_ocpp.auth import (
    Accepted,
    Authenticator,
    PasswordChecks,
    Refused,
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


class Gate:
    """A password check that blocks its thread until :meth:`open` (and counts)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.started = threading.Event()
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, password: bytes, stored: str) -> bool:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.started.set()
        try:
            assert self.opened.wait(10), "the test never opened the gate"
            return password == b"the-right-password-0123456789"
        finally:
            with self._lock:
                self.running -= 1

    def open(self) -> None:
        self.opened.set()


async def started(gate: Gate) -> None:
    assert await asyncio.to_thread(gate.started.wait, 10)


def basic(cp_id: str, pw: str) -> H:
    token = base64.b64encode(f"{cp_id}:{pw}".encode()).decode()
    return H(Authorization=[f"Basic {token}"], Sec_WebSocket_Protocol=["ocpp1.6"])


async def test_a_full_waiting_line_is_answered_busy_at_once_for_known_and_unknown_ids(
    tmp_path: Path,
) -> None:
    """One check runs, one waits (queue 1): the next handshake that needs a check is
    refused at once with 503 (never a wait, never a 401: a known id and an unknown one
    get the same answer), and counted; the two in the line are checked afterwards."""
    registry_file = tmp_path / "cp.toml"
    right = "the-right-password-0123456789"
    write_registry(
        registry_file,
        [ChargePointEntry(f"cp-{i}", 2, hash_password(right)) for i in (1, 2, 3)],
    )
    gate = Gate()
    auth = Authenticator(Registry(registry_file), "/ocpp", checks=PasswordChecks(1, 1, verify=gate))
    first = asyncio.create_task(
        auth.check("/ocpp/cp-1", basic("cp-1", right), tls=True, peer_cn=None)
    )
    await started(gate)
    second = asyncio.create_task(
        auth.check("/ocpp/cp-2", basic("cp-2", right), tls=True, peer_cn=None)
    )
    while auth.checks.waiting < 1:
        await asyncio.sleep(0.01)
    for cp_id in ("cp-3", "cp-nobody"):
        refused = await auth.check(f"/ocpp/{cp_id}", basic(cp_id, right), tls=True, peer_cn=None)
        assert isinstance(refused, Refused)
        assert refused.reason == "busy"
        assert refused.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert auth.checks.counts["busy"] == 2
    gate.open()
    assert isinstance(await first, Accepted)
    assert isinstance(await second, Accepted)
    assert gate.calls == 2
    assert gate.most_at_once == 1
    auth.checks.close()


async def test_a_check_whose_client_has_gone_is_not_run(tmp_path: Path) -> None:
    """A handshake waiting for its check whose client disconnected (alive() is False at
    its turn) is not checked: no scrypt for nobody."""
    registry_file = tmp_path / "cp.toml"
    right = "the-right-password-0123456789"
    write_registry(
        registry_file, [ChargePointEntry(f"cp-{i}", 2, hash_password(right)) for i in (1, 2)]
    )
    gate = Gate()
    auth = Authenticator(Registry(registry_file), "/ocpp", checks=PasswordChecks(1, 8, verify=gate))
    first = asyncio.create_task(
        auth.check("/ocpp/cp-1", basic("cp-1", right), tls=True, peer_cn=None)
    )
    await started(gate)
    gone = asyncio.create_task(
        auth.check("/ocpp/cp-2", basic("cp-2", right), tls=True, peer_cn=None, alive=lambda: False)
    )
    while auth.checks.waiting < 1:
        await asyncio.sleep(0.01)
    gate.open()
    assert isinstance(await first, Accepted)
    refused = await gone
    assert isinstance(refused, Refused)
    assert refused.reason == "abandoned"
    assert gate.calls == 1
    assert auth.checks.counts == {"checked": 1, "abandoned": 1, "busy": 0}
    auth.checks.close()


async def test_a_cancelled_handshake_keeps_its_thread_until_its_check_ends() -> None:
    """websockets cancels a handshake after its open timeout; a check already running
    cannot stop, so its thread stays taken: never more checks at once than threads."""
    gate = Gate()
    checks = PasswordChecks(1, 8, verify=gate)
    stored = hash_password("the-right-password-0123456789")
    first = asyncio.create_task(checks.verify(b"the-right-password-0123456789", stored))
    await started(gate)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.started.clear()
    second = asyncio.create_task(checks.verify(b"the-right-password-0123456789", stored))
    await asyncio.sleep(0.2)
    assert not gate.started.is_set()  # waits for the first one's thread
    gate.open()
    assert await second
    assert gate.most_at_once == 1
    checks.close()


async def test_a_handshake_cancelled_while_waiting_is_never_checked() -> None:
    gate = Gate()
    checks = PasswordChecks(1, 8, verify=gate)
    stored = hash_password("the-right-password-0123456789")
    first = asyncio.create_task(checks.verify(b"the-right-password-0123456789", stored))
    await started(gate)
    waiting = asyncio.create_task(checks.verify(b"the-right-password-0123456789", stored))
    while checks.waiting < 1:
        await asyncio.sleep(0.01)
    waiting.cancel()  # the open timeout
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert checks.waiting == 0
    gate.open()
    assert await first
    assert gate.calls == 1
    checks.close()
