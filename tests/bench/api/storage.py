"""The bench's pure arithmetic: which database path it ran on, and bytes per reading.

No I/O here (the bench queries, these helpers name and divide), so the unit tests
cover it: tests/unit/bench/test_api_storage.py.
"""

from __future__ import annotations

from dataclasses import dataclass

PLAIN = "plain"
TIMESCALEDB = "timescaledb"


def path_key(timescaledb_version: str | None) -> str:
    """``timescaledb`` when the extension is installed in the database, else ``plain``."""
    return TIMESCALEDB if timescaledb_version else PLAIN


def describe_path(server_version: str, timescaledb_version: str | None) -> str:
    """The path in words, for the bench's output: what ran, and which versions."""
    pg = f"PostgreSQL {server_version.split()[0]}"
    if timescaledb_version:
        return f"TimescaleDB {timescaledb_version} on {pg}"
    return f"plain {pg} (no TimescaleDB)"


@dataclass(frozen=True)
class Storage:
    """What the readings take on disk at one moment (``state``: raw or compressed)."""

    state: str
    rows: int
    table_bytes: int  # heap and TOAST (TimescaleDB: of every chunk, compressed or not)
    index_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.table_bytes + self.index_bytes

    @property
    def table_per_reading(self) -> float:
        return bytes_per_reading(self.table_bytes, self.rows)

    @property
    def total_per_reading(self) -> float:
        return bytes_per_reading(self.total_bytes, self.rows)


def bytes_per_reading(size_bytes: int, rows: int) -> float:
    """Bytes on disk divided by the readings they hold."""
    if rows <= 0:
        raise ValueError("no readings: bytes per reading is undefined")
    if size_bytes < 0:
        raise ValueError("a size on disk cannot be negative")
    return size_bytes / rows


def ratio(raw: Storage, compressed: Storage) -> float:
    """How many times smaller the compressed readings are (total, indexes included)."""
    if compressed.total_bytes <= 0:
        raise ValueError("compressed size must be positive")
    return raw.total_bytes / compressed.total_bytes


def storage_table(path: str, rows: list[Storage]) -> str:
    """A Markdown table of the storage measurements, as docs/benchmarks.md shows them."""
    out = [
        "| path | state | readings | table MB | indexes MB | total MB "
        "| bytes/reading (table) | bytes/reading (total) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        out.append(
            f"| {path} | {s.state} | {s.rows:,} | {s.table_bytes / 1e6:,.1f} | "
            f"{s.index_bytes / 1e6:,.1f} | {s.total_bytes / 1e6:,.1f} | "
            f"{s.table_per_reading:.1f} | {s.total_per_reading:.1f} |"
        )
    return "\n".join(out)
