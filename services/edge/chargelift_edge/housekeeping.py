"""Periodic outbox chores: write acknowledgements, enforce bounds, prune, update gauges."""

from __future__ import annotations

import asyncio
import logging

from chargelift_edge.clock import Clock
from chargelift_edge.metrics import EdgeMetrics
from chargelift_edge.outbox import Outbox

log = logging.getLogger(__name__)


class Housekeeper:
    """Runs the outbox's chores on fixed periods (seconds)."""

    def __init__(
        self,
        outbox: Outbox,
        metrics: EdgeMetrics,
        *,
        clock: Clock,
        ack_period: float = 0.2,
        bounds_period: float = 1.0,
        prune_period: float = 5.0,
    ) -> None:
        self._outbox = outbox
        self._metrics = metrics
        self._clock = clock
        self._ack_period = ack_period
        self._bounds_period = bounds_period
        self._prune_period = prune_period

    async def run(self) -> None:
        """Until cancelled."""
        last_bounds = last_prune = self._clock.monotonic()
        while True:
            await self._clock.sleep(self._ack_period)
            self._outbox.flush_acks()
            now = self._clock.monotonic()
            if now - last_bounds >= self._bounds_period:
                last_bounds = now
                self.enforce_bounds()
                self.update_gauges()
            if now - last_prune >= self._prune_period:
                last_prune = now
                self._outbox.prune()

    def enforce_bounds(self) -> None:
        """Apply the outbox bounds; count and log every drop."""
        for reason, count in self._outbox.enforce_bounds().items():
            self._metrics.outbox_dropped.labels(reason).inc(count)
            log.warning(
                "outbox bound %s reached: dropped the %d oldest unsent row(s) "
                "(the newest value of each field is kept)",
                reason,
                count,
            )

    def update_gauges(self) -> None:
        """Refresh the outbox gauges."""
        self._metrics.outbox_depth.set(self._outbox.depth)
        self._metrics.outbox_rows.set(self._outbox.size)
        self._metrics.outbox_oldest_age.set(self._outbox.oldest_unsent_age())


async def drain(outbox: Outbox, grace: float) -> bool:
    """At shutdown: let the publishers empty the outbox for up to ``grace`` seconds.

    True when every row was acknowledged; what is left stays in the outbox for the next
    start (logged)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        outbox.flush_acks()
        if outbox.depth == 0:
            break
        await asyncio.sleep(0.05)
    outbox.flush_acks()
    if outbox.depth:
        log.warning("stopping with %d unsent row(s) kept in the outbox", outbox.depth)
        return False
    return True
