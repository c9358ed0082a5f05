"""The bridge's pure parts: the watermark rule, the derivations, topics, discovery, and
:class:`chargelift_bridge.core.Bridge` fed message by message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from chargelift_bridge import derive
from chargelift_bridge.core import MAX_PAYLOAD_BYTES, Bridge, Dropped, Out
from chargelift_bridge.discovery import Device, documents
from chargelift_bridge.topics import (
    discovery_topic,
    output_topic,
    parse_discovery_topic,
    parse_output_topic,
)
from chargelift_bridge.watermark import Watermarks, is_newer
from chargelift_contract.commands import parse_command
from chargelift_contract.envelope import decode
from chargelift_contract.topics import TopicError
from tests.support.hass import documented_key_problems, ha_schema_problems, ha_venv

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def env(t: datetime, value: object) -> bytes:
    return orjson.dumps({"SamplingTime": t.isoformat().replace("+00:00", "Z"), "Value": value})


def published(outs: list[Out]) -> dict[str, Any]:
    """{topic: Value} of the output envelopes among ``outs``."""
    found: dict[str, Any] = {}
    for o in outs:
        if o.topic.startswith("chargelift/ha/") and o.payload and not o.topic.endswith("/edge"):
            found[o.topic] = decode(o.payload).value
    return found


def new_bridge(**kw: Any) -> tuple[Bridge, list[Dropped]]:
    drops: list[Dropped] = []
    return Bridge(version="0.1.0", control=kw.pop("control", True), on_drop=drops.append,
                  **kw), drops  # fmt: skip


# --- the watermark rule -------------------------------------------------------------------


def test_only_a_strictly_newer_sampling_time_is_admitted() -> None:
    assert is_newer(None, T0)
    assert is_newer(T0, T0 + timedelta(microseconds=1))
    assert not is_newer(T0, T0)
    assert not is_newer(T0, T0 - timedelta(seconds=1))
    w = Watermarks()
    assert w.admit("a", T0)
    assert not w.admit("a", T0)
    assert not w.admit("a", T0 - timedelta(hours=1))
    assert w.admit("b", T0 - timedelta(hours=1))  # per topic
    assert w.admit("a", T0, same_time=True)
    assert not w.admit("a", T0 - timedelta(seconds=1), same_time=True)
    w.seen("a", T0 - timedelta(days=1))  # seeing an older one never lowers it
    assert w.get("a") == T0
    w.forget("a")
    assert w.get("a") is None
    assert w.get("b") is not None


# --- derivations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connected", "state", "status"),
    [
        (False, "idle", "A"),
        (False, "charging", "A"),
        (True, "idle", "B"),
        (True, "charging", "C"),
        (True, "unknown", "B"),
        (True, "unscheduled_downtime", "E"),
        (None, "unscheduled_downtime", "E"),
        (True, "off", "F"),
        (False, "scheduled_downtime", "F"),
        (None, "idle", None),
        (True, None, None),
    ],
)
def test_evcc_status(connected: bool | None, state: str | None, status: str | None) -> None:
    assert derive.evcc_status(connected, state) == status


def test_enabled_is_false_when_paused_out_of_service_or_limited_to_zero() -> None:
    assert derive.enabled("idle", "Idle", None) is True
    assert derive.enabled("charging", "Charging", 16) is True
    assert derive.enabled("idle", "Paused", None) is False
    assert derive.enabled("idle", "SuspendedEVSE", None) is False
    assert derive.enabled("off", None, None) is False
    assert derive.enabled("unscheduled_downtime", None, None) is False
    assert derive.enabled("idle", None, 0) is False
    assert derive.enabled(None, "Paused", None) is None


def test_energy_is_the_lifetime_register_in_kwh() -> None:
    assert derive.energy_kwh(12_345) == pytest.approx(12.345)
    assert derive.energy_kwh(None) is None


# --- topics ------------------------------------------------------------------------------


def test_topics_round_trip_and_refuse_what_is_not_ours() -> None:
    assert output_topic("amtron-1", "PowerOutput") == "chargelift/ha/amtron-1/PowerOutput"
    assert parse_output_topic("chargelift/ha/amtron-1/status") == ("amtron-1", "status")
    for bad in ("chargelift/ha/status", "chargelift/ha/Bad/PowerOutput",
                "chargelift/ha/a/b/c", "chargelift/ha/a/nope", "other/x/y"):  # fmt: skip
        assert parse_output_topic(bad) is None
    with pytest.raises(TopicError):
        output_topic("amtron-1", "lower")
    t = discovery_topic("sensor", "amtron-1", "power")
    assert t == "homeassistant/sensor/chargelift_amtron-1/power/config"
    assert parse_discovery_topic(t) == "amtron-1"
    for bad in ("homeassistant/sensor/other_x/power/config", "homeassistant/status",
                "homeassistant/sensor/chargelift_X/power/config"):  # fmt: skip
        assert parse_discovery_topic(bad) is None


# --- discovery documents (the keys documented by Home Assistant) ------------------------


def test_discovery_documents_use_only_documented_keys_and_stable_ids() -> None:
    dev = Device("Mennekes", "AMTRON 4You", "SN-1", "5.22")
    docs = documents("amtron-1", dev, version="0.1.0", control=True,
                     min_current=6, max_current=32)  # fmt: skip
    assert len(docs) == 7 + 1 + 3
    assert documented_key_problems(docs) == {}
    ids = set()
    for doc in docs.values():
        assert doc["device"]["identifiers"] == ["chargelift_amtron-1"]
        assert doc["origin"]["name"] == "chargelift"
        assert doc["availability"][0]["topic"] == "chargers/amtron-1/availability"
        assert doc["unique_id"].startswith("chargelift_amtron-1_")
        ids.add(doc["unique_id"])
        assert len(orjson.dumps(doc)) < 4096
    assert len(ids) == len(docs)
    # the same charger gives the same ids (stable across restarts)
    again = documents("amtron-1", Device(), version="9", control=True, min_current=6,
                      max_current=32)  # fmt: skip
    assert {d["unique_id"] for d in again.values()} == ids
    power = docs["homeassistant/sensor/chargelift_amtron-1/power/config"]
    assert power["state_topic"] == "chargelift/ha/amtron-1/PowerOutput"
    assert (power["device_class"], power["state_class"]) == ("power", "measurement")
    energy = docs["homeassistant/sensor/chargelift_amtron-1/session_energy/config"]
    assert (energy["device_class"], energy["state_class"]) == ("energy", "total_increasing")
    without = documents("amtron-1", dev, version="0.1.0", control=False, min_current=6,
                        max_current=32)  # fmt: skip
    assert not [t for t in without if "/button/" in t or "/number/" in t]


def test_control_payloads_are_commands_the_contract_accepts_and_each_press_is_new() -> None:
    docs = documents("amtron-1", Device(), version="0.1.0", control=True, min_current=6,
                     max_current=32)  # fmt: skip
    now = datetime.now(UTC)
    for topic, doc in docs.items():
        if "command_topic" not in doc:
            continue
        # What Home Assistant renders: value and utcnow() substituted.
        rendered = (
            doc["command_template"]
            .replace("{{ value }}", "10")
            .replace("{{ utcnow().isoformat() }}", now.isoformat())
        )
        cmd = parse_command(doc["command_topic"], rendered.encode(), received_at=now)
        assert cmd.charger == "amtron-1", topic
        assert cmd.issued_at == now


# --- the bridge, message by message -------------------------------------------------------


def test_a_retransmitted_older_sample_never_reaches_the_output() -> None:
    b, drops = new_bridge()
    out = b.handle("chargers/c1/SessionEnergy", env(T0 + timedelta(seconds=10), 2000))
    assert published(out)["chargelift/ha/c1/SessionEnergy"] == 2000
    # the outbox re-sends an older sample (at least once): nothing is published
    assert published(b.handle("chargers/c1/SessionEnergy", env(T0, 1000))) == {}
    # the same sample again: nothing either
    assert published(b.handle("chargers/c1/SessionEnergy", env(T0 + timedelta(seconds=10),
                                                                2000))) == {}  # fmt: skip
    assert drops == [Dropped.STALE, Dropped.STALE]
    assert published(b.handle("chargers/c1/SessionEnergy", env(T0 + timedelta(seconds=20),
                                                                2500))) == {
        "chargelift/ha/c1/SessionEnergy": 2500
    }  # fmt: skip


def test_retained_outputs_seed_the_watermarks_so_a_restart_does_not_regress() -> None:
    b, _ = new_bridge()
    # On start the broker sends the retained output first (the subscription order) ...
    assert b.handle("chargelift/ha/c1/PowerOutput", env(T0 + timedelta(seconds=5), 7400)) == []
    assert b.handle("chargelift/ha/c1/power", env(T0 + timedelta(seconds=5), 7400)) == []
    # ... then the retained input, which a retransmission had made older.
    out = b.handle("chargers/c1/PowerOutput", env(T0, 3000))
    assert published(out) == {}
    assert out  # the discovery documents of a charger seen for the first time
    assert all(o.topic.startswith("homeassistant/") for o in out[:-1])
    assert out[-1] == Out("chargelift/ha/c1/edge", b"online")


def test_derived_values_for_evcc() -> None:
    b, _ = new_bridge()
    b.handle("chargers/c1/ConnectedVehicle", env(T0, True))
    out = b.handle("chargers/c1/OperationState", env(T0 + timedelta(seconds=1), "charging"))
    assert published(out)["chargelift/ha/c1/status"] == "C"
    assert published(out)["chargelift/ha/c1/enabled"] is True
    out = b.handle("chargers/c1/VendorState", env(T0 + timedelta(seconds=2), "Paused"))
    assert published(out)["chargelift/ha/c1/enabled"] is False
    out = b.handle("chargers/c1/PowerOutput", env(T0, 11040))
    assert published(out)["chargelift/ha/c1/power"] == 11040
    out = b.handle("chargers/c1/TotalEnergyConsumption", env(T0, 1_234_500))
    assert published(out)["chargelift/ha/c1/energy"] == pytest.approx(1234.5)
    # SessionEnergy is never evcc's energy (it restarts at every session)
    out = b.handle("chargers/c1/SessionEnergy", env(T0 + timedelta(seconds=9), 5))
    assert "chargelift/ha/c1/energy" not in published(out)
    # an older ConnectedVehicle changes neither the field nor the derived status
    out = b.handle("chargers/c1/ConnectedVehicle", env(T0 - timedelta(seconds=1), False))
    assert published(out) == {}


def test_a_derived_value_is_completed_by_the_other_fields_of_the_same_reading() -> None:
    # One poll: the fields share a SamplingTime and arrive one by one; the status
    # computed from the first of them is corrected at the same time, never older.
    b, _ = new_bridge()
    b.handle("chargers/c1/ConnectedVehicle", env(T0, False))
    b.handle("chargers/c1/OperationState", env(T0, "idle"))
    t1 = T0 + timedelta(seconds=5)
    out = b.handle("chargers/c1/OperationState", env(t1, "charging"))
    assert published(out)["chargelift/ha/c1/status"] == "A"  # the plug is not read yet
    out = b.handle("chargers/c1/ConnectedVehicle", env(t1, True))
    assert published(out)["chargelift/ha/c1/status"] == "C"
    assert decode(next(o.payload for o in out if o.topic.endswith("/status"))).sampling_time == t1
    # the same value at the same time is not published again
    assert "chargelift/ha/c1/status" not in published(
        b.handle("chargers/c1/VendorState", env(t1, "Charging"))
    )


def test_discovery_on_first_sight_on_device_change_and_on_home_assistant_birth() -> None:
    b, _ = new_bridge()
    first = b.handle("chargers/c1/availability", b"online")
    topics = {o.topic for o in first}
    assert "homeassistant/sensor/chargelift_c1/power/config" in topics
    assert b.handle("chargers/c1/availability", b"offline") == []  # known: no repeat
    out = b.handle("chargers/c1/ChargerVendor", env(T0, "Mennekes"))
    docs = {o.topic: orjson.loads(o.payload) for o in out if o.topic.startswith("homeassistant/")}
    assert docs
    assert all(d["device"]["manufacturer"] == "Mennekes" for d in docs.values())
    # the same vendor again (newer sample): no new documents
    out = b.handle("chargers/c1/ChargerVendor", env(T0 + timedelta(seconds=1), "Mennekes"))
    assert not [o for o in out if o.topic.startswith("homeassistant/")]
    assert b.handle("homeassistant/status", b"offline") == []
    again = b.handle("homeassistant/status", b"online")
    assert {o.topic for o in again} == topics
    assert all(o.retain and o.payload for o in again)


def test_a_retired_charger_s_documents_and_outputs_are_removed() -> None:
    b, _ = new_bridge()
    b.handle("chargers/c1/availability", b"online")
    b.handle("chargers/c1/PowerOutput", env(T0, 1))
    b.handle("chargers/c2/availability", b"online")
    # a document left by an earlier run with control on, found retained
    b.handle("homeassistant/button/chargelift_c1/old/config", b"{}")
    out = b.handle("chargers/c1/availability", b"")
    assert out
    assert all(o.payload == b"" and o.retain for o in out)
    removed = {o.topic for o in out}
    assert "homeassistant/sensor/chargelift_c1/power/config" in removed
    assert "homeassistant/button/chargelift_c1/old/config" in removed
    assert "chargelift/ha/c1/PowerOutput" in removed
    assert not [t for t in removed if "c2" in t]
    assert "c1" not in b.chargers
    assert b.handle("chargers/c1/availability", b"") == []  # already gone
    # Home Assistant's birth message brings back only the chargers still there.
    assert not [o for o in b.handle("homeassistant/status", b"online") if "c1" in o.topic]


def test_the_birth_message_does_not_revive_documents_of_a_charger_not_seen() -> None:
    b, _ = new_bridge()
    b.handle("homeassistant/sensor/chargelift_gone/power/config", b"{}")  # retained, old
    assert b.handle("homeassistant/status", b"online") == []


def test_a_charger_behind_an_edge_is_offline_while_every_edge_listing_it_is() -> None:
    b, drops = new_bridge()
    first = b.handle("chargers/c1/availability", b"online")
    assert Out("chargelift/ha/c1/edge", b"online") in first  # with the documents
    off, on = Out("chargelift/ha/c1/edge", b"offline"), Out("chargelift/ha/c1/edge", b"online")
    assert b.handle("edges/site-1/chargers", b'["c1"]') == []  # still online
    assert b.handle("edges/site-1/availability", b"offline") == [off]
    # listed by a second edge whose availability is not known yet: reachable
    assert b.handle("edges/site-2/chargers", b'["c1", "c2"]') == [on]
    assert b.handle("edges/site-2/availability", b"offline") == [off]
    assert b.handle("edges/site-1/availability", b"online") == [on]
    assert b.handle("edges/site-1/chargers", b"[]") == [off]  # moved away: only site-2
    assert b.handle("edges/site-2/chargers", b"") == [on]  # listed by none
    assert b.reachable("c2")
    # hostile edge messages: dropped, nothing else changes
    for topic, payload in (
        ("edges/site-1/chargers", b"not json"),
        ("edges/site-1/chargers", b'["BAD ID"]'),
        ("edges/site-1/availability", b"maybe"),
        ("edges/site-1/other", b"x"),
        ("edges/site-1/chargers", b"[" + b'"c1",' * 20_000 + b'"c1"]'),
    ):
        assert b.handle(topic, payload) == []
    assert drops.count(Dropped.INVALID) == 5
    # a retired charger's edge topic is deleted with the rest
    assert Out("chargelift/ha/c1/edge", b"") in b.handle("chargers/c1/availability", b"")


def test_documents_of_a_switched_off_control_are_removed_on_announce() -> None:
    b, _ = new_bridge(control=False)
    b.handle("homeassistant/button/chargelift_c1/pause/config", b"{}")
    out = b.handle("chargers/c1/availability", b"online")
    assert Out("homeassistant/button/chargelift_c1/pause/config", b"") in out


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"{}",
        b'{"SamplingTime": "2026-12-02T10:00:00Z"}',
        b'{"SamplingTime": "2026-12-02T10:00:00Z", "Value": NaN}',
        b'{"SamplingTime": "2026-12-02T10:00:00Z", "Value": 1e400}',
        b'{"SamplingTime": "2026-12-02T10:00:00Z", "Value": "a string"}',
        b'{"SamplingTime": "2026-12-02T10:00:00Z", "Value": 1e12}',
        b'{"SamplingTime": "2026-12-02T10:00:00Z", "Value": true}',
        b'{"SamplingTime": "not a time", "Value": 1}',
        b'{"SamplingTime": "2026-12-02T10:00:00Z", "Value": [1]}',
        b"x" * (MAX_PAYLOAD_BYTES + 1),
        b'{"SamplingTime": "2026-12-02T10:00:00Z", "Value": "' + b"a" * 1_000_000 + b'"}',
    ],
)
def test_hostile_payloads_are_dropped_and_affect_only_themselves(payload: bytes) -> None:
    b, drops = new_bridge()
    assert published(b.handle("chargers/c1/PowerOutput", payload)) == {}
    assert drops == [Dropped.INVALID]
    assert published(b.handle("chargers/c1/PowerOutput", env(T0, 5))) == {
        "chargelift/ha/c1/PowerOutput": 5,
        "chargelift/ha/c1/power": 5,
    }


def test_a_string_with_a_nul_is_dropped() -> None:
    b, drops = new_bridge()
    assert published(b.handle("chargers/c1/Tariff", env(T0, "T1\x00"))) == {}
    assert drops == [Dropped.INVALID]


def test_unknown_fields_bad_ids_and_other_topics_publish_nothing() -> None:
    b, drops = new_bridge()
    assert b.handle("chargers/c1/NoSuchField", env(T0, 1)) == []
    assert b.handle("chargers/BAD/PowerOutput", env(T0, 1)) == []
    assert b.handle("chargers/c1/set/Pause", b'{"Value": null}') == []
    assert b.handle("chargers/c1/result/Pause", b"{}") == []
    assert b.handle("edges/e1/availability", b"online") == []
    assert drops == [Dropped.INVALID, Dropped.INVALID]
    assert b.chargers == {}


def test_the_number_of_chargers_is_bounded() -> None:
    b, drops = new_bridge(max_chargers=2)
    for c in ("c1", "c2", "c3"):
        b.handle(f"chargers/{c}/PowerOutput", env(T0, 1))
    assert set(b.chargers) == {"c1", "c2"}
    assert drops == [Dropped.TOO_MANY_CHARGERS]


@pytest.mark.skipif(ha_venv() is None, reason="HA_VENV is not set (docs/testing.md)")
def test_discovery_documents_are_valid_for_home_assistant_s_own_schemas() -> None:
    docs: dict[str, dict[str, Any]] = {}
    for control in (True, False):
        dev = Device("Mennekes", "AMTRON 4You", "SN-1", "5.22")
        docs |= documents("amtron-1", dev, version="0.1.0", control=control, min_current=6,
                          max_current=32)  # fmt: skip
    docs |= documents("ocpp-sim-1", Device(), version="0.1.0", control=True, min_current=0,
                      max_current=80)  # fmt: skip
    assert ha_schema_problems(docs) == {}
