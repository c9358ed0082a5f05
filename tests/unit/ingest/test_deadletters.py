"""The dead-letter budget (token buckets per identity and overall, bounded memory), the
natural key and the rows written (one per key, payload cut)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from chargelift_ingest.config import Settings
from chargelift_ingest.deadletters import (
    ENTRY_OVERHEAD_BYTES,
    MAX_KEY_BYTES,
    DeadLetterBudget,
    budget_key,
    dead_letter_key,
)
from chargelift_ingest.metrics import IngestMetrics
from chargelift_ingest.validate import DeadLetter
from chargelift_ingest.writer import MAX_STORED_TOPIC_CHARS, dead_letter_rows


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _limited(b: DeadLetterBudget, limit: str) -> float:
    value = b.metrics.registry.get_sample_value(
        "ingest_dead_letters_rate_limited_total", {"limit": limit}
    )
    return value or 0.0


def budget(clock: Clock, **kw: float) -> DeadLetterBudget:
    args: dict[str, float] = {"rate": 1.0, "burst": 3, "global_rate": 100.0, "global_burst": 100}
    args.update(kw)
    return DeadLetterBudget(
        rate=args["rate"],
        burst=int(args["burst"]),
        global_rate=args["global_rate"],
        global_burst=int(args["global_burst"]),
        clock=clock,
        metrics=IngestMetrics(CollectorRegistry()),
    )


def test_the_budget_key_is_the_first_two_topic_levels() -> None:
    assert budget_key("chargers/charger-a/PowerOutput") == "chargers/charger-a"
    assert budget_key("chargers/charger-a/PowerOutput/x/y") == "chargers/charger-a"
    assert budget_key("edges/site-1/chargers") == "edges/site-1"
    assert budget_key("chargers") == "chargers"
    assert len(budget_key("chargers/" + "é" * 1000).encode()) <= MAX_KEY_BYTES


def test_an_identity_gets_its_burst_then_its_rate() -> None:
    clock = Clock()
    b = budget(clock)
    assert _limited(b, "identity") == 0
    assert [b.allow("chargers/a/X") for _ in range(5)] == [None, None, None, "identity", "identity"]
    assert _limited(b, "identity") == 2
    # Another identity has its own budget.
    assert b.allow("chargers/b/X") is None
    clock.t += 1.0  # one token back
    assert b.allow("chargers/a/Y") is None
    assert b.allow("chargers/a/Y") == "identity"
    clock.t += 100.0  # refills to the burst, no further
    assert [b.allow("chargers/a/X") for _ in range(4)] == [None, None, None, "identity"]


def test_the_global_cap_bounds_all_identities_together() -> None:
    clock = Clock()
    b = budget(clock, global_rate=0.0, global_burst=4)
    assert [b.allow(f"chargers/c{i}/X") for i in range(6)] == [
        None,
        None,
        None,
        None,
        "global",
        "global",
    ]
    # A refusal by the global budget takes no token from the identity's.
    b2 = budget(clock, global_rate=1.0, global_burst=1)
    assert b2.allow("chargers/a/X") is None
    assert b2.allow("chargers/a/X") == "global"
    clock.t += 1.0
    assert b2.allow("chargers/a/X") is None  # the identity still had 2 of its 3


def test_a_flood_of_distinct_keys_cannot_grow_memory() -> None:
    clock = Clock()
    b = DeadLetterBudget(
        rate=1.0,
        burst=1,
        global_rate=1e9,
        global_burst=10**9,
        max_bytes=64 * 1024,
        clock=clock,
        metrics=IngestMetrics(CollectorRegistry()),
    )
    for i in range(10_000):
        b.allow(f"chargers/flood-{i}-{'x' * 100}/X")
    assert b.memory_bytes <= 64 * 1024
    assert b.keys <= 64 * 1024 // ENTRY_OVERHEAD_BYTES
    # The most recent ones are kept, the oldest forgotten (LRU).
    assert b.allow("chargers/flood-9999-" + "x" * 100 + "/X") == "identity"


def test_the_natural_key_separates_topic_from_payload() -> None:
    assert dead_letter_key("a/b", b"c") != dead_letter_key("a/bc", b"")
    assert dead_letter_key("a/b", b"c") == dead_letter_key("a/b", b"c")
    assert len(dead_letter_key("a/b", b"c")) == 32


def test_the_rows_are_one_per_key_with_payload_and_topic_cut() -> None:
    big = b"x" * 5000
    long_topic = "chargers/a/" + "y" * 2000
    letters = [
        DeadLetter("chargers/a/X", b"{bad", "bad_json", "not JSON"),
        DeadLetter("chargers/a/X", big, "too_large", "payload of 5000 bytes exceeds 4096"),
        DeadLetter("chargers/a/X", b"{bad", "bad_json", "not JSON"),
        DeadLetter(long_topic, b"1", "bad_topic", "too many levels"),
    ]
    keys, topics, payloads, reasons, details, counts = dead_letter_rows(letters, 1024)
    assert keys == [
        dead_letter_key(d.topic, d.payload) for d in (letters[0], *letters[1:2], letters[3])
    ]
    assert reasons == ["bad_json", "too_large", "bad_topic"]
    assert counts == [2, 1, 1]
    assert payloads == [b"{bad", big[:1024], b"1"]
    assert (
        details[1] == "payload of 5000 bytes exceeds 4096 [payload truncated to 1024 of 5000 bytes]"
    )
    assert len(topics[2]) == MAX_STORED_TOPIC_CHARS + 1  # and an ellipsis
    assert details[2].endswith(
        f"[topic truncated to {MAX_STORED_TOPIC_CHARS} of {len(long_topic)} characters]"
    )
    assert dead_letter_rows([], 1024) == ([], [], [], [], [], [])


def test_the_dead_letter_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/x")
    monkeypatch.setenv("MQTT_CA_FILE", "/c/ca.crt")
    monkeypatch.setenv("MQTT_CERTS_DIR", "/c")
    s = Settings()
    assert (s.dead_letter_rate, s.dead_letter_burst) == (0.2, 100)
    assert (s.dead_letter_global_rate, s.dead_letter_global_burst) == (5.0, 1000)
    assert (s.dead_letter_max_bytes, s.dead_letter_retention_days) == (1024, 30)
    assert s.dead_letter_prune_interval_s == 3600
    monkeypatch.setenv("INGEST_DEAD_LETTER_RETENTION_DAYS", "")  # compose's "unset"
    assert Settings().dead_letter_retention_days == 30
    monkeypatch.setenv("INGEST_DEAD_LETTER_RETENTION_DAYS", "0")  # keep for ever
    assert Settings().dead_letter_retention_days == 0
    for name, bad in (
        ("INGEST_DEAD_LETTER_BURST", "0"),
        ("INGEST_DEAD_LETTER_RATE", "-1"),
        ("INGEST_DEAD_LETTER_MAX_BYTES", "10"),
    ):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValidationError):
            Settings()
        monkeypatch.delenv(name)
