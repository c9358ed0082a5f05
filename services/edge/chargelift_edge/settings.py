"""The settings every edge service shares: its outbox, its publishing, its shutdown.

A service's ``Settings`` inherits :class:`EdgeSettings` and sets its own ``env_prefix``,
so the poller reads ``POLLER_REPLAY_WINDOW`` and the OCPP gateway ``OCPP_REPLAY_WINDOW``:
one declaration, one meaning, each service's own name (docs/poller.md, docs/ocpp.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import Field, PositiveFloat, PositiveInt
from pydantic_settings import BaseSettings

from chargelift_contract.limits import MAX_PACKET_BYTES
from chargelift_edge.outbox import Outbox


class EdgeSettings(BaseSettings):
    """The outbox's bounds and durability, the publishers' window and the drain."""

    #: Acknowledged rows are kept this long (s) and re-published after every reconnect:
    #: Mosquitto saves its state only every autosave_interval (10 s), so a killed broker
    #: forgets messages it has already acknowledged.
    replay_window: float = Field(default=60.0, ge=0)
    #: Keep acknowledged rows at least this long (s) without re-publishing them past the
    #: replay window: an audit trail of what was sent (the chaos soak's ledger).
    outbox_keep_acked: float = Field(default=0.0, ge=0)
    #: Bound on unacknowledged rows; beyond it the oldest are dropped (docs/poller.md).
    outbox_max_rows: PositiveInt = 1_000_000
    #: Bound on the age (s) of unacknowledged rows (default 7 days).
    outbox_max_age: PositiveFloat = 7 * 24 * 3600.0
    #: NORMAL survives a killed process (not a power cut); FULL also a power cut, slower.
    outbox_synchronous: str = Field(default="NORMAL", pattern="^(NORMAL|FULL)$")
    #: Publishes in flight on the edge identity's one connection (all chargers share it),
    #: capped below the broker's receive maximum (Mosquitto: max_inflight_messages, 1000).
    #: It must cover the publish rate times the PUBACK round trip through a busy event
    #: loop: at 1,000 chargers 100 kept up but doubled the latency (docs/benchmarks.md).
    edge_inflight: int = Field(default=1000, ge=1, le=65535)
    #: The broker's packet limit (bytes; Mosquitto max_packet_size: MAX_PACKET_BYTES). A
    #: sample whose PUBLISH would be larger is dropped when it is queued (reason
    #: too_large): over the limit the broker drops the connection, it does not refuse.
    mqtt_max_packet_bytes: int = Field(default=MAX_PACKET_BYTES, ge=1024, le=268_435_455)
    #: Upper bound of the MQTT reconnect backoff (s).
    mqtt_max_backoff: PositiveFloat = 10.0
    #: On SIGTERM: how long (s) to keep publishing the outbox before closing.
    shutdown_grace: float = Field(default=5.0, ge=0)

    def open_outbox(
        self, path: Path, *, on_drop: Callable[[str, int], None] | None = None
    ) -> Outbox:
        """The outbox at ``path`` with these bounds; ``on_drop`` as :meth:`Outbox.open`."""
        return Outbox.open(
            path,
            max_rows=self.outbox_max_rows,
            max_age=self.outbox_max_age,
            replay_window=self.replay_window,
            keep_acked=self.outbox_keep_acked,
            synchronous=self.outbox_synchronous,
            max_packet_bytes=self.mqtt_max_packet_bytes,
            on_drop=on_drop,
        )
