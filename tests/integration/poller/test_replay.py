"""The replay window: a *killed* broker forgets what it acknowledged; the poller re-sends it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from chargelift_contract import field_topic
from chargelift_devstack.mosquitto import MosquittoServer
from tests.integration.poller.support import (
    charger_config,
    eventually,
    metric,
    running_poller,
    settings,
    subscriber,
)
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration


async def test_retained_values_survive_a_sigkilled_broker(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    charger = fleet.chargers[0]
    # Fields that do not change are published only in snapshots: after the first one
    # (at start) they would not be sent again for 300 s.
    steady = [field_topic(charger.id, f) for f in ("Tariff", "FirmwareVersion", "EnergyPrice")]
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite", snapshot_interval=300.0)
    async with running_poller(s, [charger_config(charger.id, charger.url)]) as poller:
        async with subscriber(own_broker, certs, client_id="t-replay-1") as before:
            await before.wait_for(
                lambda: all(before.latest(t) for t in steady), 10, "the first snapshot"
            )
        sent = {t: before.latest(t).payload for t in steady}  # type: ignore[union-attr]
        # Mosquitto saves to disk every 10 s (autosave_interval): killed now, it forgets
        # the retained values it acknowledged a moment ago.
        own_broker.kill()
        await asyncio.sleep(0.5)
        own_broker.start()
        await eventually(
            lambda: metric(poller, "poller_replayed_total", charger=charger.id) >= len(steady),
            15,
            "the replay after the reconnect",
        )
        async with subscriber(own_broker, certs, client_id="t-replay-2") as after:
            await after.wait_for(
                lambda: all(after.latest(t) for t in steady), 5, "retained values after the kill"
            )
    for topic in steady:
        retained = after.latest(topic)
        assert retained is not None
        assert retained.retain
        assert retained.payload == sent[topic]  # the same sample, original SamplingTime
