"""Change detection plus a periodic full snapshot, per charger.

A field is published when its value differs from the last value *written to the
outbox* for it, and every field is published at least every ``snapshot_interval``
seconds (a "full" read). The last values live in memory only: after a (re)start the
first read is a full snapshot, which costs one extra message per field and needs no
state on disk. After a charger was down the next read is full too.

Values are compared with their JSON type (``1`` and ``True`` and ``1.0`` differ), so a
change of type is a change.
"""

from __future__ import annotations

from collections.abc import Mapping

from chargelift_contract.envelope import Value


def _key(value: Value) -> tuple[type, Value]:
    return (type(value), value)


class ChangeDetector:
    """Decides which fields of a reading go to the outbox."""

    def __init__(self, snapshot_interval: float) -> None:
        if snapshot_interval <= 0:
            raise ValueError("snapshot_interval must be positive")
        self._interval = snapshot_interval
        self._last: dict[str, tuple[type, Value]] = {}
        self._last_snapshot: float | None = None

    def snapshot_due(self, now: float) -> bool:
        """True if the next read must be full (first read, after ``forget``, or periodic)."""
        return self._last_snapshot is None or now - self._last_snapshot >= self._interval

    def select(self, values: Mapping[str, Value], *, full: bool) -> dict[str, Value]:
        """The fields to write: all of them if ``full``, else those that changed."""
        if full:
            return dict(values)
        last = self._last
        return {k: v for k, v in values.items() if last.get(k) != _key(v)}

    def commit(self, written: Mapping[str, Value], *, full: bool, now: float) -> None:
        """Record what was written to the outbox (call only after it committed)."""
        for k, v in written.items():
            self._last[k] = _key(v)
        if full:
            self._last_snapshot = now

    def forget(self) -> None:
        """Make the next read a full snapshot (after the charger was down)."""
        self._last_snapshot = None
