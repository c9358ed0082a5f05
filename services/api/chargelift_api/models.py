"""Response models of ``/api/v1`` (the OpenAPI schema, with examples)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chargelift_api.periods import Period
from chargelift_contract import OperationState

ValueT = float | str | bool | None

_T = "2026-11-24T21:00:00Z"


class _Model(BaseModel):
    """Fields with an alias (``from``, ``to``) are set by name in code, by alias in JSON."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)


class ChargerSummary(_Model):
    """A charger and what it does now."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "amtron-1",
                    "first_seen": "2026-10-01T08:00:00Z",
                    "last_seen": _T,
                    "availability": "online",
                    "operation_state": "charging",
                    "power_w": 7360.0,
                }
            ]
        }
    )

    id: str = Field(examples=["amtron-1"])
    first_seen: datetime = Field(description="SamplingTime of the first reading ever stored")
    last_seen: datetime = Field(description="SamplingTime of the latest reading stored")
    availability: Literal["online", "offline"] | None = Field(
        description="as last reported by the edge (its MQTT last will says offline)"
    )
    operation_state: OperationState | None = Field(description="current OperationState")
    power_w: float | None = Field(description="current PowerOutput, W")


class FieldValue(_Model):
    """The latest value of one field."""

    field: str = Field(examples=["PowerOutput"])
    value: ValueT = Field(examples=[7360.0])
    unit: str | None = Field(examples=["W"])
    sampling_time: datetime = Field(description="when the edge read the value")
    age_s: float = Field(description="seconds from SamplingTime to now", examples=[3.2])


class ChargerDetail(ChargerSummary):
    """A charger with the latest value of every field it has published."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "amtron-1",
                    "first_seen": "2026-10-01T08:00:00Z",
                    "last_seen": _T,
                    "availability": "online",
                    "operation_state": "charging",
                    "power_w": 7360.0,
                    "fields": [
                        {
                            "field": "PowerOutput",
                            "value": 7360.0,
                            "unit": "W",
                            "sampling_time": _T,
                            "age_s": 3.2,
                        },
                        {
                            "field": "OperationState",
                            "value": "charging",
                            "unit": None,
                            "sampling_time": "2026-11-24T19:12:05Z",
                            "age_s": 6478.2,
                        },
                    ],
                }
            ]
        }
    )

    fields: list[FieldValue]


class RawPoint(_Model):
    """One reading: the value from ``time`` on (until the next reading)."""

    time: datetime
    value: ValueT


class NumericBucket(_Model):
    """Aggregates of a numeric field over one bucket, with the value carried in."""

    start: datetime
    min: float | None = Field(description="smallest value in force during the bucket")
    avg: float | None = Field(description="time-weighted average over the bucket")
    max: float | None = Field(description="largest value in force during the bucket")
    last: float | None = Field(
        description="value in force at the end of the bucket (or of the data, if earlier)"
    )
    count: int = Field(
        description="readings inside the bucket (0: the value was carried in, or nothing "
        "is known: before the first reading or after the latest one, where all are null)"
    )


class StateBucket(_Model):
    """Time in each OperationState during one bucket."""

    start: datetime
    seconds: dict[OperationState, float] = Field(
        description="seconds spent in each state; `{}` when no state is known in the bucket "
        "(before the first reading or after the latest one)",
        examples=[{"charging": 2400.0, "idle": 1200.0}],
    )


