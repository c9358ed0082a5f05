"""Commands and results on ``chargers/{id}/set|result/{Command}``: the audit (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargelift_contract.commands import (
    DEFAULT_EXPIRY,
    Command,
    CommandMessage,
    CommandResult,
    Outcome,
    derived_command_id,
    encode_command,
    encode_result,
)
from chargelift_ingest.validate import (
    REASONS,
    ChargerResult,
    Cleared,
    DeadLetter,
    Item,
    validate,
)

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
ISSUED = datetime(2026, 12, 2, 9, 59, 58, tzinfo=UTC)
SET = "chargers/charger-a/set/CurrentLimit"
RESULT = "chargers/charger-a/result/CurrentLimit"


def check(topic: str, payload: bytes, max_bytes: int = 4096) -> Item | Cleared:
    return validate(topic, payload, now=NOW, max_bytes=max_bytes, max_future=timedelta(minutes=5))


def dead(topic: str, payload: bytes, max_bytes: int = 4096) -> DeadLetter:
    item = check(topic, payload, max_bytes)
    assert isinstance(item, DeadLetter), item
    assert item.reason in REASONS
    assert (item.topic, item.payload) == (topic, payload)
    assert item.detail
    return item


def test_a_command_is_recorded_with_every_field_of_its_envelope() -> None:
    payload = encode_command(
        Command.CURRENT_LIMIT,
        10,
        command_id="evcc-7f3a",
        issued_at=ISSUED,
        expires_at=ISSUED + timedelta(seconds=30),
        valid_for=300,
        issuer="evcc",
    )
    assert check(SET, payload) == CommandMessage(
        charger="charger-a",
        command=Command.CURRENT_LIMIT,
        value=10.0,
        command_id="evcc-7f3a",
        issued_at=ISSUED,
        expires_at=ISSUED + timedelta(seconds=30),
        valid_for=300.0,
        issuer="evcc",
    )


def test_a_command_without_id_or_times_gets_the_derived_id_and_its_arrival_time() -> None:
    payload = b'{"Value":null}'
    item = check("chargers/charger-a/set/Pause", payload)
    assert isinstance(item, CommandMessage)
    assert item.command is Command.PAUSE
    assert item.command_id == derived_command_id("chargers/charger-a/set/Pause", payload)
    assert item.issued_at == NOW  # the message's arrival stands in for IssuedAt
    assert item.expires_at == NOW + DEFAULT_EXPIRY
    assert item.issuer is None


@pytest.mark.parametrize("command", list(Command))
def test_every_command_of_the_contract_is_recorded(command: Command) -> None:
    value = 16 if command is Command.CURRENT_LIMIT else None
    item = check(f"chargers/charger-a/set/{command.value}", encode_command(command, value))
    assert isinstance(item, CommandMessage)
    assert item.command is command


@pytest.mark.parametrize("outcome", list(Outcome))
def test_a_result_is_recorded_for_its_charger_and_command(outcome: Outcome) -> None:
    result = CommandResult(
        "evcc-7f3a",
        outcome,
        "why",
        ISSUED + timedelta(seconds=1),
        value=10.0,
        lease_end=ISSUED + timedelta(minutes=5),
    )
    assert check(RESULT, encode_result(result)) == ChargerResult(
        "charger-a", Command.CURRENT_LIMIT, result
    )


def test_a_result_larger_than_the_reading_limit_but_within_the_contracts_is_recorded() -> None:
    # INGEST_MAX_PAYLOAD_BYTES bounds readings; the contract bounds commands and results.
    result = CommandResult("c-1", Outcome.FAILED, "x" * 500, ISSUED)
    payload = encode_result(result)
    assert len(payload) > 300
    assert isinstance(check(RESULT, payload, max_bytes=300), ChargerResult)


LIMIT = b'{"Value":10,'


def result_doc(**changes: object) -> bytes:
    """A valid result's payload with ``changes`` (None: the key left out)."""
    doc: dict[str, object] = {
        "CommandId": "c",
        "Outcome": "applied",
        "Reason": "",
        "At": "2026-12-02T10:00:00Z",
    }
    doc.update(changes)
    return orjson.dumps({k: v for k, v in doc.items() if v is not None})


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        # hostile sizes: the contract's bound (4 KiB), before any parsing
        (SET, b'{"Value":10,"Issuer":"' + b"x" * (1 << 20) + b'"}', "too_large"),
        (RESULT, b"x" * (1 << 20), "too_large"),
        # not JSON, not finite, wrong types
        (SET, b"{not json", "bad_command"),
        (SET, b'{"Value":NaN}', "bad_command"),
        (SET, b'{"Value":Infinity}', "bad_command"),
        (SET, b'{"Value":1e999}', "bad_command"),
        (SET, b"[10]", "bad_command"),
        (SET, b"10", "bad_command"),
        (SET, b"{}", "bad_command"),  # no Value
        (SET, b'{"Value":"10"}', "bad_command"),
        (SET, b'{"Value":true}', "bad_command"),
        (SET, b'{"Value":-1}', "bad_command"),
        (SET, b'{"Value":0}', "bad_command"),
        (SET, b'{"Value":1e6}', "bad_command"),
        ("chargers/charger-a/set/Pause", b'{"Value":5}', "bad_command"),
        ("chargers/charger-a/set/Pause", b'{"Value":null,"ValidFor":60}', "bad_command"),
        (SET, LIMIT + b'"ValidFor":"60"}', "bad_command"),
        (SET, LIMIT + b'"ValidFor":1}', "bad_command"),
        (SET, LIMIT + b'"IssuedAt":"yesterday"}', "bad_command"),
        (SET, LIMIT + b'"IssuedAt":1700000000}', "bad_command"),
        (
            SET,
            LIMIT + b'"IssuedAt":"2026-12-02T10:00:00Z","ExpiresAt":"2026-12-02T09:00:00Z"}',
            "bad_command",
        ),
        (SET, LIMIT + b'"Issuer":42}', "bad_command"),
        (SET, LIMIT + b'"Issuer":"a\\u0000b"}', "bad_command"),
        (SET, b"{\"Value\":10,\"Issuer\":\"\\ud800\"}", "bad_command"),
        # bad ids
        (SET, LIMIT + b'"CommandId":""}', "bad_command"),
        (SET, LIMIT + b'"CommandId":"a b"}', "bad_command"),
        (SET, LIMIT + b'"CommandId":"' + b"a" * 81 + b'"}', "bad_command"),
        (SET, LIMIT + b'"CommandId":7}', "bad_command"),
        (SET, LIMIT + b'"CommandId":"x\';DROP TABLE commands;--"}', "bad_command"),
        # unknown commands, bad chargers
        ("chargers/charger-a/set/Reboot", b'{"Value":null}', "bad_command"),
        ("chargers/charger-a/set/pause", b'{"Value":null}', "bad_command"),
        ("chargers/Charger A/set/Pause", b'{"Value":null}', "bad_command"),
        ("chargers/charger-a/result/Reboot", b"{}", "bad_result"),
        # results
        (RESULT, b"{not json", "bad_result"),
        (RESULT, b"[]", "bad_result"),
        (RESULT, result_doc(Outcome="done"), "bad_result"),
        (RESULT, result_doc(Reason=1), "bad_result"),
        (RESULT, result_doc(Reason="x" * 501), "bad_result"),
        (RESULT, result_doc(Reason="a\x00b"), "bad_result"),  # PostgreSQL text cannot
        (RESULT, result_doc(At=None), "bad_result"),
        (RESULT, result_doc(At="2026-13-02T10:00:00Z"), "bad_result"),
        (RESULT, result_doc(CommandId=None), "bad_result"),
        (RESULT, result_doc(CommandId="a b"), "bad_result"),
        (RESULT, result_doc(Value="10"), "bad_result"),
        (RESULT, result_doc(Value=True), "bad_result"),
        (RESULT, result_doc().replace(b"}", b',"Value":NaN}'), "bad_result"),
        (RESULT, result_doc(LeaseEnd="soon"), "bad_result"),
    ],
)  # fmt: skip
def test_a_malformed_command_or_result_is_a_dead_letter_with_its_reason(
    topic: str, payload: bytes, reason: str
) -> None:
    assert dead(topic, payload).reason == reason


