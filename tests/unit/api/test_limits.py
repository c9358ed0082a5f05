"""The row budget and the SQL guard against values outside a field's bounds (issue 14)."""

from __future__ import annotations

import pytest

from chargelift_api.repository import (
    RowBudget,
    RowLimitExceeded,
    column_of,
    plausible,
    plausible_any,
)
from chargelift_contract import CATALOGUE, FieldType


def test_a_budget_counts_the_rows_of_every_query_of_a_request() -> None:
    budget = RowBudget(10)
    budget.charge(4, "OperationState changes")
    assert budget.left == 6
    budget.charge(6, "EnergyPrice changes")
    assert budget.left == 0
    with pytest.raises(RowLimitExceeded) as caught:
        budget.charge(1, "Tariff changes")
    assert (caught.value.limit, caught.value.what) == (10, "Tariff changes")
    assert budget.left == 0


def test_every_number_is_read_through_its_bounds() -> None:
    for spec in CATALOGUE.values():
        if spec.type is FieldType.NUMBER:
            assert spec.bounds is not None
            lo, hi = spec.bounds
            assert column_of(spec.name) == plausible(spec.name)
            assert f"BETWEEN {lo!r} AND {hi!r}" in column_of(spec.name)
            assert f"WHEN '{spec.name}' THEN {plausible(spec.name)}" in plausible_any()
        else:
            assert "BETWEEN" not in column_of(spec.name)
