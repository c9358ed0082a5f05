"""A fake clock for the edge's and the poller's unit tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta


class FakeClock:
    """Monotonic and wall time that move only when told to (or on sleep)."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.epoch = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.now().timestamp()

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)
