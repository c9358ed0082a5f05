"""What the gateway needs of the mapper, and what it hands the readings to.

The mapper (:mod:`chargelift_ocpp.mapping`, ``ChargePointMapper``: pure, one per
charge point) turns OCPP payloads, as on the wire (camelCase keys), into readings; the
gateway hands every reading to a :class:`ReadingSink` (the uplink's durable outbox in
the service, :mod:`chargelift_ocpp.uplink`; a list in the tests). These protocols are
the interface between the two, so the connection code is tested with a fake mapper.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)


class ReadingLike(Protocol):
    """What the gateway reads of a reading (``mapping.Reading`` has more)."""

    @property
    def charger(self) -> str: ...

    @property
    def field(self) -> str: ...


class ReadingSink(Protocol):
    """Takes the readings of one message, in order; returns once they are kept.

    ``received_at``: when the gateway read the message (unix s), for
    ``ocpp_reading_publish_seconds``."""

    def submit(self, readings: Sequence[Any], received_at: float | None = None) -> None: ...


class Mapper(Protocol):
    """``mapping.ChargePointMapper``: one per charge point, kept across its connections."""

    def boot_notification(self, payload: Mapping[str, Any], now: datetime) -> Sequence[Any]: ...
    def status_notification(self, payload: Mapping[str, Any], now: datetime) -> Sequence[Any]: ...
    def meter_values(self, payload: Mapping[str, Any], now: datetime) -> Sequence[Any]: ...
    def start_transaction(
        self, payload: Mapping[str, Any], transaction_id: int, now: datetime
    ) -> Sequence[Any]: ...
    def stop_transaction(self, payload: Mapping[str, Any], now: datetime) -> Sequence[Any]: ...
    def authorize(self, payload: Mapping[str, Any], now: datetime) -> Sequence[Any]: ...
    def restore_transaction(
        self,
        transaction_id: int,
        connector_id: int,
        meter_start: int | float,
        id_tag: str | None,
        started_at: datetime,
    ) -> None: ...


#: Builds the mapper of a charge point from its id.
MapperFactory = Callable[[str], Mapper]
