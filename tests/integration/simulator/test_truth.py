"""The ground truth: the JSONL file and ``SimCharger.truth`` hold exactly what was served."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from chargelift_simulator import Fault, FaultKind, Fleet
from tests.integration.simulator.conftest import WINTER_NOON, config, mhcp


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_one_line_per_charge_data_served_and_one_per_session_end(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    path = tmp_path / "truth.jsonl"
    path.write_text('{"earlier": "run"}\n')  # appended to, never truncated
    served: list[dict[str, Any]] = []
    async with Fleet(config(truth_log=path, start=WINTER_NOON)) as fleet:
        first, second = fleet.chargers
        before = datetime.now(UTC)
        served.append((await client.get(mhcp(first))).json())
        first.plug()
        fleet.step(60)
        served.append((await client.get(mhcp(first))).json())
        await client.get(mhcp(first, "DevInfo"))  # not ChargeData: not in the truth
        await client.get(mhcp(first, pin="wrong"))  # 403: nothing served
        first.set_fault(Fault(FaultKind.MALFORMED))
        await client.get(mhcp(first))  # not JSON: nothing served
        first.set_fault(Fault(FaultKind.EXTRA_FIELDS))
        served.append((await client.get(mhcp(first))).json())
        first.set_fault(Fault())
        served.append((await client.get(mhcp(second))).json())
        fleet.step(60)
        first.unplug()
        after = datetime.now(UTC)
        assert first.truth == served[:3]
        assert second.truth == served[3:]
        session = first.sessions[-1]

    records = lines(path)
    assert records[0] == {"earlier": "run"}
    gets = [r for r in records[1:] if "data" in r]
    assert [r["data"] for r in gets] == served
    assert [r["charger"] for r in gets] == ["amtron-1"] * 3 + ["amtron-2"]
    for record in gets:
        assert set(record) == {"charger", "served_at", "sim_time", "data"}
        assert record["served_at"].endswith("Z")
        assert before <= datetime.fromisoformat(record["served_at"]) <= after
    assert [r["sim_time"] for r in gets] == [
        "2026-01-12T11:00:00.000000Z",
        "2026-01-12T11:01:00.000000Z",
        "2026-01-12T11:01:00.000000Z",
        "2026-01-12T11:01:00.000000Z",
    ]
    ends = [r for r in records if r.get("event") == "session_end"]
    assert ends == [
        {
            "charger": "amtron-1",
            "event": "session_end",
            "energy_wh": session.energy_wh,
            "start": "2026-01-12T11:00:03.000000Z",  # after the plug-in handshake
            "end": "2026-01-12T11:02:00.000000Z",
            "duration_s": 117,
            "reason": "unplug",
        }
    ]
    assert session.energy_wh > 300


async def test_truth_memory_keeps_the_newest_objects_only(client: httpx.AsyncClient) -> None:
    async with Fleet(config(count=1, truth_memory=3, control_port=None)) as fleet:
        charger = fleet.chargers[0]
        charger.plug()
        for _ in range(10):
            fleet.step(5)
            await client.get(mhcp(charger))
        assert len(charger.truth) == 3
        assert charger.truth[-1] == charger.model.charge_data()
        assert charger.truth[0]["ChgDuration"] < charger.truth[-1]["ChgDuration"]


async def test_no_truth_in_memory_when_it_is_switched_off(client: httpx.AsyncClient) -> None:
    async with Fleet(config(count=1, truth_memory=0, control_port=None)) as fleet:
        await client.get(mhcp(fleet.chargers[0]))
        assert fleet.chargers[0].truth == []