def test_a_zero_length_message_on_a_command_topic_is_a_deleted_retained_value() -> None:
    assert check(SET, b"") == Cleared(SET)
    assert check(RESULT, b"") == Cleared(RESULT)
    assert dead("chargers/charger-a/set/Reboot", b"").reason == "bad_command"


def test_a_command_with_a_five_level_topic_is_a_bad_topic() -> None:
    assert dead("chargers/charger-a/set/Pause/x", b'{"Value":null}').reason == "bad_topic"


@given(
    kind=st.sampled_from(["set", "result"]),
    leaf=st.sampled_from([c.value for c in Command] + ["x", ""]),
    doc=st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["Value", "CommandId", "IssuedAt", "ExpiresAt", "ValidFor", "Issuer", "Outcome",
                 "Reason", "At", "LeaseEnd"]
            ),
            children,
        ),
        max_leaves=8,
    ),
)  # fmt: skip
@settings(max_examples=300)
def test_arbitrary_json_on_a_command_topic_never_raises(kind: str, leaf: str, doc: object) -> None:
    try:
        payload = orjson.dumps(doc)
    except orjson.JSONEncodeError:
        return
    item = check(f"chargers/charger-a/{kind}/{leaf}", payload)
    if isinstance(item, DeadLetter):
        assert item.reason == ("bad_command" if kind == "set" else "bad_result")
    else:
        assert isinstance(item, CommandMessage | ChargerResult)
