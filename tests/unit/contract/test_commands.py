"""The command contract: topics, payloads and results, hostile input included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from chargelift_contract.commands import (
    DEFAULT_EXPIRY,
    MAX_COMMAND_BYTES,
    Command,
    CommandError,
    CommandMessage,
    CommandResult,
    CommandTopic,
    Outcome,
    ResultTopic,
    command_filter,
    command_topic,
    decode_result,
    encode_command,
    encode_result,
    is_command_or_result_topic,
    parse_command,
    parse_command_topic,
    result_topic,
)
from chargelift_contract.errors import ContractError
from chargelift_contract.topics import TopicError

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
LIMIT = "chargers/amtron-1/set/CurrentLimit"


def parse(payload: object, topic: str = LIMIT) -> CommandMessage:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return parse_command(topic, raw, received_at=NOW)


def test_topics_round_trip() -> None:
    assert command_topic("amtron-1", Command.PAUSE) == "chargers/amtron-1/set/Pause"
    assert result_topic("amtron-1", Command.STOP) == "chargers/amtron-1/result/Stop"
    assert command_filter("amtron-1") == "chargers/amtron-1/set/+"
    assert parse_command_topic(LIMIT) == CommandTopic("amtron-1", Command.CURRENT_LIMIT)
    assert parse_command_topic("chargers/a/result/Resume") == ResultTopic("a", Command.RESUME)
    assert is_command_or_result_topic(LIMIT)
    assert not is_command_or_result_topic("chargers/amtron-1/PowerOutput")


@pytest.mark.parametrize(
    "topic",
    [
        "chargers/amtron-1/set/Reboot",  # not a command
        "chargers/amtron-1/set/currentlimit",
        "chargers/AMTRON/set/Pause",  # invalid charger id
        "chargers/amtron-1/get/Pause",
        "chargers/amtron-1/set/Pause/x",
        "chargers/+/set/Pause",
        "x" * 70_000,
    ],
)
def test_bad_topics_are_refused(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_command_topic(topic)


def test_a_limit_with_every_key() -> None:
    msg = parse(
        {
            "Value": 10,
            "CommandId": "evcc-1",
            "IssuedAt": "2026-12-02T10:00:00Z",
            "ExpiresAt": "2026-12-02T10:00:10Z",
            "ValidFor": 300,
            "Issuer": "evcc",
        }
    )
    assert (msg.value, msg.command_id, msg.valid_for) == (10.0, "evcc-1", 300.0)
    assert msg.expires_at == NOW + timedelta(seconds=10)
    assert msg.issuer == "evcc"
    assert msg.expired(NOW + timedelta(seconds=10))
    assert not msg.expired(NOW + timedelta(seconds=9))


def test_defaults_expiry_and_a_derived_id_that_is_the_same_for_the_same_bytes() -> None:
    a = parse({"Value": None}, "chargers/amtron-1/set/Pause")
    b = parse({"Value": None}, "chargers/amtron-1/set/Pause")
    c = parse({"Value": None}, "chargers/amtron-2/set/Pause")
    assert a.command_id == b.command_id
    assert a.command_id.startswith("sha256:")
    assert c.command_id != a.command_id
    assert (a.issued_at, a.expires_at) == (NOW, NOW + DEFAULT_EXPIRY)


@pytest.mark.parametrize(
    ("topic", "payload", "why"),
    [
        (LIMIT, {"Value": 0}, "above 0"),
        (LIMIT, {"Value": -6}, "above 0"),
        (LIMIT, {"Value": 1e400}, ""),  # orjson refuses to encode inf: see below
        (LIMIT, {"Value": "10"}, "number"),
        (LIMIT, {"Value": True}, "number"),
        (LIMIT, {"Value": 3001}, "3000"),
        (LIMIT, {}, "no Value"),
        (LIMIT, [], "not a JSON object"),
        (LIMIT, {"Value": 10, "CommandId": "a b"}, "CommandId"),
        (LIMIT, {"Value": 10, "CommandId": "x" * 81}, "CommandId"),
        (LIMIT, {"Value": 10, "CommandId": 7}, "CommandId"),
        (LIMIT, {"Value": 10, "ExpiresAt": "soon"}, "ExpiresAt"),
        (
            LIMIT,
            {"Value": 10, "IssuedAt": "2026-12-02T10:00:00Z", "ExpiresAt": "2026-12-02T09:00:00Z"},
            "not after",
        ),
        (
            LIMIT,
            {"Value": 10, "IssuedAt": "2026-12-02T10:00:00Z", "ExpiresAt": "2026-12-04T10:00:00Z"},
            "more than",
        ),
        (LIMIT, {"Value": 10, "ValidFor": 1}, "ValidFor"),
        (LIMIT, {"Value": 10, "ValidFor": 86401}, "ValidFor"),
        (LIMIT, {"Value": 10, "ValidFor": "60"}, "ValidFor"),
        (LIMIT, {"Value": 10, "Issuer": "x\x00y"}, "Issuer"),
        (LIMIT, {"Value": 10, "Issuer": "x" * 129}, "Issuer"),
        ("chargers/amtron-1/set/Pause", {"Value": 1}, "null or true"),
        ("chargers/amtron-1/set/Stop", {"Value": None, "ValidFor": 60}, "no ValidFor"),
    ],
)
def test_bad_commands_say_why(topic: str, payload: object, why: str) -> None:
    if payload == {"Value": 1e400}:
        raw = b'{"Value": 1e400}'
        with pytest.raises(ContractError):
            parse_command(topic, raw, received_at=NOW)
        return
    with pytest.raises(CommandError, match=why):
        parse(payload, topic)


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"\xff\xfe", b'{"Value": NaN}', b"[" * 2000, b" " * (MAX_COMMAND_BYTES + 1)]
)
def test_garbage_is_a_contract_error(raw: bytes) -> None:
    with pytest.raises(ContractError):
        parse_command(LIMIT, raw, received_at=NOW)


@pytest.mark.parametrize("command", ["Start", "Operative", "Inoperative"])
def test_start_and_availability_take_null_or_true_and_nothing_else(command: str) -> None:
    topic = f"chargers/amtron-1/set/{command}"
    assert parse_command_topic(topic) == CommandTopic("amtron-1", Command(command))
    for value in (None, True):
        msg = parse({"Value": value}, topic)
        assert (msg.command, msg.value, msg.valid_for) == (Command(command), None, None)
    bad: object
    for bad in (False, 1, 16.0, "true", [], {}):
        with pytest.raises(CommandError, match="null or true"):
            parse({"Value": bad}, topic)
    with pytest.raises(CommandError, match="no ValidFor"):
        parse({"Value": None, "ValidFor": 60}, topic)
    assert orjson.loads(encode_command(Command(command))) == {"Value": None}


def test_a_result_topic_is_not_a_command() -> None:
    with pytest.raises(TopicError):
        parse_command("chargers/amtron-1/result/Pause", b'{"Value": null}', received_at=NOW)


def test_encode_command_checks_like_the_receiver() -> None:
    raw = encode_command(
        Command.CURRENT_LIMIT, 16, command_id="x1", issued_at=NOW, valid_for=60, issuer="api"
    )
    msg = parse_command(LIMIT, raw, received_at=NOW + timedelta(hours=1))
    assert (msg.value, msg.command_id, msg.issued_at, msg.valid_for) == (16.0, "x1", NOW, 60.0)
    with pytest.raises(CommandError):
        encode_command(Command.CURRENT_LIMIT, -1)
    with pytest.raises(CommandError):
        encode_command(Command.PAUSE, None, valid_for=60)
    # expires_at alone is fine: the check does not invent an IssuedAt after it
    encode_command(Command.STOP, expires_at=NOW)


def test_results_round_trip_and_refuse_garbage() -> None:
    result = CommandResult("x1", Outcome.APPLIED, "read back 16 A", NOW, 16.0, NOW)
    assert decode_result(encode_result(result)) == result
    for bad in (
        b"{}",
        b'{"CommandId":"x1","Outcome":"done","Reason":"","At":"2026-12-02T10:00:00Z"}',
        b'{"CommandId":"x1","Outcome":"applied","Reason":1,"At":"2026-12-02T10:00:00Z"}',
        b'{"CommandId":"x1","Outcome":"applied","Reason":"","At":"never"}',
        b'{"CommandId":"x 1","Outcome":"applied","Reason":"","At":"2026-12-02T10:00:00Z"}',
        b'{"CommandId":"x1","Outcome":"applied","Reason":"","At":"2026-12-02T10:00:00Z","Value":"1"}',
        b"x" * (MAX_COMMAND_BYTES + 1),
    ):
        with pytest.raises(CommandError):
            decode_result(bad)


def test_a_long_reason_is_cut_not_refused() -> None:
    result = CommandResult("x1", Outcome.FAILED, "r" * 10_000, NOW)
    assert len(decode_result(encode_result(result)).reason) == 500
