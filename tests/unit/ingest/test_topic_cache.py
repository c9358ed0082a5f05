"""Issue 14, finding 4: one certificate must not be able to run ingest out of memory.

Any client may publish under its own ``chargers/<id>/#`` with topics up to the broker's
64 KiB limit; each distinct topic lands in ingest's parse cache. The cache is bounded in
bytes, and the error texts it keeps quote a topic only in part."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from chargelift_contract.topics import MAX_TOPIC_CHARS
from chargelift_ingest import validate as v
from chargelift_ingest.validate import DeadLetter, validate

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
PAYLOAD = b'{"SamplingTime":"2026-11-24T11:00:00Z","Value":1}'


def _retained_after(topics: list[str] | range) -> int:
    v.clear_topic_cache()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for topic in topics:
            if isinstance(topic, int):  # distinct, as long as a valid topic may be
                topic = f"chargers/charger-a/x{topic:0{MAX_TOPIC_CHARS - 20}d}"
            item = validate(topic, PAYLOAD, now=NOW, max_bytes=4096, max_future=timedelta(0))
            assert isinstance(item, DeadLetter)
            assert item.reason == "bad_topic"
            assert len(item.detail) < 300, len(item.detail)
        del item
        gc.collect()
        assert v.topic_cache_bytes() <= v.TOPIC_CACHE_MAX_BYTES
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        v.clear_topic_cache()


def test_many_huge_distinct_topics_retain_a_bounded_number_of_bytes() -> None:
    # 1,500 distinct topics of 30 KB (45 MB published): the cache used to keep each one
    # with an error text quoting it whole, ~93 KB per topic (140 MB here, and 100,000
    # of them before it was cleared: 9 GB).
    topics = [f"chargers/charger-a/{i:06d}" + "x" * 30_000 for i in range(1500)]
    retained = _retained_after(topics)
    assert retained < 100_000, retained  # longer than any valid topic: never cached
    assert v.topic_cache_bytes() == 0


def test_the_topic_cache_is_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Topics of the longest valid length (cacheable), all distinct: the bytes held stay
    # within the budget (counted with overheads, so the real figure is below it).
    monkeypatch.setattr(v, "TOPIC_CACHE_MAX_BYTES", 1024 * 1024)
    retained = _retained_after(range(10_000))
    assert retained < 1024 * 1024, retained


def test_huge_invalid_charger_ids_and_fields_are_quoted_in_part() -> None:
    for topic in (
        "chargers/" + "X" * 30_000 + "/PowerOutput",
        "chargers/charger-a/" + "Y" * 30_000,
        "edges/" + "Z" * 30_000 + "/chargers",
        "a/" * 15_000,
    ):
        item = validate(topic, PAYLOAD, now=NOW, max_bytes=4096, max_future=timedelta(0))
        assert isinstance(item, DeadLetter)
        assert item.reason == "bad_topic"
        assert len(item.detail) < 300, item.detail[:400]
