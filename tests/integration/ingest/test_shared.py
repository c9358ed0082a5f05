"""Scale-out: two ingest processes on one ``$share/`` subscription store every message
exactly once, also when one of them is killed mid-stream (Mosquitto #2662)."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import httpx
import pytest

from chargelift_devstack.mosquitto import MosquittoServer
from tests.integration.ingest.conftest import (
    IngestProcess,
    Publisher,
    count_rows,
    ingest_env,
    messages,
    wait_rows,
)
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration


async def rows_written(proc: IngestProcess) -> float:
    async with httpx.AsyncClient(timeout=2) as http:
        text = (await http.get(proc.metrics_url)).text
    m = re.search(r"^ingest_rows_written_total ([0-9.e+]+)$", text, re.M)
    assert m is not None
    return float(m.group(1))


async def settled(dsn: str, quiet: float = 1.5) -> int:
    """The row count once it has stopped changing for ``quiet`` seconds."""
    last = -1
    while True:
        n = await count_rows(dsn)
        if n == last:
            return n
        last = n
        await asyncio.sleep(quiet)


@pytest.mark.slow
async def test_two_ingests_on_a_shared_subscription_store_everything_once(
    own_broker: MosquittoServer,
    certs: TestCerts,
    db: str,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    group = f"ingest{uuid.uuid4().hex[:6]}"
    # One identity per member: the broker binds the client id to the identity.
    for name in ("a", "b"):
        certs.issue_reader(f"ingest-{name}")
    own_broker.reload()
    a, b = (
        IngestProcess(
            ingest_env(
                own_broker,
                certs,
                db,
                INGEST_SHARE_GROUP=group,
                MQTT_IDENTITY=f"ingest-{name}",
                # Small batches: the kill finds messages in flight on both members.
                INGEST_BATCH_SIZE="200",
            ),
            tmp_path / f"ingest-{name}.log",
        )
        for name in ("a", "b")
    )
    for proc in (a, b):
        proc.start()
    for proc in (a, b):
        await proc.ready()
    try:
        msgs = messages(200)  # 6,000 messages
        first, second = msgs[:2000], msgs[2000:]
        await publisher.publish(first)
        assert await wait_rows(db, len(first)) == len(first)
        share_a, share_b = await rows_written(a), await rows_written(b)
        assert share_a > 0  # the broker spread the load
        assert share_b > 0
        assert share_a + share_b == len(first)

        sending = asyncio.create_task(publisher.publish(second))
        while await count_rows(db) < len(first) + 500:
            await asyncio.sleep(0.02)
        b.kill()  # SIGKILL: its unacknowledged messages stay in its session
        await sending
        stalled = await settled(db)
        # Mosquitto does not hand the dead member's messages to the survivor: its
        # in-flight window waits in its persistent session for a client with the same
        # id, and Mosquitto keeps routing its share of NEW messages to that offline
        # session too (observed: about half of what was published after the kill).
        # Were the member never to come back, that is the loss of Mosquitto #2662.
        print(f"shared: {len(msgs)} published, {stalled} stored while b was dead")
        assert stalled < len(msgs)

        b.start()  # same client id: the session and its messages are resumed
        await b.ready()
        assert await wait_rows(db, len(msgs)) == len(msgs)
    finally:
        a.kill()
        b.kill()
