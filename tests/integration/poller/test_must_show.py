"""Issue 4, poller half, "Must show" 1-5: against a real Mosquitto and the simulator."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from chargelift_contract import CATALOGUE, OperationState, availability_topic, field_topic
from chargelift_devstack.mosquitto import MosquittoServer
from tests.integration.poller.support import (
    PIN,
    WRONG_PIN,
    PollerProcess,
    Received,
    charger_config,
    eventually,
    metric,
    outbox_rows,
    running_poller,
    settings,
    subscriber,
    write_config,
)
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration


def key(m: Received) -> tuple[str, str]:
    """A sample's identity: topic + SamplingTime (what ingest deduplicates on)."""
    return m.topic, m.payload.split(b'"SamplingTime":"', 1)[1].split(b'"', 1)[0].decode()


def all_online(poller: Any, ids: list[str]) -> bool:
    return all(metric(poller, "poller_charger_up", charger=i) == 1 for i in ids)


# -- 1 ------------------------------------------------------------------------------


async def test_values_arrive_as_retained_envelopes_and_only_changes_between_snapshots(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    ids = [c.id for c in fleet.chargers]
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite", snapshot_interval=3.0)
    chargers = [charger_config(c.id, c.url, interval=0.5) for c in fleet.chargers]
    async with (
        subscriber(own_broker, certs, client_id="t1-live") as live,
        running_poller(s, chargers),
    ):
        await asyncio.sleep(7.5)  # 15 polls per charger, at least two snapshots

    # What a late consumer sees: the retained shadow, one valid envelope per field.
    async with subscriber(own_broker, certs, client_id="t1-late") as late:
        expected_topics = {m.topic for m in live.messages}
        await late.wait_for(
            lambda: expected_topics <= {m.topic for m in late.messages}, 5, "retained values"
        )
    for charger in fleet.chargers:
        online = late.latest(availability_topic(charger.id))
        assert online is not None
        assert online.retain
        assert online.payload == b"offline"  # the poller has stopped: its will / last word
        truth: list[dict[str, Any]] = charger.truth
        for field in ("OperationState", "VendorState", "PowerOutput", "SessionEnergy", "Tariff"):
            retained = late.latest(field_topic(charger.id, field))
            assert retained is not None, f"{charger.id}/{field} not retained"
            assert retained.retain
            envelope = retained.envelope()
            CATALOGUE[field].check(envelope.value)
            assert retained.payload.startswith(b'{"SamplingTime":"')
            assert b'Z","Value":' in retained.payload
            newest = live.latest(retained.topic)
            assert newest is not None
            assert newest.payload == retained.payload
        vendor = {d["ChgState"] for d in truth}
        assert late.latest(field_topic(charger.id, "VendorState")).envelope().value in vendor  # type: ignore[union-attr]
        energies = {d["ChgNrg"] for d in truth}
        assert late.latest(field_topic(charger.id, "SessionEnergy")).envelope().value in energies  # type: ignore[union-attr]
        state = late.latest(field_topic(charger.id, "OperationState")).envelope().value  # type: ignore[union-attr]
        assert state in {s.value for s in OperationState}

    # Between snapshots only changed fields are republished.
    for charger_id in ids:
        polls: dict[str, dict[str, Any]] = defaultdict(dict)
        for m in live.samples():
            if m.charger == charger_id and not m.retain:
                t, value = key(m)[1], m.envelope().value
                polls[t][m.field or ""] = value
        ordered = [polls[t] for t in sorted(polls)]
        snapshots = [i for i, p in enumerate(ordered) if "FirmwareVersion" in p]
        assert len(snapshots) >= 2, f"{charger_id}: expected at least two full snapshots"
        full_set = set(ordered[snapshots[0]])
        assert {"OperationState", "PowerOutput", "SessionEnergy", "Tariff"} <= full_set
        last: dict[str, Any] = {}
        partial = 0
        for i, poll in enumerate(ordered):
            if i in snapshots:
                assert set(poll) == full_set, f"{charger_id}: a snapshot lacks fields"
            else:
                partial += 1
                for field, value in poll.items():
                    assert (type(value), value) != (type(last.get(field)), last.get(field)), (
                        f"{charger_id}/{field} republished unchanged between snapshots"
                    )
                assert "Tariff" not in poll
                assert "FirmwareVersion" not in poll
            last.update(poll)
        assert partial >= 5


# -- 2 ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_30_s_broker_outage_loses_nothing_and_duplicates_nothing(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    ids = [c.id for c in fleet.chargers]
    outbox = tmp_path / "outbox.sqlite"
    # The replay window is longer than the test so that the outbox still holds every
    # row at the end: the test reads from it what the poller sampled.
    s = settings(own_broker, certs, outbox, replay_window=600.0)
    chargers = [charger_config(c.id, c.url, interval=1.0) for c in fleet.chargers]
    async with (
        subscriber(own_broker, certs, client_id="t2-ingest", persistent=True) as inbox,
        running_poller(s, chargers) as poller,
    ):
        await eventually(lambda: all_online(poller, ids), 10, "chargers online")
        await asyncio.sleep(2)
        stopped = time.time()
        own_broker.stop()
        await asyncio.sleep(30)  # the simulator keeps changing, the poller keeps sampling
        assert poller.outbox is not None
        assert poller.outbox.depth > 0
        started = time.time()
        own_broker.start()
        await eventually(
            lambda: poller.outbox is not None and poller.outbox.flush_acks() >= 0
            and poller.outbox.depth == 0,
            30,
            "the outbox to drain",
        )  # fmt: skip
        taken = [
            (topic, payload) for _, topic, payload, at in outbox_rows(outbox)
            if stopped <= at <= started and not topic.endswith("/availability")
        ]  # fmt: skip
        wanted = {key(Received(t, p, False, 0)) for t, p in taken}
        await inbox.wait_for(
            lambda: wanted <= {key(m) for m in inbox.samples()}, 20, "every outage sample"
        )

    # The poller kept sampling during the outage (about one poll per second each)...
    per_charger = Counter(parse[0].split("/")[1] for parse in wanted)
    times = {c: {t for (topic, t) in wanted if topic.split("/")[1] == c} for c in ids}
    for c in ids:
        assert len(times[c]) >= 25, f"{c}: only {len(times[c])} polls during 30 s"
        assert per_charger[c] >= 25
    # ...every sample arrived with its original SamplingTime, none twice, in order.
    fresh = [m for m in inbox.samples() if not m.retain and key(m) in wanted]
    counts = Counter(key(m) for m in fresh)
    assert set(counts) == wanted
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1][:5]
    by_topic: dict[str, list[str]] = defaultdict(list)
    for m in fresh:
        by_topic[m.topic].append(key(m)[1])
    for topic, sampling_times in by_topic.items():
        assert sampling_times == sorted(sampling_times), f"{topic} out of order"
    for m in fresh:
        at = m.envelope().sampling_time.timestamp()
        assert stopped <= at <= started  # sampled during the outage, not at publish time


