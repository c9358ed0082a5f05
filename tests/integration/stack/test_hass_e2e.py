"""Issue 19 end to end on the native stack of ``make dev`` (chargelift_devstack.Stack:
Mosquitto, the simulators, the poller, the OCPP gateway, ingest, the API and the bridge,
each its own process), read with the ``homeassistant`` identity of the development
certificates, as Home Assistant and evcc would.

- must-show 1: every simulated charger's discovery documents are on the broker; each
  uses only keys Home Assistant documents and, when ``HA_VENV`` points at a virtual
  environment with Home Assistant (docs/testing.md), passes its own MQTT schemas;
- must-show 4: the evcc configuration of docs/integrations/evcc.md, executed as evcc's
  ``mqtt`` plugin would (subscribe, the documented ``jq`` with the real ``jq``, the
  documented payloads published): status, power and enabled read right, and
  ``maxcurrent`` / ``enable`` change the simulated charger.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from chargelift_certs import pki
from chargelift_devstack.main import Ports, Stack
from chargelift_devstack.procs import free_port
from chargelift_runtime.mqtt import Message, MqttClient, TlsFiles
from tests.chaos.chaos import free_port_run
from tests.conftest import scratch
from tests.support.hass import documented_key_problems, ha_schema_problems

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
EVCC_DOC = REPO / "docs" / "integrations" / "evcc.md"
CHARGER = "amtron-1"
SIMULATED = ("amtron-1", "amtron-2", "ocpp-sim-1")
#: Documents per charger with control: 7 sensors/binary sensors, a number, 3 buttons.
DOCUMENTS = 11


@pytest.fixture(scope="module")
def stack(base_dir: Path) -> Iterator[Stack]:
    work = scratch(base_dir, "hass-e2e")
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
        ocpp=free_port(),
        ocpp_metrics=free_port(),
        bridge_metrics=free_port(),
    )
    s = Stack(certs_dir=certs, chargers=2, speed=10, run_dir=work, ports=ports,
              ocpp_charge_points=1, ocpp_simulator_args=["--interval", "10"])  # fmt: skip
    try:
        s.up()
        yield s
    finally:
        s.down()


class Topics:
    """The latest message per topic, as a subscriber (evcc, Home Assistant) keeps them."""

    def __init__(self) -> None:
        self.latest: dict[str, bytes] = {}
        self.changed = asyncio.Event()

    async def handle(self, msg: Message) -> None:
        self.latest[msg.topic] = msg.payload
        self.changed.set()

    async def until(self, check: Any, timeout: float, what: str) -> Any:
        try:
            async with asyncio.timeout(timeout):
                while not (result := check()):
                    await asyncio.sleep(0.1)
                return result
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def homeassistant(stack: Stack, topics: Topics, subscriptions: tuple[str, ...]) -> MqttClient:
    env = stack.env_values
    return MqttClient(
        host=env["MQTT_HOST"],
        port=int(env["MQTT_PORT"]),
        client_id="homeassistant",
        tls=TlsFiles.for_identity(
            Path(env["MQTT_CA_FILE"]), Path(env["MQTT_CERTS_DIR"]), "homeassistant"
        ),
        subscriptions=subscriptions,
        on_message=topics.handle,
    )


async def test_every_simulated_charger_s_discovery_documents_are_on_the_broker(
    stack: Stack,
) -> None:
    topics = Topics()
    async with homeassistant(stack, topics, ("homeassistant/#",)):

        def complete() -> bool:
            return all(
                sum(1 for t, p in topics.latest.items() if f"/chargelift_{c}/" in t and p)
                >= DOCUMENTS
                for c in SIMULATED
            )

        await topics.until(complete, 90, "every simulated charger's documents")
    docs = {t: orjson.loads(p) for t, p in topics.latest.items() if p and t.endswith("/config")}
    for charger in SIMULATED:
        mine = [t for t in docs if f"/chargelift_{charger}/" in t]
        assert len(mine) == DOCUMENTS, (charger, mine)
    assert documented_key_problems(docs) == {}
    problems = ha_schema_problems(docs)  # None: HA_VENV not set (docs/testing.md)
    assert problems in (None, {}), problems


# --- evcc ---------------------------------------------------------------------------------


def evcc_charger() -> dict[str, Any]:
    """The ``chargers:`` entry of the YAML block in docs/integrations/evcc.md."""
    blocks = re.findall(r"```yaml\n(.*?)```", EVCC_DOC.read_text(), flags=re.S)
    config = next(yaml.safe_load(b) for b in blocks if "chargers:" in b)
    charger: dict[str, Any] = config["chargers"][0]
    assert charger["type"] == "custom"
    return charger


def jq(expression: str, payload: bytes) -> Any:
    """evcc's ``jq:`` applied with the real jq binary."""
    done = subprocess.run(["jq", "-c", expression], input=payload, capture_output=True,
                          check=True, timeout=10)  # fmt: skip
    return orjson.loads(done.stdout)


