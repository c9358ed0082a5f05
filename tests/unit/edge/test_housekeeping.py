"""The outbox chores: every drop is counted and logged, gauges follow the outbox."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from chargelift_edge.housekeeping import Housekeeper
from chargelift_edge.metrics import EdgeMetrics
from chargelift_edge.outbox import Entry, Outbox
from tests.support.clock import FakeClock
from tests.unit.edge.conftest import sample


def test_drops_are_counted_and_logged(
    tmp_path: Path, metrics: EdgeMetrics, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with Outbox.open(tmp_path / "o.sqlite", max_rows=3, clock=clock.wall) as outbox:
        outbox.append(
            [Entry("c1", "chargers/c1/PowerOutput", b"%d" % i, clock.wall()) for i in range(10)]
        )
        keeper = Housekeeper(outbox, metrics, clock=clock)
        keeper.enforce_bounds()
        keeper.update_gauges()
        assert sample(metrics, "edge_outbox_dropped_total", reason="max_rows") == 7
        assert sample(metrics, "edge_outbox_depth") == 3
        assert sample(metrics, "edge_outbox_rows") == 3
        assert "dropped the 7 oldest unsent row(s)" in caplog.text
        keeper.enforce_bounds()  # nothing more to drop
        assert sample(metrics, "edge_outbox_dropped_total", reason="max_rows") == 7


async def test_run_writes_acknowledgements_and_prunes(
    tmp_path: Path, metrics: EdgeMetrics, clock: FakeClock
) -> None:
    with Outbox.open(tmp_path / "o.sqlite", replay_window=60, clock=clock.wall) as outbox:
        (row,) = outbox.append([Entry("c1", "chargers/c1/Tariff", b"T1", clock.wall())])
        outbox.ack(row.seq)
        keeper = Housekeeper(outbox, metrics, clock=clock, ack_period=0.2, prune_period=5.0)

        class StopLoopError(Exception):
            pass

        steps = 0

        async def sleep(seconds: float) -> None:
            nonlocal steps
            steps += 1
            clock.advance(seconds if steps < 3 else 61)
            if steps > 4:
                raise StopLoopError

        clock.sleep = sleep  # type: ignore[method-assign]
        with pytest.raises(StopLoopError):
            await keeper.run()
        assert outbox.depth == 0
        assert outbox.size == 0  # acknowledged, then pruned after the replay window
