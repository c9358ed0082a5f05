"""Each security profile: the right credentials connect; everything else is refused at the
HTTP handshake (before the upgrade) and counted by reason (docs/ocpp.md, "What is refused")."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading

import pytest
from websockets.exceptions import InvalidMessage, InvalidStatus

from chargelift_ocpp.registry import verify_password
from tests.integration.ocpp.conftest import PASSWORD_1, PASSWORD_2, GatewayFactory

pytestmark = pytest.mark.integration


async def test_profile_2_tls_and_the_right_password_connects(gateways: GatewayFactory) -> None:
    gw = await gateways.start()
    async with await gw.connect("cp-pass", password=PASSWORD_2) as ws:
        assert ws.subprotocol == "ocpp1.6"
    assert gw.metrics()['ocpp_connections_accepted_total{profile="2"}'] == 1


async def test_profile_3_a_client_certificate_of_the_ca_connects(
    gateways: GatewayFactory,
) -> None:
    gw = await gateways.start()
    async with await gw.connect("cp-cert", cert="cp-cert") as ws:
        assert ws.subprotocol == "ocpp1.6"
    assert gw.metrics()['ocpp_connections_accepted_total{profile="3"}'] == 1


async def test_profile_1_plain_ws_only_when_enabled(gateways: GatewayFactory) -> None:
    gw = await gateways.start(allow_plain=True)
    async with await gw.connect("cp-lan", password=PASSWORD_1, plain=True):
        pass
    assert gw.metrics()['ocpp_connections_accepted_total{profile="1"}'] == 1
    # a profile-2 charge point is never accepted without TLS, even with its password
    with pytest.raises(InvalidStatus) as refused:
        await gw.connect("cp-pass", password=PASSWORD_2, plain=True)
    assert refused.value.response.status_code == 401
    assert refused.value.response.body == b"unauthorized\n"
    assert gw.refused("plain_not_allowed") == 1


@pytest.mark.parametrize(
    ("cp_id", "kwargs", "status", "reason"),
    [
        ("cp-pass", {}, 401, "no_password"),
        ("cp-pass", {"password": "wrong-password-0123456789"}, 401, "wrong_password"),
        ("cp-pass", {"password": PASSWORD_2, "user": "cp-two"}, 401, "wrong_password"),
        ("cp-two", {"password": PASSWORD_2 + "x"}, 401, "wrong_password"),
        ("cp-nobody", {"password": PASSWORD_2}, 401, "unknown_id"),
        ("CP_Upper", {"password": PASSWORD_2}, 404, "invalid_id"),
        ("cp-pass", {"password": PASSWORD_2, "subprotocols": ["ocpp2.0.1"]}, 400, "subprotocol"),
        ("cp-cert", {}, 401, "no_certificate"),
        ("cp-cert", {"cert": "amtron-1"}, 401, "wrong_certificate"),
        ("cp-cert", {"password": PASSWORD_2}, 401, "no_certificate"),
    ],
)
async def test_refused_at_the_handshake_and_counted(
    gateways: GatewayFactory,
    cp_id: str,
    kwargs: dict[str, object],
    status: int,
    reason: str,
) -> None:
    gw = await gateways.start()
    with pytest.raises(InvalidStatus) as refused:
        await gw.connect(cp_id, **kwargs)  # type: ignore[arg-type]
    assert refused.value.response.status_code == status
    assert gw.refused(reason) == 1
    if status == 401:
        # the same answer whatever is wrong: which ids exist, and with which profile,
        # is not for a scanner to learn
        assert refused.value.response.body == b"unauthorized\n"
    assert gw.metrics().get('ocpp_connections_accepted_total{profile="2"}', 0) == 0
    assert gw.metrics().get('ocpp_connections_accepted_total{profile="3"}', 0) == 0
    if status == 401:
        assert refused.value.response.headers["WWW-Authenticate"].startswith("Basic")


async def test_a_certificate_from_another_ca_fails_the_tls_handshake(
    gateways: GatewayFactory,
) -> None:
    gw = await gateways.start()
    with pytest.raises((ssl.SSLError, OSError, InvalidMessage)):
        async with await gw.connect("cp-cert", foreign=True) as ws:
            await ws.recv()  # TLS 1.3: the server's alert arrives after the client's finish
    assert gw.metrics().get('ocpp_connections_accepted_total{profile="3"}', 0) == 0
    assert not gw.service.server or not gw.service.server.live


async def test_plain_ws_is_refused_when_not_enabled(gateways: GatewayFactory) -> None:
    gw = await gateways.start()
    assert gw.service.server is not None
    assert gw.service.server.plain_port is None  # no plain listener at all
    # ws:// to the TLS port: no WebSocket either
    plain_to_tls = f"ws://127.0.0.1:{gw.service.server.tls_port}/ocpp/cp-lan"
    from websockets.asyncio.client import connect

    with pytest.raises((InvalidMessage, OSError, EOFError)):
        await connect(plain_to_tls, subprotocols=["ocpp1.6"], open_timeout=5)  # type: ignore[list-item]
    assert gw.metrics().get('ocpp_connections_accepted_total{profile="1"}', 0) == 0


async def test_a_second_connection_replaces_the_first(gateways: GatewayFactory) -> None:
    gw = await gateways.start()
    first = await gw.connect("cp-pass", password=PASSWORD_2)
    second = await gw.connect("cp-pass", password=PASSWORD_2)
    await first.wait_closed()
    assert first.close_code == 1001
    assert gw.metrics()["ocpp_connections_replaced_total"] == 1
    assert gw.service.server is not None
    assert len(gw.service.server.live) == 1
    await second.ping()
    await second.close()


async def test_too_many_connections_are_refused(gateways: GatewayFactory) -> None:
    gw = await gateways.start(max_connections=1)
    async with await gw.connect("cp-pass", password=PASSWORD_2):
        with pytest.raises(InvalidStatus) as refused:
            await gw.connect("cp-two", password=PASSWORD_2)
        assert refused.value.response.status_code == 503
    assert gw.refused("too_many_connections") == 1


async def test_a_registry_change_is_read_at_the_next_handshake(
    gateways: GatewayFactory,
) -> None:
    from chargelift_ocpp.registry import (
        ChargePointEntry,
        hash_password,
        read_registry,
        write_registry,
    )

    gw = await gateways.start()
    with pytest.raises(InvalidStatus):
        await gw.connect("cp-new", password=PASSWORD_2)
    path = gw.settings.charge_points
    entries = read_registry(path)
    entries["cp-new"] = ChargePointEntry("cp-new", 2, hash_password(PASSWORD_2))
    write_registry(path, list(entries.values()))
    async with await gw.connect("cp-new", password=PASSWORD_2):
        pass
    # a broken file leaves the last good registry in force
    path.write_text("this is [not toml")
    async with await gw.connect("cp-new", password=PASSWORD_2):
        pass
    assert gw.metrics()["ocpp_registry_reload_failures"] == 1


async def test_no_password_in_the_log_even_at_debug(
    gateways: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    import base64
    import logging

    caplog.set_level(logging.DEBUG)
    gw = await gateways.start()
    async with await gw.connect("cp-pass", password=PASSWORD_2):
        pass
    with pytest.raises(InvalidStatus):
        await gw.connect("cp-pass", password="wrong-password-0123456789")
    token = base64.b64encode(f"cp-pass:{PASSWORD_2}".encode()).decode()
    # the gateway's records (the test's own client logs its headers at DEBUG)
    ours = [r for r in caplog.records if r.name != "websockets.client"]
    text = "\n".join(r.getMessage() for r in ours)
    assert "refused charge point 'cp-pass'" in text
    for secret in (PASSWORD_2, "wrong-password-0123456789", token):
        assert secret not in text


async def test_a_revoked_certificate_fails_the_tls_handshake(gateways: GatewayFactory) -> None:
    from chargelift_certs import pki
    from chargelift_ocpp.registry import ChargePointEntry, read_registry, write_registry

    gw0 = gateways.certs
    gw0.issue_charger("cp-revoked")
    pki.revoke(gw0.dir, "cp-revoked")
    gw0.issue_charger("cp-revoked")  # a fresh one under the same name still works
    revoked = sorted((gw0.dir / "clients" / "revoked").glob("cp-revoked-*.crt"))
    assert revoked
    path = gateways.base / "charge_points.toml"
    entries = read_registry(path)
    entries["cp-revoked"] = ChargePointEntry("cp-revoked", 3)
    write_registry(path, list(entries.values()))
    gw = await gateways.start()
    async with await gw.connect("cp-revoked", cert="cp-revoked"):
        pass
    ctx = ssl.create_default_context(cafile=str(gw0.ca_file))
    ctx.load_cert_chain(revoked[0], revoked[0].with_suffix(".key"))
    from websockets.asyncio.client import connect

    with pytest.raises((ssl.SSLError, OSError, InvalidMessage)):
        async with await connect(
            f"{gw.tls_url}/cp-revoked",
            ssl=ctx,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            open_timeout=5,
        ) as ws:
            await ws.recv()
    assert gw.metrics()['ocpp_connections_accepted_total{profile="3"}'] == 1


async def test_metrics_and_healthz_are_served(gateways: GatewayFactory) -> None:
    import httpx

    gw = await gateways.start()
    assert gw.service.endpoint is not None
    base = f"http://127.0.0.1:{gw.service.endpoint.port}"
    async with await gw.connect("cp-pass", password=PASSWORD_2), httpx.AsyncClient() as http:
        health = (await http.get(f"{base}/healthz")).json()
        assert health["status"] == "ok"
        assert health["connected_charge_points"] == 1
        text = (await http.get(f"{base}/metrics")).text
        assert "ocpp_connected_charge_points 1.0" in text
        assert 'ocpp_handshakes_refused_total{reason="wrong_password"} 0.0' in text


class Gate:
    """A password check that holds its thread until :meth:`open`; counts its calls."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.started = threading.Event()
        self.calls = 0

    def __call__(self, password: bytes, stored: str) -> bool:
        self.calls += 1
        self.started.set()
        assert self.opened.wait(20), "the test never opened the gate"
        return verify_password(password, stored)

    def open(self) -> None:
        self.opened.set()