GO_NOW = re.compile(r"\{\{ now \| date \"([^\"]+)\" \}\}")


def render(payload: str, **values: object) -> bytes:
    """What evcc publishes: ``${name}`` replaced, then the Go template rendered. Only
    ``{{ now | date "<Go layout>" }}`` occurs in the documented payloads; the test renders
    it for the layout the page uses (Go's engine is not run here)."""
    for name, value in values.items():
        payload = payload.replace("${" + name + "}", str(value))

    def now(match: re.Match[str]) -> str:
        assert match.group(1) == "2006-01-02T15:04:05.000000Z07:00"
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"

    rendered = GO_NOW.sub(now, payload)
    assert "{{" not in rendered, rendered
    assert "${" not in rendered, rendered
    return rendered.encode()


def truth(stack: Stack) -> dict[str, Any]:
    url = f"{stack.env_values['SIMULATOR_CONTROL_URL']}/chargers/{CHARGER}"
    answer: dict[str, Any] = httpx.get(url, timeout=5).json()
    return answer


def simulator(stack: Stack, action: str) -> None:
    url = f"{stack.env_values['SIMULATOR_CONTROL_URL']}/chargers/{CHARGER}/{action}"
    httpx.post(url, timeout=5).raise_for_status()


async def test_the_evcc_configuration_of_the_docs_reads_and_drives_a_simulated_charger(
    stack: Stack,
) -> None:
    if shutil.which("jq") is None:
        pytest.fail("the real jq binary is missing: apt-get install jq")
    conf = evcc_charger()
    getters = {k: conf[k] for k in ("status", "enabled", "power", "energy")}
    for g in getters.values():
        assert g["source"] == "mqtt"
        assert g["topic"].startswith(f"chargelift/ha/{CHARGER}/")
    topics = Topics()

    def read(name: str) -> Any:
        payload = topics.latest.get(getters[name]["topic"])
        return None if not payload else jq(getters[name]["jq"], payload)

    async def publish(client: MqttClient, setter: dict[str, Any], **values: object) -> None:
        assert setter["source"] == "mqtt"
        await client.publish(setter["topic"], render(setter["payload"], **values))

    def enable_setter(value: bool) -> dict[str, Any]:
        assert conf["enable"]["source"] == "switch"
        case = next(c for c in conf["enable"]["switch"] if c["case"] is value)
        setter: dict[str, Any] = case["set"]
        return setter

    async def truth_until(check: Any, what: str) -> dict[str, Any]:
        async with asyncio.timeout(60):
            while not check(t := await asyncio.to_thread(truth, stack)):
                await asyncio.sleep(0.3)
        return t

    async with homeassistant(stack, topics, tuple(g["topic"] for g in getters.values())) as client:
        async with asyncio.timeout(30):
            await client.wait_connected()
        # No vehicle: A.
        await asyncio.to_thread(simulator, stack, "unplug")
        await topics.until(lambda: read("status") == "A", 60, "status A after unplugging")
        # A car arrives and charges: C, enabled, power drawn.
        await asyncio.to_thread(simulator, stack, "plug")
        await truth_until(lambda t: t["state"] == "Charging", "the simulated session")
        await topics.until(lambda: read("status") == "C", 60, "status C while charging")
        await topics.until(lambda: read("enabled") is True, 60, "enabled while charging")
        await topics.until(lambda: (read("power") or 0) > 0, 60, "power while charging")
        energy = read("energy")
        assert energy is None or isinstance(energy, int | float)

        # maxcurrent: the simulated charger's limit changes.
        target = 10 if truth(stack)["current_limit"] != 10 else 12
        await publish(client, conf["maxcurrent"], maxcurrent=target)
        await truth_until(lambda t: t["current_limit"] == target, f"a limit of {target} A")

        # enable false: the session pauses, evcc reads enabled false and status B.
        await publish(client, enable_setter(False))
        await truth_until(lambda t: t["state"] == "Paused", "the pause")
        await topics.until(lambda: read("enabled") is False, 60, "enabled false when paused")
        await topics.until(lambda: read("status") == "B", 60, "status B when paused")
        # enable true: it charges again.
        await publish(client, enable_setter(True))
        await truth_until(lambda t: t["state"] == "Charging", "the resumed session")
        await topics.until(lambda: read("enabled") is True, 60, "enabled again")
        await topics.until(lambda: read("status") == "C", 60, "status C again")
