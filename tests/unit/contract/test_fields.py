"""The field catalogue and the OperationState enum."""

import pytest

from chargelift_contract import CATALOGUE, FieldType, FieldValueError, OperationState, field_spec

SEED_FIELDS = {
    "OperationState",
    "TotalEnergyConsumption",
    "PowerOutput",
    "OutputCurrent",
    "MaximumOutputCurrent",
    "ConnectedVehicle",
    "EnergyPrice",
}


def test_catalogue_holds_the_seed_fields() -> None:
    assert set(CATALOGUE) >= SEED_FIELDS


def test_operation_state_labels_in_order() -> None:
    assert [s.value for s in OperationState] == [
        "unknown",
        "off",
        "idle",
        "charging",
        "scheduled_downtime",
        "unscheduled_downtime",
    ]


def test_every_field_is_documented() -> None:
    for spec in CATALOGUE.values():
        assert spec.description.strip()
        if spec.type is FieldType.NUMBER and "Energy" in spec.name and "Price" not in spec.name:
            assert spec.unit == "Wh"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("PowerOutput", 11000),
        ("PowerOutput", 10.5),
        ("PowerOutput", None),
        ("ConnectedVehicle", True),
        ("OperationState", "charging"),
        ("Tariff", "T1"),
    ],
)
def test_values_of_the_right_type_pass(field: str, value: object) -> None:
    assert field_spec(field).check(value) == value  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("PowerOutput", "11000"),
        ("PowerOutput", True),  # a bool is not a number, although Python says so
        ("ConnectedVehicle", 1),
        ("OperationState", "Charging"),
        ("OperationState", 3),
        ("Tariff", 1),
    ],
)
def test_values_of_the_wrong_type_fail(field: str, value: object) -> None:
    with pytest.raises(FieldValueError, match=field):
        field_spec(field).check(value)  # type: ignore[arg-type]


def test_unknown_field_lists_known_ones() -> None:
    with pytest.raises(FieldValueError, match="PowerOutput"):
        field_spec("Voltage")


def test_every_number_has_finite_documented_bounds() -> None:
    # Aggregates of values within the bounds stay far from a double's range (1.8e308):
    # a window of 400 days times the largest bound is below 1e20.
    for spec in CATALOGUE.values():
        if spec.type is FieldType.NUMBER:
            assert spec.bounds is not None, spec.name
            lo, hi = spec.bounds
            assert -1e13 < lo < hi < 1e13, spec.name
            assert spec.in_bounds(lo)
            assert spec.in_bounds(hi)
            assert not spec.in_bounds(1e308)
            assert not spec.in_bounds(-1e308)
        else:
            assert spec.bounds is None, spec.name


# The fields an OCPP charge point reports beyond the seed (issue 17): other services
# publish them by these names, so a rename is a contract change.
OCPP_FIELDS = {
    "IdTag": (FieldType.STRING, None, None),
    "TransactionId": (FieldType.STRING, None, None),
    "StateOfCharge": (FieldType.NUMBER, "%", (0.0, 100.0)),
    "OutputCurrentL1": (FieldType.NUMBER, "A", (-3000.0, 3000.0)),
    "OutputCurrentL2": (FieldType.NUMBER, "A", (-3000.0, 3000.0)),
    "OutputCurrentL3": (FieldType.NUMBER, "A", (-3000.0, 3000.0)),
    "VoltageL1": (FieldType.NUMBER, "V", (0.0, 2000.0)),
    "VoltageL2": (FieldType.NUMBER, "V", (0.0, 2000.0)),
    "VoltageL3": (FieldType.NUMBER, "V", (0.0, 2000.0)),
    "ChargerVendor": (FieldType.STRING, None, None),
    "ChargerModel": (FieldType.STRING, None, None),
    "SerialNumber": (FieldType.STRING, None, None),
    "VendorErrorCode": (FieldType.STRING, None, None),
}


@pytest.mark.parametrize("name", sorted(OCPP_FIELDS))
def test_the_ocpp_fields_have_their_type_unit_and_bounds(name: str) -> None:
    spec = field_spec(name)
    assert (spec.type, spec.unit, spec.bounds) == OCPP_FIELDS[name]