async def test_a_full_password_queue_answers_503_and_the_connected_keep_being_served(
    gateways: GatewayFactory,
) -> None:
    """One check running, none may wait: the next password handshake gets 503 with a
    Retry-After at once (counted ``busy``), while a connected charge point's calls are
    answered; the held handshake connects once its check is done."""
    gw = await gateways.start(password_check_threads=1, password_check_queue=0, busy_retry_after=10)
    gate = Gate()
    gw.service.checks.check = gate
    try:
        async with await gw.connect("cp-cert", cert="cp-cert") as connected:
            held = asyncio.create_task(gw.connect("cp-pass", password=PASSWORD_2))
            assert await asyncio.to_thread(gate.started.wait, 10)
            with pytest.raises(InvalidStatus) as refused:
                await gw.connect("cp-two", password=PASSWORD_2)
            answer = refused.value.response
            assert answer.status_code == 503
            assert 10 <= int(answer.headers["Retry-After"]) <= 20
            assert gw.refused("busy") == 1
            assert gw.metrics()['ocpp_password_checks_total{outcome="busy"}'] == 1
            await connected.send(json.dumps([2, "hb-1", "Heartbeat", {}]))
            reply = json.loads(await asyncio.wait_for(connected.recv(), 10))
            assert reply[:2] == [3, "hb-1"]
            gate.open()
            async with await held:
                pass
    finally:
        gate.open()
    assert gate.calls == 1


