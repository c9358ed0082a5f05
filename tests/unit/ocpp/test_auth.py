"""The handshake decisions that need no network (the rest: tests/integration/ocpp)."""

from __future__ import annotations

import base64

import pytest

from chargelift_ocpp.auth import (
    basic_credentials,
    charge_point_id,
    offers_subprotocol,
    printable,
)


class H:
    def __init__(self, **values: list[str]) -> None:
        self.values = {k.replace("_", "-").lower(): v for k, v in values.items()}

    def get_all(self, key: str) -> list[str]:
        return self.values.get(key.lower(), [])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ocpp/cp-1", "cp-1"),
        ("/ocpp/cp-1?x=1", "cp-1"),
        ("/ocpp/", None),
        ("/ocpp", None),
        ("/other/cp-1", None),
        ("/ocpp/a/b", None),
        ("/ocppx/cp-1", None),
    ],
)
def test_the_id_is_the_last_path_segment(path: str, expected: str | None) -> None:
    assert charge_point_id(path, "/ocpp") == expected


def test_the_id_under_the_root_path() -> None:
    assert charge_point_id("/cp-1", "") == "cp-1"


def test_basic_credentials() -> None:
    token = base64.b64encode(b"cp-1:pass:word").decode()
    assert basic_credentials(H(Authorization=[f"Basic {token}"])) == ("cp-1", b"pass:word")
    assert basic_credentials(H()) is None
    assert basic_credentials(H(Authorization=["Bearer x"])) is None
    assert basic_credentials(H(Authorization=["Basic !!!"])) is None
    assert (
        basic_credentials(H(Authorization=["Basic " + base64.b64encode(b"nocolon").decode()]))
        is None
    )
    assert basic_credentials(H(Authorization=["Basic " + "A" * 100_000])) is None
    assert basic_credentials(H(Authorization=[f"Basic {token}", f"Basic {token}"])) is None


def test_the_subprotocol_must_be_offered() -> None:
    assert offers_subprotocol(H(Sec_WebSocket_Protocol=["ocpp2.0.1, ocpp1.6"]))
    assert not offers_subprotocol(H(Sec_WebSocket_Protocol=["ocpp2.0.1"]))
    assert not offers_subprotocol(H())


def test_printable_cuts_and_masks() -> None:
    assert printable("cp-1") == "cp-1"
    assert printable("a\nb%0a" + "x" * 200) == "a?b?0a" + "x" * 58
