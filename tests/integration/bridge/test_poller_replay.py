"""Issue 19 must-show 2 with a real poller: its at-least-once re-sends never reach the
topics Home Assistant reads.

After every reconnect the poller re-publishes the samples it sent within its replay
window (``POLLER_REPLAY_WINDOW``, docs/poller.md): samples the broker may have lost, but
usually already had, so the broker's retained inputs go back in time for a moment. Here
the broker restarts while a real poller polls a simulated charger; the poller, the
bridge and Home Assistant's identity reconnect on their own. On every output topic the
SamplingTimes Home Assistant receives never go back, and the bridge did drop re-sent
samples (else the test would prove nothing).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from chargelift_contract.envelope import decode
from chargelift_devstack.mosquitto import MosquittoServer
from tests.integration.bridge.conftest import HA, dropped, running_bridge
from tests.integration.broker.test_mtls import Inbox, client
from tests.integration.poller.conftest import fleet  # noqa: F401 (a fixture)
from tests.integration.poller.support import charger_config, running_poller, settings
from tests.support.certs import TestCerts

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_real_poller_s_re_sends_after_a_broker_restart_never_go_back(
    hass_broker: MosquittoServer,
    certs: TestCerts,
    fleet: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    charger = fleet.chargers[0]
    assert (certs.dir / "clients" / f"{charger.id}.crt").exists()  # the test set's
    s = settings(hass_broker, certs, tmp_path / "outbox.sqlite", replay_window=60.0)
    seen = Inbox()
    duration = f"chargelift/ha/{charger.id}/SessionDuration"  # changes with every poll
    async with (
        running_bridge(hass_broker, certs) as bridge,
        client(hass_broker, certs.tls(HA), HA, subscribe=(f"chargelift/ha/{charger.id}/#",),
               inbox=seen),
        running_poller(s, [charger_config(charger.id, charger.url)]),
    ):  # fmt: skip
        async with asyncio.timeout(30):
            while sum(1 for m in seen.messages if m.topic == duration) < 5:
                await asyncio.sleep(0.1)
        await asyncio.to_thread(hass_broker.restart)
        async with asyncio.timeout(60):
            while dropped(bridge, "stale") == 0:
                await asyncio.sleep(0.2)
        before = sum(1 for m in seen.messages if m.topic == duration)
        async with asyncio.timeout(30):  # and it goes on after the re-sends
            while sum(1 for m in seen.messages if m.topic == duration) < before + 3:
                await asyncio.sleep(0.1)
    last: dict[str, Any] = {}
    for m in seen.messages:
        if not m.payload or m.topic.endswith("/edge"):  # online/offline, not an envelope
            continue
        at = decode(m.payload).sampling_time
        assert m.topic not in last or at >= last[m.topic], (m.topic, last[m.topic], at)
        last[m.topic] = at
    assert len(last) > 5
