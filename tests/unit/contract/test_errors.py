"""One base exception: a service catches ContractError at its boundary and gets them all."""

from __future__ import annotations

import pytest

from chargelift_contract import ContractError, decode, field_spec, parse_topic


@pytest.mark.parametrize(
    "bad",
    [
        lambda: parse_topic("chargers/UPPER/PowerOutput"),
        lambda: decode(b'{"SamplingTime": "yesterday", "Value": 1}'),
        lambda: field_spec("PowerOutput").check("not a number"),
    ],
    ids=["topic", "envelope", "field value"],
)
def test_every_contract_error_is_a_contract_error(bad: object) -> None:
    with pytest.raises(ContractError):
        bad()  # type: ignore[operator]
