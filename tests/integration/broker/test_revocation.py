"""Issue 14, finding 8: a revocation takes effect on its own, closes the revoked
identity's open connections, and covers the reading (service) identities too.

On 82191a1 it needed a SIGHUP by hand, left open connections open, and a revoked
``monitor`` kept receiving every charger's data (its ACL rules were static). Here the
broker is driven as ``make dev`` drives it: ``refresh()`` every second (compose runs
docker/entrypoints/mosquitto-watch.sh, tested in tests/compose).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from chargelift_certs import pki
from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_runtime.mqtt import MqttClient, TlsFiles
from tests.integration.broker.test_mtls import Inbox, client, first_attempt
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration

TARGET_S = 5.0


@contextlib.asynccontextmanager
async def make_dev_ticks(broker: MosquittoServer) -> AsyncIterator[list[str]]:
    """``refresh()`` every second, as chargelift-devstack's loop does; what it did."""
    done: list[str] = []

    async def tick() -> None:
        while True:
            await asyncio.sleep(1.0)
            if what := await asyncio.to_thread(broker.refresh):
                done.append(what)

    task = asyncio.create_task(tick())
    try:
        yield done
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _revoked_tls(certs: TestCerts, identity: str) -> TlsFiles:
    crt = next((certs.dir / "clients" / "revoked").glob(f"{identity}-*.crt"))
    return TlsFiles(certs.ca_file, crt, crt.with_suffix(".key"))


async def _disconnected_within(c: MqttClient, started: float) -> float:
    async with asyncio.timeout(TARGET_S * 2):
        await c.wait_disconnected()
    return time.monotonic() - started


async def test_revoking_closes_open_connections_and_refuses_new_ones_on_its_own(
    own_broker: MosquittoServer, certs: TestCerts
) -> None:
    charger_tls = certs.issue_charger("cut-me")
    reader_tls = certs.issue_reader("watch-me", role="monitor")  # a dashboard identity
    own_broker.reload()
    seen = Inbox()
    async with make_dev_ticks(own_broker) as ticks:
        async with (
            client(own_broker, charger_tls, "cut-me") as charger,
            client(
                own_broker, reader_tls, "watch-me", subscribe=("chargers/#",), inbox=seen
            ) as reader,
        ):
            await charger.publish("chargers/cut-me/PowerOutput", b"{}")
            await seen.wait_for("chargers/cut-me/PowerOutput")

            started = time.monotonic()
            pki.revoke(certs.dir, "cut-me")
            pki.revoke(certs.dir, "watch-me")  # no reload, no restart by hand
            charger_cut, reader_cut = await asyncio.gather(
                _disconnected_within(charger, started), _disconnected_within(reader, started)
            )
            refused = {}
            for identity in ("cut-me", "watch-me"):
                while await first_attempt(own_broker, _revoked_tls(certs, identity)) is None:
                    assert time.monotonic() - started < TARGET_S * 2, f"{identity} still accepted"
                    await asyncio.sleep(0.05)
                refused[identity] = time.monotonic() - started
            # The clients keep trying (their own backoff): they must stay out.
            await asyncio.sleep(2.0)
            assert not charger.is_connected
            assert not reader.is_connected
        print(
            f"revoke -> disconnected: charger {charger_cut:.2f} s, monitor {reader_cut:.2f} s; "
            f"-> refused: {refused['cut-me']:.2f} s / {refused['watch-me']:.2f} s"
        )
        assert max(charger_cut, reader_cut, *refused.values()) < TARGET_S
        assert "restarted" in ticks
    # Everyone else carries on.
    async with client(own_broker, certs.tls("charger-b"), "charger-b") as other:
        await other.publish("chargers/charger-b/PowerOutput", b"{}")
