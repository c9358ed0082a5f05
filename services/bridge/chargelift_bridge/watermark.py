"""The watermark rule: a topic Home Assistant reads never goes back in time (no I/O).

Between an edge and the broker delivery is at least once: after a reconnect an outbox
may send a sample again that the broker already had, and then the broker's retained
``chargers/{c}/{Field}`` holds an *older* value than one already seen. The bridge
republishes a sample on its output topic only when its SamplingTime is strictly newer
than the last one published there. The watermark of each output topic is the newest
SamplingTime published on it; on start the retained output topics themselves seed the
watermarks (they are read back before anything is published), so a restart of the
bridge does not regress either.
"""

from __future__ import annotations

from datetime import datetime


def is_newer(last: datetime | None, sampling_time: datetime) -> bool:
    """True if a sample taken at ``sampling_time`` may be published after ``last``."""
    return last is None or sampling_time > last


class Watermarks:
    """The newest SamplingTime published (or found retained) per output topic."""

    def __init__(self) -> None:
        self._last: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._last)

    def get(self, topic: str) -> datetime | None:
        return self._last.get(topic)

    def seen(self, topic: str, sampling_time: datetime) -> None:
        """Note a sample that is on ``topic`` (published by us, or found retained)."""
        last = self._last.get(topic)
        if last is None or sampling_time > last:
            self._last[topic] = sampling_time

    def admit(self, topic: str, sampling_time: datetime, *, same_time: bool = False) -> bool:
        """If the sample is newer than ``topic``'s watermark, raise it and return True.

        ``same_time``: also admit a sample as old as the watermark (a derived value whose
        inputs of one reading arrived one by one: never older, only completed)."""
        last = self._last.get(topic)
        if not (is_newer(last, sampling_time) or (same_time and sampling_time == last)):
            return False
        self._last[topic] = sampling_time
        return True

    def forget(self, prefix: str) -> None:
        """Drop the watermarks of every topic under ``prefix`` (a retired charger)."""
        for topic in [t for t in self._last if t.startswith(prefix)]:
            del self._last[topic]

    def topics(self) -> list[str]:
        return list(self._last)
