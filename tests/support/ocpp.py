"""A fake mapper and a list sink for the OCPP gateway's tests (the real mapper has its own)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class FakeMappingError(ValueError):
    """What the fake mapper raises for a payload with ``"idTag": "nonsense"``."""


@dataclass(frozen=True, slots=True)
class FakeReading:
    charger: str
    field: str
    value: Any
    sampled_at: datetime


@dataclass
class FakeMapper:
    """Records every call (action, payload as received, transaction id) and returns one
    reading per call for ``<charge point>-<connectorId or 1>``."""

    charge_point_id: str
    calls: list[tuple[str, dict[str, Any], int | None]] = field(default_factory=list)
    #: restore_transaction's arguments, in order (a fresh mapper after a restart).
    restored: list[tuple[int, int, float, str | None, datetime]] = field(default_factory=list)

    def _one(
        self, action: str, payload: Mapping[str, Any], now: datetime, tx: int | None = None
    ) -> list[FakeReading]:
        self.calls.append((action, dict(payload), tx))
        if payload.get("idTag") == "nonsense":
            raise FakeMappingError("nonsense id tag")
        if payload.get("idTag") == "crash":
            raise KeyError("a bug of the mapper")
        connector = payload.get("connectorId", 1)
        return [FakeReading(f"{self.charge_point_id}-{connector}", action, tx, now)]

    def boot_notification(self, payload: Mapping[str, Any], now: datetime) -> list[FakeReading]:
        return self._one("BootNotification", payload, now)

    def status_notification(self, payload: Mapping[str, Any], now: datetime) -> list[FakeReading]:
        return self._one("StatusNotification", payload, now)

    def meter_values(self, payload: Mapping[str, Any], now: datetime) -> list[FakeReading]:
        return self._one("MeterValues", payload, now)

    def start_transaction(
        self, payload: Mapping[str, Any], transaction_id: int, now: datetime
    ) -> list[FakeReading]:
        return self._one("StartTransaction", payload, now, transaction_id)

    def stop_transaction(self, payload: Mapping[str, Any], now: datetime) -> list[FakeReading]:
        return self._one("StopTransaction", payload, now)

    def authorize(self, payload: Mapping[str, Any], now: datetime) -> list[FakeReading]:
        return self._one("Authorize", payload, now)

    def restore_transaction(
        self,
        transaction_id: int,
        connector_id: int,
        meter_start: int | float,
        id_tag: str | None,
        started_at: datetime,
    ) -> None:
        self.restored.append((transaction_id, connector_id, meter_start, id_tag, started_at))


@dataclass
class ListSink:
    readings: list[Any] = field(default_factory=list)
    fail: bool = False
    #: The ``received_at`` of every submit, in order.
    received: list[float | None] = field(default_factory=list)

    def submit(self, readings: Sequence[Any], received_at: float | None = None) -> None:
        self.received.append(received_at)
        if self.fail:
            raise OSError("outbox unavailable")
        self.readings.extend(readings)


@dataclass
class FakeMappers:
    """A mapper factory that keeps its mappers for the test to look at."""

    made: dict[str, FakeMapper] = field(default_factory=dict)

    def __call__(self, charge_point_id: str) -> FakeMapper:
        self.made[charge_point_id] = m = FakeMapper(charge_point_id)
        return m
