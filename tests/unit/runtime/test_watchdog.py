"""Liveness: stuck means work waits and nothing progresses for the window (issue 13)."""

from __future__ import annotations

import asyncio
import threading

from chargelift_runtime import watchdog
from chargelift_runtime.watchdog import EXIT_STUCK, Liveness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _liveness(clock: Clock, state: dict[str, int]) -> Liveness:
    return Liveness(
        "test",
        window=10,
        exit_after=5,
        waiting=lambda: state["waiting"] > 0,
        progress=lambda: state["done"],
        clock=clock,
        exit=lambda code: None,
    )


def test_waiting_without_progress_for_the_window_is_stuck() -> None:
    clock, state = Clock(), {"waiting": 0, "done": 0}
    live = _liveness(clock, state)
    clock.now += 60
    live.observe()
    assert live.healthy()  # nothing waits: idle is not stuck
    state["waiting"] = 1
    for _ in range(9):
        clock.now += 1
        live.observe()
    assert live.healthy()
    assert live.stalled_for() == 9
    clock.now += 2
    live.observe()
    assert not live.healthy()
    assert "without progress" in str(live.problem())
    state["done"] += 1  # a commit
    live.observe()
    assert live.healthy()
    assert live.stalled_for() == 0


def test_an_event_loop_that_stops_turning_is_stuck() -> None:
    clock, state = Clock(), {"waiting": 0, "done": 0}
    live = _liveness(clock, state)
    clock.now += 11  # observe() runs on the loop: not called means the loop is blocked
    assert "event loop" in str(live.problem())


async def test_the_watchdog_thread_exits_when_stuck_past_exit_after() -> None:
    exited = threading.Event()
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    state = {"waiting": 1, "done": 0}
    watchdog.TICK = 0.02
    try:
        live = Liveness(
            "test",
            window=0.2,
            exit_after=0.2,
            waiting=lambda: state["waiting"] > 0,
            progress=lambda: state["done"],
            exit=fake_exit,
        )
        async with live:
            await asyncio.sleep(0.15)
            assert live.healthy()
            await asyncio.sleep(0.15)
            assert not live.healthy()
            assert not exited.is_set()
            assert await asyncio.to_thread(exited.wait, 2)
    finally:
        watchdog.TICK = 1.0
    assert codes == [EXIT_STUCK]
