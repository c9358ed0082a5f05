"""The field catalogue: every field that may travel on ``chargers/{charger}/{Field}``.

One declarative table used by the drivers (what to publish), ingest (what to accept),
the database (the enum) and the API docs (units and descriptions). Adding a field is
one line here.
"""

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from chargelift_contract.envelope import Value
from chargelift_contract.errors import ContractError
from chargelift_contract.states import OperationState


class FieldType(StrEnum):
    """JSON type of a field's Value (``null`` is always allowed: "no reading")."""

    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"
    STATE = "state"  # an OperationState label


class FieldValueError(ContractError):
    """A value does not have the type its field declares."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Description of one field."""

    name: str
    type: FieldType
    unit: str | None
    description: str
    #: Plausible values of a number, inclusive, in ``unit``: what no charger can report
    #: (a garbled register, a unit mix-up, a hostile publisher) lies outside. Ingest
    #: refuses such values (dead letter ``out_of_range``) and the API treats stored ones
    #: as no reading, so aggregates stay finite (docs/api.md, "Limits").
    bounds: tuple[float, float] | None = None

    def in_bounds(self, value: float) -> bool:
        """True when a number lies within :attr:`bounds` (always, for a field without)."""
        return self.bounds is None or self.bounds[0] <= value <= self.bounds[1]

    def check(self, value: Value) -> Value:
        """Return ``value`` if it fits this field, else raise :class:`FieldValueError`."""
        if value is None:
            return None
        ok: bool
        match self.type:
            case FieldType.NUMBER:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            case FieldType.STRING:
                ok = isinstance(value, str)
            case FieldType.BOOLEAN:
                ok = isinstance(value, bool)
            case FieldType.STATE:
                ok = isinstance(value, str) and value in _STATES
        if not ok:
            expected = (
                f"one of {sorted(_STATES)}" if self.type is FieldType.STATE else self.type.value
            )
            raise FieldValueError(f"{self.name}: expected {expected}, got {value!r}")
        return value


_STATES = frozenset(s.value for s in OperationState)