async def test_a_handshake_whose_client_has_gone_is_not_checked(
    gateways: GatewayFactory,
) -> None:
    """A client that sends its upgrade request and disconnects while its password check
    waits costs no check: the gateway sees the connection closed at its turn."""
    gw = await gateways.start(password_check_threads=1, password_check_queue=8)
    gate = Gate()
    gw.service.checks.check = gate
    try:
        held = asyncio.create_task(gw.connect("cp-pass", password=PASSWORD_2))
        assert await asyncio.to_thread(gate.started.wait, 10)
        assert gw.service.server is not None
        _, writer = await asyncio.open_connection(
            "127.0.0.1", gw.service.server.tls_port, ssl=gw.client_context()
        )
        token = base64.b64encode(f"cp-two:{PASSWORD_2}".encode()).decode()
        writer.write(
            (
                "GET /ocpp/cp-two HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
                f"Authorization: Basic {token}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        async with asyncio.timeout(10):
            while gw.service.checks.waiting < 1:
                await asyncio.sleep(0.01)
        writer.close()  # the client gives up
        await writer.wait_closed()
        await asyncio.sleep(0.5)  # the gateway reads the end of the stream
        gate.open()
        async with await held:
            pass
        async with asyncio.timeout(10):
            while gw.service.checks.counts["abandoned"] < 1:
                await asyncio.sleep(0.01)
    finally:
        gate.open()
    assert gate.calls == 1  # only the charge point that stayed
    assert gw.metrics()['ocpp_password_checks_total{outcome="abandoned"}'] == 1
    assert gw.refused("abandoned") == 1


async def test_a_tls_connection_has_a_small_read_buffer(gateways: GatewayFactory) -> None:
    """asyncio gives each TLS connection a zero-filled 256-KiB read buffer (250 MB at
    1,000 charge points); the gateway's are 32 KiB, and a message of the largest
    accepted size still arrives whole."""
    gw = await gateways.start(max_message_bytes=65536)
    assert gw.service.server is not None
    async with await gw.connect("cp-cert", cert="cp-cert") as ws:
        live = gw.service.server.live["cp-cert"]
        buffer = live.transport._ssl_protocol._ssl_buffer  # type: ignore[attr-defined]
        assert len(buffer) <= 32 * 1024
        big = json.dumps([2, "big-1", "DataTransfer", {"vendorId": "v", "data": "x" * 60000}])
        await ws.send(big)
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer[1] == "big-1"  # answered (NotSupported): read whole
