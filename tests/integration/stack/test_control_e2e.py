"""Issue 16 end to end: a command through the API reaches the charger and comes back.

The whole native stack of ``make dev`` (chargelift_devstack.Stack: Mosquitto,
PostgreSQL, the simulator, the poller, ingest and the API, each its own process) in a
scratch directory. Nothing is faked: the simulator is the charger's ground truth, the
poller applies, ingest stores the audit, the API answers.

- must-show 1: a limit sent with the control token changes the simulated charger's
  current; the API's state shows it, read by the edge within two poll intervals of the
  edge's `applied`; the status becomes `applied`; the audit names the token;
- must-show 2 (API half): the read-only token gets 403 and nothing is written;
- must-show 3: with the broker down for 30 s, a command with a 10 s expiry that the API
  accepted is never applied, and its status becomes `expired`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from chargelift_certs import pki
from chargelift_devstack.main import Ports, Stack
from chargelift_devstack.procs import free_port
from tests.chaos.chaos import free_port_run
from tests.conftest import scratch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHARGER = "amtron-1"
#: The poll interval the devstack writes into the chargers file.
POLL_INTERVAL = 1.0


@pytest.fixture(scope="module")
def stack(base_dir: Path) -> Iterator[Stack]:
    work = scratch(base_dir, "control-e2e")
    certs = work / "certs"
    pki.dev_set(certs)
    ports = Ports(
        mqtt=free_port(),
        postgres=free_port(),
        api=free_port(),
        simulator=free_port_run(2),
        simulator_control=free_port(),
        poller_metrics=free_port(),
        ingest_metrics=free_port(),
        bridge_metrics=free_port(),
    )
    s = Stack(certs_dir=certs, chargers=2, speed=10, run_dir=work, ports=ports)
    try:
        s.up()
        yield s
    finally:
        s.down()


def wait(check: Any, timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def api(stack: Stack, token_key: str = "API_CONTROL_TOKEN") -> httpx.Client:
    env = stack.env_values
    return httpx.Client(
        base_url=env["API_URL"],
        headers={"Authorization": f"Bearer {env[token_key]}"},
        timeout=10,
    )


def truth(stack: Stack) -> dict[str, Any]:
    url = f"{stack.env_values['SIMULATOR_CONTROL_URL']}/chargers/{CHARGER}"
    answer: dict[str, Any] = httpx.get(url, timeout=5).json()
    return answer


def fields(client: httpx.Client) -> dict[str, dict[str, Any]]:
    try:
        answer = client.get(f"/api/v1/chargers/{CHARGER}")
    except httpx.TransportError:  # the API is still starting
        return {}
    if answer.status_code != 200:
        return {}
    return {f["field"]: f for f in answer.json()["fields"]}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_limit_through_the_api_changes_the_charger_and_the_state(stack: Stack) -> None:
    with api(stack) as control, api(stack, "API_TOKEN") as reader:
        wait(lambda: "MaximumOutputCurrent" in fields(reader), 60, "the first readings")
        before = truth(stack)
        target = 10.0 if before["current_limit"] != 10 else 12.0

        refused = reader.post(
            f"/api/v1/chargers/{CHARGER}/commands",
            json={"command": "set_current_limit", "value": target},
        )
        assert refused.status_code == 403, refused.text

        accepted = control.post(
            f"/api/v1/chargers/{CHARGER}/commands",
            json={"command": "set_current_limit", "value": target},
        )
        assert accepted.status_code == 202, accepted.text
        location = accepted.headers["Location"]
        cid = accepted.json()["id"]

        done = wait(
            lambda: (s := control.get(location).json())["status"] != "pending" and s,
            30,
            "the command's outcome",
        )
        assert done["status"] == "applied", done
        # ground truth: the simulated charger runs at the new limit
        assert truth(stack)["current_limit"] == target
        assert truth(stack)["writes"] > before["writes"]

        # the state shows the limit in force, as read by the edge within two polls
        applied_at = when(done["result_at"])
        state = wait(
            lambda: (
                (f := fields(reader)).get("MaximumOutputCurrent", {}).get("value") == target
                and f.get("CurrentLimit", {}).get("value") == target
                and f
            ),
            30,
            "the new limit in the API's state",
        )
        seen = when(state["MaximumOutputCurrent"]["sampling_time"])
        assert (seen - applied_at).total_seconds() <= 2 * POLL_INTERVAL, (seen, applied_at)

        audit = reader.get(f"/api/v1/chargers/{CHARGER}/commands").json()["commands"]
        assert audit[0]["id"] == cid
        assert audit[0]["issuer"] == "token:dev-control"
        assert audit[0]["status"] == "applied"


def test_a_command_that_expires_while_the_broker_is_down_is_never_applied(
    stack: Stack,
) -> None:
    assert stack.broker is not None
    with api(stack) as control:
        wait(lambda: truth(stack)["state"], 10, "the simulator")
        writes = truth(stack)["writes"]
        stack.broker.stop()
        try:
            accepted = control.post(
                f"/api/v1/chargers/{CHARGER}/commands",
                json={"command": "pause", "expires_in": 10},
            )
            assert accepted.status_code == 202, accepted.text
            time.sleep(30)
        finally:
            stack.broker.start()
        location = accepted.headers["Location"]
        # the broker is back: give the API, the poller and ingest time to reconnect and
        # anything queued time to arrive (it must not)
        time.sleep(10)
        status = control.get(location).json()
        assert status["status"] == "expired", status
        assert truth(stack)["writes"] == writes
