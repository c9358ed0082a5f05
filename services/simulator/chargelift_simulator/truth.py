"""Ground truth: an append-only JSONL record of every state the simulator served.

The end-to-end loss check compares what reached the database with this file, so a line
is written only for an answer that was actually put on an open connection: one line per
successful ``GET /ChargeData`` (the exact bytes served, extra fault keys included)::

    {"charger": "amtron-1", "served_at": "2026-11-25T10:00:00.123456Z",
     "sim_time": "2026-11-25T10:00:00.123456Z", "data": {...the JSON served...}}

and one line per finished session::

    {"charger": "amtron-1", "event": "session_end", "energy_wh": 12648,
     "start": "<sim RFC 3339>", "end": "<sim RFC 3339>", "duration_s": 4120, "reason": "full"}

Lines are buffered in memory and written whole (``flush``, called by the fleet's ticker
about ten times a second and at exit), so a reader never sees half a line from us.
"""

from __future__ import annotations

import io
from pathlib import Path

import orjson

from chargelift_simulator.clock import rfc3339

#: Write the buffer out early when it grows beyond this many bytes.
_FLUSH_AT = 256 * 1024


class TruthLog:
    """The JSONL ground-truth file; with ``path=None`` every call is a no-op."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: io.FileIO | None = None
        self._buf = bytearray()

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def open(self) -> None:
        """Open for appending (never truncates an earlier run's lines)."""
        if self.path is not None and self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = io.FileIO(self.path, "a")

    def served(self, charger_json: bytes, served_at: float, sim_ts: float, body: bytes) -> None:
        """Record one ChargeData answer; ``body`` is the JSON exactly as served."""
        if self._file is None:
            return
        self._buf += b'{"charger":%b,"served_at":"%b","sim_time":"%b","data":%b}\n' % (
            charger_json,
            rfc3339(served_at).encode(),
            rfc3339(sim_ts).encode(),
            body,
        )
        if len(self._buf) >= _FLUSH_AT:
            self.flush()

    def session_end(
        self,
        charger: str,
        *,
        energy_wh: int,
        start_ts: float,
        end_ts: float,
        duration_s: int,
        reason: str,
    ) -> None:
        """Record a finished session (times are simulated instants)."""
        if self._file is None:
            return
        event = {
            "charger": charger,
            "event": "session_end",
            "energy_wh": energy_wh,
            "start": rfc3339(start_ts),
            "end": rfc3339(end_ts),
            "duration_s": duration_s,
            "reason": reason,
        }
        self._buf += orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)

    def flush(self) -> None:
        """Write the buffered lines (whole lines only)."""
        if self._file is None or not self._buf:
            return
        view = memoryview(self._buf)
        while view:  # FileIO.write may write less than asked
            written = self._file.write(view)
            view = view[written or 0 :]
        view.release()
        self._buf.clear()

    def close(self) -> None:
        """Flush and close."""
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            self._file.close()
            self._file = None
