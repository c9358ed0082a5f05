"""A live fleet on free loopback ports, on the manual clock, and an httpx client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from chargelift_simulator import Fleet, FleetConfig, SimCharger

#: A PIN nobody would print by accident; tests look for it in outputs.
PIN = "5173-sim-secret"
WINTER_NOON = datetime(2026, 1, 12, 12, 0)


def config(**overrides: object) -> FleetConfig:
    values: dict[str, object] = {
        "count": 2,
        "pin": PIN,
        "seed": 1,
        "start": WINTER_NOON,
        "auto_tick": False,
        "random_traffic": False,
        "control_port": 0,
    }
    values.update(overrides)
    return FleetConfig(**values)  # type: ignore[arg-type]


def mhcp(charger: SimCharger, endpoint: str = "ChargeData", pin: str | None = PIN) -> str:
    query = "" if pin is None else f"?DevKey={pin}"
    return f"{charger.url}/MHCP/1.0/{endpoint}{query}"


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """Two chargers, no cars, time moves only by ``fleet.step``; truth log in tmp_path."""
    async with Fleet(config(truth_log=tmp_path / "truth.jsonl")) as f:
        yield f


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as c:
        yield c
