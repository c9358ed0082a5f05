"""The API bench's pure helpers: which database path it names, bytes per reading."""

from __future__ import annotations

import math

import pytest

from tests.bench.api.storage import (
    PLAIN,
    TIMESCALEDB,
    Storage,
    bytes_per_reading,
    describe_path,
    path_key,
    ratio,
    storage_table,
)


def test_the_path_is_timescaledb_only_when_the_extension_is_installed() -> None:
    assert path_key("2.28.3") == TIMESCALEDB
    assert path_key(None) == PLAIN
    assert path_key("") == PLAIN


def test_the_path_in_words_names_both_versions() -> None:
    server = "15.20 (Debian 15.20-0+deb12u1)"
    assert describe_path(server, "2.28.3") == "TimescaleDB 2.28.3 on PostgreSQL 15.20"
    assert describe_path(server, None) == "plain PostgreSQL 15.20 (no TimescaleDB)"


def test_bytes_per_reading_is_bytes_over_rows() -> None:
    assert bytes_per_reading(1_930_000_000, 24_438_860) == pytest.approx(78.97, abs=0.01)
    assert bytes_per_reading(0, 10) == 0.0


@pytest.mark.parametrize(("size", "rows"), [(100, 0), (100, -1), (-1, 10)])
def test_bytes_per_reading_refuses_what_has_no_meaning(size: int, rows: int) -> None:
    with pytest.raises(ValueError, match=r"readings|negative"):
        bytes_per_reading(size, rows)


def test_storage_counts_indexes_in_the_total_only() -> None:
    s = Storage("raw", rows=1_000, table_bytes=80_000, index_bytes=70_000)
    assert s.total_bytes == 150_000
    assert (s.table_per_reading, s.total_per_reading) == (80.0, 150.0)


def test_ratio_is_raw_total_over_compressed_total() -> None:
    raw = Storage("raw", 1_000, 80_000, 70_000)
    compressed = Storage("compressed", 1_000, 2_500, 500)
    assert ratio(raw, compressed) == 50.0
    with pytest.raises(ValueError, match="positive"):
        ratio(raw, Storage("compressed", 1_000, 0, 0))


def test_the_storage_table_has_one_row_per_state() -> None:
    text = storage_table(
        TIMESCALEDB,
        [
            Storage("raw", 2_000_000, 160_000_000, 140_000_000),
            Storage("compressed", 2_000_000, 5_000_000, 1_000_000),
        ],
    )
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[2] == "| timescaledb | raw | 2,000,000 | 160.0 | 140.0 | 300.0 | 80.0 | 150.0 |"
    assert lines[3].endswith("| 2.5 | 3.0 |")
    assert not any(math.isnan(float(c)) for c in lines[3].split("|")[-3:-1])