_FIELDS = (
    FieldSpec(
        "OperationState",
        FieldType.STATE,
        None,
        "Generic operation state: " + ", ".join(s.value for s in OperationState) + ".",
    ),
    FieldSpec("ConnectedVehicle", FieldType.BOOLEAN, None, "A vehicle is plugged in."),
    FieldSpec(
        "PowerOutput",
        FieldType.NUMBER,
        "W",
        "Active power delivered to the vehicle (MHCP ActPwr).",
        # the Megawatt Charging System peaks at 3.75 MW; negative: a bidirectional
        # charger feeding back
        (-4e6, 4e6),
    ),
    FieldSpec(
        "OutputCurrent",
        FieldType.NUMBER,
        "A",
        "Charging current per phase (MHCP ActCurr; the vendor docs are ambiguous "
        "between actual and set current).",
        (-3000.0, 3000.0),  # MCS: 3,000 A; negative: bidirectional
    ),
    *(
        FieldSpec(
            f"OutputCurrent{phase}",
            FieldType.NUMBER,
            "A",
            f"Charging current of phase {phase} (OCPP Current.Import, phase {phase}).",
            (-3000.0, 3000.0),
        )
        for phase in ("L1", "L2", "L3")
    ),
    *(
        FieldSpec(
            f"Voltage{phase}",
            FieldType.NUMBER,
            "V",
            f"Voltage of phase {phase} against neutral (OCPP Voltage, phase {phase}-N or {phase}).",
            # AC: 230/277 V phase to neutral; DC chargers (MCS) up to 1,250 V
            (0.0, 2000.0),
        )
        for phase in ("L1", "L2", "L3")
    ),
    FieldSpec(
        "StateOfCharge",
        FieldType.NUMBER,
        "%",
        "The vehicle's state of charge, when the charger knows it (OCPP SoC).",
        (0.0, 100.0),
    ),
    FieldSpec(
        "MaximumOutputCurrent",
        FieldType.NUMBER,
        "A",
        "Current limit per phase in force now (remote limit or tariff limit).",
        (0.0, 3000.0),
    ),
    FieldSpec(
        "CurrentLimit",
        FieldType.NUMBER,
        "A",
        "Current limit per phase set by a controller (the CurrentLimit command) and in "
        "force; null when none is (the charger's default applies).",
        (0.0, 3000.0),
    ),
    FieldSpec(
        "CurrentLimitLeaseEnd",
        FieldType.STRING,
        None,
        "When the CurrentLimit in force reverts to the charger's default unless renewed "
        "(RFC 3339); null when the limit has no lease.",
    ),
    FieldSpec(
        "SessionEnergy",
        FieldType.NUMBER,
        "Wh",
        "Energy of the current or, when idle, the last charging session (MHCP ChgNrg). "
        "Restarts from 0 at a new session.",
        (0.0, 1e7),  # 10 MWh: ten times a truck's battery
    ),
    FieldSpec(
        "SessionDuration",
        FieldType.NUMBER,
        "s",
        "Duration of the current or last session (MHCP ChgDuration; unit inferred).",
        (0.0, 366 * 86400.0),
    ),
    FieldSpec(
        "TotalEnergyConsumption",
        FieldType.NUMBER,
        "Wh",
        "Lifetime energy meter of the charger, never reset. Only drivers whose "
        "charger has such a meter publish it (MHCP has none).",
        (0.0, 1e12),  # 1 TWh: 30 years at 3.75 MW
    ),
    FieldSpec(
        "IdTag",
        FieldType.STRING,
        None,
        "The id tag (RFID card, app) that authorised the current or last transaction; "
        "null when none (OCPP idTag).",
    ),
    FieldSpec(
        "TransactionId",
        FieldType.STRING,
        None,
        "The charger's or gateway's id of the current or last transaction; null when "
        "none (OCPP transactionId).",
    ),
    FieldSpec(
        "EnergyPrice",
        FieldType.NUMBER,
        "ct/kWh",
        "Energy price of the tariff in force (MHCP Price, 0.1 ct/kWh, converted).",
        # +-100 currency units per kWh; spot prices range from -50 to +400 ct/kWh
        (-10_000.0, 10_000.0),
    ),
    FieldSpec(
        "Tariff", FieldType.STRING, None, "Tariff in force, e.g. T1 (main) or T2 (off-peak)."
    ),
    FieldSpec(
        "VendorState",
        FieldType.STRING,
        None,
        "The charger's own state name, unmapped (MHCP ChgState).",
    ),
    FieldSpec(
        "ErrorCode",
        FieldType.NUMBER,
        None,
        "The charger's error code, 0 = none (MHCP DevInfo Err).",
        (-(2.0**31), 2.0**32 - 1),  # a 32-bit code, signed or not
    ),
    FieldSpec(
        "FirmwareVersion",
        FieldType.STRING,
        None,
        "Firmware of the charger's controller (MHCP DevInfo Hcc3).",
    ),
    FieldSpec(
        "VendorErrorCode",
        FieldType.STRING,
        None,
        "The charger's own error name or code, unmapped (OCPP errorCode other than "
        "NoError, and vendorErrorCode); null when none.",
    ),
    FieldSpec("ChargerVendor", FieldType.STRING, None, "The charger's manufacturer."),
    FieldSpec("ChargerModel", FieldType.STRING, None, "The charger's model."),
    FieldSpec("SerialNumber", FieldType.STRING, None, "The charger's serial number."),
)

CATALOGUE: MappingProxyType[str, FieldSpec] = MappingProxyType({f.name: f for f in _FIELDS})


def field_spec(name: str) -> FieldSpec:
    """The spec of ``name``; raise :class:`FieldValueError` naming the known fields."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise FieldValueError(f"unknown field {name!r}; known: {', '.join(CATALOGUE)}") from None