class Readings(_Model):
    """History of one field: raw ``points``, numeric ``buckets`` or ``states`` per bucket."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "charger": "amtron-1",
                    "field": "PowerOutput",
                    "unit": "W",
                    "from": "2026-11-24T00:00:00Z",
                    "to": "2026-11-24T02:00:00Z",
                    "bucket_s": 3600,
                    "initial": {"time": "2026-11-23T23:58:00Z", "value": 0.0},
                    "buckets": [
                        {
                            "start": "2026-11-24T00:00:00Z",
                            "min": 0.0,
                            "avg": 2500.5,
                            "max": 11040.0,
                            "last": 11000.0,
                            "count": 1320,
                        },
                        {
                            "start": "2026-11-24T01:00:00Z",
                            "min": 11000.0,
                            "avg": 11000.0,
                            "max": 11000.0,
                            "last": 11000.0,
                            "count": 0,
                        },
                    ],
                }
            ]
        }
    )

    charger: str
    field: str
    unit: str | None
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    bucket_s: int | None = Field(description="bucket width in seconds; null for raw points")
    initial: RawPoint | None = Field(description="the value carried in from before `from`")
    points: list[RawPoint] | None = None
    buckets: list[NumericBucket] | None = None
    states: list[StateBucket] | None = None


class TariffLine(_Model):
    """Energy charged under one tariff at one price, and what it cost."""

    tariff: str = Field(description="`Tariff` in force, `default` if none is published")
    price_ct_per_kwh: float | None = Field(description="`EnergyPrice` in force; null if unknown")
    start: datetime = Field(alias="from", description="first moment charged at this price")
    end: datetime = Field(alias="to", description="last moment charged at this price")
    energy_wh: float
    cost: float = Field(description="in `currency`")


class SessionOut(_Model):
    """One charging session (one plug-in), its energy and its cost."""

    start: datetime
    end: datetime | None = Field(description="null while the session is open")
    open: bool
    duration_s: float = Field(description="to `end`; for an open session to the latest reading")
    charging_s: float = Field(description="time in OperationState charging")
    energy_wh: float = Field(description="from register deltas, resets detected")
    peak_power_w: float | None
    cost: float = Field(description="in `currency`, integrated per price interval")
    unpriced_energy_wh: float = Field(description="energy charged while no price was known")
    offline_during_session: bool = Field(
        description="the charger went offline during the session: its end may be late"
    )
    id_tag: str | None = Field(
        description="`IdTag` of the session (the RFID card or app that authorised it), "
        "from chargers that report it (OCPP); null when the charger reports none",
        examples=["04A2B3C4D5"],
    )
    transaction_id: str | None = Field(
        description="`TransactionId` of the session (the charger's or gateway's id of its "
        "transaction); null when the charger reports none",
        examples=["1042"],
    )
    tariffs: list[TariffLine]


class Sessions(_Model):
    """Sessions that started in [from, to); each is reported whole, in one window only."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "charger": "amtron-1",
                    "from": "2026-11-24T00:00:00+01:00",
                    "to": "2026-11-25T00:00:00+01:00",
                    "currency": "EUR",
                    "energy_register": "SessionEnergy",
                    "sessions": [
                        {
                            "start": "2026-11-24T22:30:00+01:00",
                            "end": "2026-11-25T01:10:00+01:00",
                            "open": False,
                            "duration_s": 9600.0,
                            "charging_s": 9000.0,
                            "energy_wh": 27500.0,
                            "peak_power_w": 11040.0,
                            "cost": 6.05,
                            "unpriced_energy_wh": 0.0,
                            "offline_during_session": False,
                            "id_tag": "04A2B3C4D5",
                            "transaction_id": "1042",
                            "tariffs": [
                                {
                                    "tariff": "T1",
                                    "price_ct_per_kwh": 30.0,
                                    "from": "2026-11-24T22:30:00+01:00",
                                    "to": "2026-11-24T23:00:00+01:00",
                                    "energy_wh": 5500.0,
                                    "cost": 1.65,
                                },
                                {
                                    "tariff": "T2",
                                    "price_ct_per_kwh": 20.0,
                                    "from": "2026-11-24T23:00:00+01:00",
                                    "to": "2026-11-25T01:10:00+01:00",
                                    "energy_wh": 22000.0,
                                    "cost": 4.4,
                                },
                            ],
                        }
                    ],
                    "total_energy_wh": 27500.0,
                    "total_cost": 6.05,
                }
            ]
        }
    )

    charger: str
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    currency: str
    energy_register: str | None = Field(description="the energy register used (a field name)")
    sessions: list[SessionOut]
    total_energy_wh: float
    total_cost: float


