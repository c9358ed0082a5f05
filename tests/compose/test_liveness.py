"""Issue 13 in containers: a stuck service is reported unhealthy and restarted.

Compose never restarts a container for being *unhealthy*; the process's own watchdog
ends it (exit 70) and ``restart: unless-stopped`` starts it again. The stack is the real
docker-compose.yml with the stand-ins of test_compose.py, plus liveness.override.yml (a
5 s window and no write timeout for ingest, so that only the watchdog can notice a hang).

1. ingest frozen (``docker pause``) longer than its window: its health check fails while
   it is frozen; on ``unpause`` it exits 70 and compose restarts it;
2. the database frozen while readings arrive: ingest's write hangs, ``/healthz`` turns
   503 (the container shows unhealthy), the watchdog exits, compose restarts it, and once
   the database thaws every reading is stored exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.compose import engine
from tests.compose.test_compose import PROBE, Stack, _publish_series, _readings, _wait

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1800)]

EXIT_STUCK = 70


class LivenessStack(Stack):
    def compose_command(self) -> list[str]:
        cmd = super().compose_command()
        at = cmd.index("--profile")
        return [*cmd[:at], "-f", str(engine.HERE / "liveness.override.yml"), *cmd[at:]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivenessStack]:
    workdir = tmp_path_factory.mktemp("compose-liveness")
    engine.ensure_engine(workdir)
    engine.ensure_standins()
    s = LivenessStack(project=f"chargelift-liveness-{os.getpid()}", workdir=workdir)
    s.write_env()
    try:
        s.compose("build")
        s.compose("run", "--rm", "certs")  # the first start's certificates, then the probe's
        s.compose("run", "--rm", "certs", "client", PROBE)
        s.compose("up", "--detach", "--wait", "--wait-timeout", "300")
        s.copy_client_certs("monitor", PROBE)
        yield s
    finally:
        logs = s.compose("logs", "--no-color", "--tail", "300", timeout=120)
        (workdir / "compose.log").write_text(logs.stdout + logs.stderr)
        s.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=300)


def _container(stack: Stack, service: str) -> str:
    return stack.compose("ps", "--all", "-q", service).stdout.strip()


def _state(container: str) -> dict[str, object]:
    out = engine.run("docker", "inspect", container, timeout=60).stdout
    doc = json.loads(out)[0]
    state: dict[str, object] = doc["State"]
    state["RestartCount"] = doc["RestartCount"]
    return state


def _health(state: dict[str, object]) -> str:
    health = state.get("Health")
    return str(health.get("Status")) if isinstance(health, dict) else "none"


def _restarted_after(container: str, count: int, timeout: float) -> dict[str, object]:
    def check() -> dict[str, object] | None:
        state = _state(container)
        restarts = state["RestartCount"]
        assert isinstance(restarts, int)
        return state if restarts > count and state["Running"] else None

    return _wait("compose to restart the exited container", check, timeout=timeout)


def test_a_frozen_ingest_exits_on_thaw_and_is_restarted(stack: LivenessStack) -> None:
    ingest = _container(stack, "ingest")
    before = _state(ingest)["RestartCount"]
    assert isinstance(before, int)
    engine.run("docker", "pause", ingest, timeout=60)
    try:
        time.sleep(12)  # > the 5 s window
    finally:
        engine.run("docker", "unpause", ingest, timeout=60)
    state = _restarted_after(ingest, before, timeout=60)
    logs = engine.run("docker", "logs", ingest, timeout=60)
    assert "is stuck: the process was frozen" in logs.stdout + logs.stderr
    print(f"ingest restarted by compose (restart count {state['RestartCount']})")
    _wait("ingest healthy again", lambda: _health(_state(ingest)) == "healthy", timeout=90)


def test_a_hung_database_turns_ingest_unhealthy_and_it_is_restarted_losing_nothing(
    stack: LivenessStack,
) -> None:
    ingest = _container(stack, "ingest")
    timescale = _container(stack, "timescale")
    before = _state(ingest)["RestartCount"]
    assert isinstance(before, int)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    asyncio.run(_publish_series(stack, "OutputCurrent", range(0, 100), t0))
    _wait(
        "the first 100 readings",
        lambda: len(_readings(stack, PROBE, "OutputCurrent", t0 - timedelta(seconds=1))) >= 100,
    )
    engine.run("docker", "pause", timescale, timeout=60)
    try:
        asyncio.run(_publish_series(stack, "OutputCurrent", range(100, 200), t0))
        # The write hangs (no time bound in this override): the watchdog ends ingest...
        state = _restarted_after(ingest, before, timeout=120)
        print(f"ingest restarted while the database was frozen: {state['RestartCount']}")
    finally:
        engine.run("docker", "unpause", timescale, timeout=60)
    logs = engine.run("docker", "logs", ingest, timeout=60)
    assert "is stuck: work has waited" in logs.stdout + logs.stderr

    def all_stored() -> list[object] | None:
        values = _readings(stack, PROBE, "OutputCurrent", t0 - timedelta(seconds=1))
        return values if len(values) >= 200 else None

    _wait("all 200 readings", all_stored, timeout=180)
    values = _readings(stack, PROBE, "OutputCurrent", t0 - timedelta(seconds=1))
    assert values == [float(v) for v in range(200)]  # all, once each
