"""Fixtures of the poller's integration tests: three simulated chargers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.poller.support import PIN


@pytest.fixture
async def fleet() -> AsyncIterator[Any]:
    """Three simulated AMTRONs (amtron-1..3) on free ports, all plugged in and charging."""
    from chargelift_simulator import Fleet, FleetConfig

    config = FleetConfig(
        count=3,
        base_port=0,
        host="127.0.0.1",
        pin=PIN,
        seed=1,
        speed=1.0,
        truth_log=None,
        prefix="amtron-",
        control_port=None,
    )
    async with Fleet(config) as f:
        for charger in f.chargers:
            charger.plug()
        yield f