# -- 3 ------------------------------------------------------------------------------


async def test_sigkill_mid_run_then_restart_drains_the_outbox(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    config = write_config(
        tmp_path / "chargers.toml", [(c.id, c.url, "TEST_PIN") for c in fleet.chargers], 0.5
    )
    env = {
        "POLLER_CONFIG": str(config),
        "POLLER_OUTBOX": str(outbox),
        "MQTT_HOST": own_broker.host,
        "MQTT_PORT": str(own_broker.port),
        "MQTT_CA_FILE": str(certs.ca_file),
        "MQTT_CERTS_DIR": str(certs.dir),
        "POLLER_MQTT_MAX_BACKOFF": "1",
        "TEST_PIN": PIN,
    }
    log = tmp_path / "poller.log"
    async with subscriber(own_broker, certs, client_id="t3-ingest", persistent=True) as inbox:
        first = PollerProcess(env, log)
        await first.start()
        await eventually(first.ready, 15, "the poller to connect")
        await asyncio.sleep(1.5)
        own_broker.stop()  # from now on samples pile up in the outbox
        await asyncio.sleep(3)
        await first.kill()  # SIGKILL: no chance to flush or close anything
        pending = outbox_rows(outbox, unacked_only=True)
        samples = [(t, p) for _, t, p, _ in pending if not t.endswith("/availability")]
        assert len(samples) >= 3 * 4, "expected a backlog at the moment of the kill"

        own_broker.start()
        second = PollerProcess(env, log)
        await second.start()
        await eventually(
            lambda: not outbox_rows(outbox, unacked_only=True), 20, "the outbox to drain"
        )
        wanted = {key(Received(t, p, False, 0)) for t, p in samples}
        await inbox.wait_for(
            lambda: wanted <= {key(m) for m in inbox.samples()}, 15, "the backlog to arrive"
        )
        assert await second.stop() == 0

    arrived = [m for m in inbox.samples() if key(m) in wanted and not m.retain]
    by_topic: dict[str, list[str]] = defaultdict(list)
    for m in arrived:
        by_topic[m.topic].append(key(m)[1])
    for topic, sampling_times in by_topic.items():
        firsts = list(dict.fromkeys(sampling_times))
        assert firsts == sorted(firsts), f"{topic} out of order"
    # The payload is the one sampled before the kill, byte for byte.
    payloads = {(m.topic, m.payload) for m in arrived}
    assert set(samples) <= payloads


# -- 4 ------------------------------------------------------------------------------

FAULTS: list[tuple[str, str | tuple[str, ...] | None, dict[str, float]]] = [
    # kind, expected error class (None: the charger stays up), the fault's latency
    ("TIMEOUT", "timeout", {}),
    ("LATENCY", "timeout", {"latency_s": 2.0}),
    ("HTTP500", "http", {}),
    ("MALFORMED", "protocol", {}),
    ("TRUNCATED", ("protocol", "connection"), {}),
    ("RESET", "connection", {}),
    ("EXTRA_FIELDS", None, {}),
]


ERROR_CLASSES = ("timeout", "connection", "http", "protocol", "auth", "config")


def failures(poller: Any, charger: str) -> dict[str, float]:
    return {
        e: metric(poller, "poller_polls_failed_total", charger=charger, error=e)
        for e in ERROR_CLASSES
    }


async def test_each_fault_marks_only_that_charger_down_then_up(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from chargelift_simulator import Fault, FaultKind

    caplog.set_level(logging.INFO, logger="chargelift_poller")
    ids = [c.id for c in fleet.chargers]
    victim, others = fleet.chargers[0], [c.id for c in fleet.chargers[1:]]
    s = settings(own_broker, certs, tmp_path / "outbox.sqlite", max_backoff=0.5)
    chargers = [charger_config(c.id, c.url, interval=0.25, timeout=0.5) for c in fleet.chargers]
    async with running_poller(s, chargers) as poller:
        await eventually(lambda: all_online(poller, ids), 10, "chargers online")
        for kind, error, extra in FAULTS:
            caplog.clear()
            errors = (error,) if isinstance(error, str) else (error or ())
            failed_before = failures(poller, victim.id)
            ok_before = {o: metric(poller, "poller_polls_ok_total", charger=o) for o in others}
            victim.set_fault(Fault(getattr(FaultKind, kind), latency_s=extra.get("latency_s", 0.0)))
            if error is None:
                await asyncio.sleep(1.5)
                assert metric(poller, "poller_charger_up", charger=victim.id) == 1, kind
            else:
                await eventually(
                    lambda: metric(poller, "poller_charger_up", charger=victim.id) == 0,
                    6, f"{victim.id} down on {kind}",
                )  # fmt: skip
                await asyncio.sleep(0.6)  # a few failed retries while down
            for o in others:  # the neighbours never noticed
                assert metric(poller, "poller_charger_up", charger=o) == 1, (kind, o)
                assert metric(poller, "poller_polls_ok_total", charger=o) >= ok_before[o] + 2
            victim.set_fault(Fault(FaultKind.NONE))
            await eventually(
                lambda: metric(poller, "poller_charger_up", charger=victim.id) == 1,
                6, f"{victim.id} up after {kind}",
            )  # fmt: skip
            delta = {e: n - failed_before[e] for e, n in failures(poller, victim.id).items()}
            if error is None:
                assert not any(delta.values()), (kind, delta)
                continue
            assert sum(delta[e] for e in errors) > 0, (kind, delta)
            assert not any(n for e, n in delta.items() if e not in errors), (kind, delta)
            messages = [r.getMessage() for r in caplog.records if victim.id in r.getMessage()]
            assert sum("marked down" in m for m in messages) == 1, (kind, messages)
            assert sum("up again" in m for m in messages) == 1, (kind, messages)
        for o in others:
            assert not any(failures(poller, o).values()), o
        assert poller.endpoint is not None
        async with httpx.AsyncClient(trust_env=False) as http:
            health = await http.get(f"http://127.0.0.1:{poller.endpoint.port}/healthz")
        assert health.status_code == 200
        assert all(c["up"] for c in health.json()["chargers"].values())


# -- 5 ------------------------------------------------------------------------------


async def test_a_wrong_pin_names_the_charger_and_no_pin_is_ever_logged(
    own_broker: MosquittoServer, certs: TestCerts, fleet: Any, tmp_path: Path
) -> None:
    first, *rest = fleet.chargers
    config = write_config(
        tmp_path / "chargers.toml",
        [(first.id, first.url, "WRONG_PIN")] + [(c.id, c.url, "TEST_PIN") for c in rest],
        0.5,
    )
    env = {
        "POLLER_CONFIG": str(config),
        "POLLER_OUTBOX": str(tmp_path / "outbox.sqlite"),
        "MQTT_HOST": own_broker.host,
        "MQTT_PORT": str(own_broker.port),
        "MQTT_CA_FILE": str(certs.ca_file),
        "MQTT_CERTS_DIR": str(certs.dir),
        "POLLER_LOG_LEVEL": "DEBUG",  # the most talkative setting
        "TEST_PIN": PIN,
        "WRONG_PIN": WRONG_PIN,
    }
    proc = PollerProcess(env, tmp_path / "poller.log")
    await proc.start()
    auth = f'poller_polls_failed_total{{charger="{first.id}",error="auth"}}'
    ok = f'poller_polls_ok_total{{charger="{rest[0].id}"}}'

    async def progressed() -> bool:
        try:
            m = await proc.metrics()
        except httpx.HTTPError:
            return False
        return m.get(auth, 0) >= 1 and m.get(ok, 0) >= 3

    await eventually(progressed, 15, "an auth failure and good polls of the others")
    async with httpx.AsyncClient(trust_env=False) as http:
        base = f"http://127.0.0.1:{proc.metrics_port}"
        exposed = (await http.get(f"{base}/metrics")).text + (
            await http.get(f"{base}/healthz")
        ).text
    assert await proc.stop() == 0
    log = proc.text()

    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert f"charger {first.id}" in errors[0]
    assert "refused the PIN" in errors[0]
    assert "WRONG_PIN" in errors[0]
    for secret in (PIN, WRONG_PIN):
        assert secret not in log
        assert secret not in exposed
    assert "DevKey=" not in log  # no request URL is logged at all
    assert "DEBUG" in log  # the log really was at DEBUG

    # A clean shutdown leaves every charger "offline" (the MQTT will, sent on disconnect).
    async with subscriber(own_broker, certs, client_id="t5-late") as late:
        topics = {availability_topic(c.id) for c in fleet.chargers}
        await late.wait_for(lambda: topics <= {m.topic for m in late.messages}, 5, "availability")
    assert {late.latest(t).payload for t in topics} == {b"offline"}  # type: ignore[union-attr]
