"""What a driver is given (:class:`DriverSpec`) and what it returns (:class:`ChargerReading`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

from pydantic import SecretStr

from chargelift_contract import CATALOGUE
from chargelift_contract.envelope import EnvelopeError, Value, check_value
from chargelift_contract.fields import FieldValueError

OptionValue = str | int | float | bool

#: Largest magnitude of a number in a reading: beyond 2**53 a double (what consumers,
#: ingest included, read a JSON number as) is no longer exact, and beyond 2**64 the
#: envelope cannot even be encoded.
MAX_MAGNITUDE = 2**53


class InvalidReadingError(ValueError):
    """A reading holds a value its field cannot have (the coordinator refuses it)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field[:64]}: {problem[:200]}")
        self.field = field


def utc_now() -> datetime:
    """The wall clock in UTC (the default clock of drivers)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ChargerReading:
    """One read of one charger: catalogue field → value, all sampled at ``sampling_time``.

    ``sampling_time`` is the moment the charger's response was received (not when the
    value is published). Only catalogue fields are allowed and every value must have
    its field's type (a finite number within ±2**53); a field the charger did not report
    this time is simply absent. Else :class:`InvalidReadingError` names the field.
    """

    sampling_time: datetime
    values: Mapping[str, Value]

    def __post_init__(self) -> None:
        if self.sampling_time.tzinfo is None:
            raise ValueError("ChargerReading.sampling_time must be timezone-aware")
        for name, value in self.values.items():
            spec = CATALOGUE.get(name)
            if spec is None:
                raise InvalidReadingError(name, "not in the field catalogue")
            try:
                spec.check(check_value(value))
            except (EnvelopeError, FieldValueError) as exc:
                raise InvalidReadingError(name, str(exc)) from None
            if isinstance(value, int | float) and abs(value) > MAX_MAGNITUDE:
                raise InvalidReadingError(name, "number out of range (beyond ±2**53)")
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """Everything a driver needs to know about its charger (no I/O objects but the clock).

    ``pin_ref`` says where the PIN came from (``env AMTRON_1_PIN``); it is safe to put in
    an error message, the PIN itself never is.
    """

    charger_id: str
    url: str
    pin: SecretStr | None = None
    pin_ref: str = "no PIN configured"
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    clock: Callable[[], datetime] = utc_now
    #: Seconds one device call may take (the chargers file's ``timeout``). An HTTP driver
    #: has it from its injected client; a driver with a connection of its own (Modbus)
    #: sets its client's timeout from it.
    timeout: float = 5.0