class PeriodOut(_Model):
    """Energy and cost of one calendar period."""

    start: datetime
    end: datetime
    energy_wh: float
    cost: float
    unpriced_energy_wh: float
    tariffs: list[TariffLine]


class Energy(_Model):
    """Energy and cost per calendar period (in ``timezone``) and tariff."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "charger": "amtron-1",
                    "period": "day",
                    "timezone": "Europe/Berlin",
                    "currency": "EUR",
                    "energy_register": "SessionEnergy",
                    "periods": [
                        {
                            "start": "2026-11-24T00:00:00+01:00",
                            "end": "2026-11-25T00:00:00+01:00",
                            "energy_wh": 5500.0,
                            "cost": 1.65,
                            "unpriced_energy_wh": 0.0,
                            "tariffs": [
                                {
                                    "tariff": "T1",
                                    "price_ct_per_kwh": 30.0,
                                    "from": "2026-11-24T22:30:00+01:00",
                                    "to": "2026-11-24T23:00:00+01:00",
                                    "energy_wh": 5500.0,
                                    "cost": 1.65,
                                }
                            ],
                        }
                    ],
                    "total_energy_wh": 5500.0,
                    "total_cost": 1.65,
                }
            ]
        }
    )

    charger: str
    period: Period
    timezone: str
    currency: str
    energy_register: str | None = Field(description="the energy register used (a field name)")
    periods: list[PeriodOut]
    total_energy_wh: float
    total_cost: float


CommandStatusT = Literal["pending", "applied", "rejected", "expired", "failed"]


class Reverted(_Model):
    """The limit's lease ran out: the charger went back to its default limit."""

    at: datetime
    reason: str


class CommandOut(_Model):
    """A command and where it stands (docs/api.md, "Commands")."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "api:5f0c…",
                    "charger": "amtron-1",
                    "command": "set_current_limit",
                    "value": 10.0,
                    "valid_for": 300.0,
                    "issuer": "token:evcc",
                    "via": "api",
                    "issued_at": "2026-12-02T10:00:00Z",
                    "expires_at": "2026-12-02T10:01:00Z",
                    "received_at": "2026-12-02T10:00:00.004Z",
                    "status": "applied",
                    "reason": "read back 10 A",
                    "result_at": "2026-12-02T10:00:01.250Z",
                    "result_value": 10.0,
                    "lease_end": "2026-12-02T10:05:01.250Z",
                    "reverted": None,
                }
            ]
        }
    )

    id: str = Field(description="the command id (also its CommandId on the broker)")
    charger: str
    command: str = Field(
        description="set_current_limit, pause, resume, stop, start, set_operative or "
        "set_inoperative (a command another controller sent over MQTT: its API name too)"
    )
    value: float | None = Field(description="the limit asked for, in A (null for the others)")
    valid_for: float | None = Field(description="the lease asked for, in s")
    issuer: str | None = Field(description="who sent it: `token:<name>` for the API's")
    via: Literal["api", "mqtt"] = Field(description="sent through the API or straight to MQTT")
    issued_at: datetime
    expires_at: datetime = Field(description="the edge refuses it from then on")
    received_at: datetime = Field(description="when it was recorded")
    status: CommandStatusT
    reason: str | None = Field(description="the edge's reason, or why it expired")
    result_at: datetime | None = Field(description="when the edge decided (null without result)")
    result_value: float | None = Field(description="the limit in force afterwards, in A")
    lease_end: datetime | None = Field(description="when the limit reverts unless renewed")
    reverted: Reverted | None = Field(description="the lease ran out (after `applied`)")


class CommandList(_Model):
    """One page of a charger's commands, newest first."""

    charger: str
    commands: list[CommandOut]
    next: str | None = Field(
        description="pass as `before` for the next (older) page; null on the last page"
    )
