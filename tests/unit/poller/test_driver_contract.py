"""The contract every registered driver keeps, run over the whole registry.

A new driver needs recorded responses in ``fixtures/<name>/`` (one file per endpoint,
named after the last path segment); then these tests cover it without any edit here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from chargelift_contract import CATALOGUE, OperationState
from chargelift_contract.commands import Command
from chargelift_poller.drivers import (
    REGISTRY,
    Controller,
    Driver,
    DriverRegistry,
    DriverRegistryError,
)
from chargelift_poller.drivers.base import ACTIONS
from chargelift_poller.errors import AuthError, ChargerError, PermanentError, TransientError
from chargelift_poller.models import ChargerReading, DriverSpec
from tests.unit.poller.conftest import FIXTURES, PIN

DRIVERS = REGISTRY.names()
Handler = Callable[[httpx.Request], httpx.Response]


def recorded(name: str) -> Handler:
    directory = FIXTURES / name

    def handle(request: httpx.Request) -> httpx.Response:
        path = directory / f"{request.url.path.rsplit('/', 1)[-1]}.json"
        if not path.is_file():
            return httpx.Response(404)
        return httpx.Response(200, content=path.read_bytes())

    return handle


def build(name: str, handler: Handler, seen: list[httpx.Request]) -> Driver:
    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    spec = DriverSpec(
        charger_id="contract-1",
        url="http://192.0.2.20:25000",
        pin=SecretStr(PIN),
        pin_ref="env CONTRACT_PIN",
        clock=lambda: datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC),
    )
    return REGISTRY.create(name, spec, httpx.AsyncClient(transport=httpx.MockTransport(record)))


def test_at_least_one_driver_is_registered() -> None:
    assert "mhcp" in DRIVERS


@pytest.mark.parametrize("name", DRIVERS)
def test_driver_has_recorded_responses(name: str) -> None:
    assert (FIXTURES / name).is_dir(), f"add recorded responses in {FIXTURES / name}"
    for path in (FIXTURES / name).glob("*.json"):
        json.loads(path.read_text())


@pytest.mark.parametrize("name", DRIVERS)
@pytest.mark.parametrize("full", [True, False])
async def test_read_returns_a_valid_reading_using_the_injected_client(
    name: str, full: bool
) -> None:
    seen: list[httpx.Request] = []
    reading = await build(name, recorded(name), seen).read(full=full)
    assert isinstance(reading, ChargerReading)
    assert reading.sampling_time == datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)
    assert seen, "the driver must use the injected HTTP client"
    assert set(reading.values) <= set(CATALOGUE)
    for field, value in reading.values.items():
        CATALOGUE[field].check(value)
    assert reading.values["OperationState"] in {s.value for s in OperationState}


@pytest.mark.parametrize("name", DRIVERS)
@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_are_an_auth_error(name: str, status: int) -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(AuthError) as info:
        await build(name, lambda _r: httpx.Response(status), seen).read(full=True)
    assert "contract-1" in str(info.value)
    assert PIN not in str(info.value)
    assert isinstance(info.value, PermanentError)


FAILURES: dict[str, Handler] = {
    "http 500": lambda _r: httpx.Response(500),
    "garbage": lambda _r: httpx.Response(200, content=b"\x00not json"),
    "truncated": lambda _r: httpx.Response(200, content=b'{"ChgState": "Idl'),
}


def _raise(exc: Exception) -> Handler:
    def handler(_r: httpx.Request) -> httpx.Response:
        raise exc

    return handler


FAILURES["refused"] = _raise(httpx.ConnectError("refused"))
FAILURES["timeout"] = _raise(httpx.ReadTimeout("timed out"))


@pytest.mark.parametrize("name", DRIVERS)
@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.usefixtures("quiet_libraries")
async def test_device_failures_are_transient_charger_errors(
    name: str, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[httpx.Request] = []
    with pytest.raises(TransientError) as info:
        await build(name, FAILURES[failure], seen).read(full=True)
    assert isinstance(info.value, ChargerError)
    assert "contract-1" in str(info.value)
    assert PIN not in str(info.value)
    assert PIN not in caplog.text  # with the poller's logging policy (httpx capped)


async def test_without_the_logging_policy_httpx_would_log_the_pin(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Why the policy exists: httpx logs every request URL, query string included."""
    caplog.set_level(logging.DEBUG)
    await build("mhcp", recorded("mhcp"), []).read(full=False)
    assert PIN in caplog.text


@pytest.mark.parametrize("name", DRIVERS)
async def test_a_controller_declares_its_commands_and_confirms_none_it_lacks(
    name: str,
) -> None:
    driver = build(name, recorded(name), [])
    if not isinstance(driver, Controller):
        return  # read-only: every command is rejected ("cannot control this charger")
    declared = driver.commands
    assert isinstance(declared, frozenset)
    assert declared <= set(Command)
    # A class constant, the same for every charger.
    assert declared == getattr(type(driver), "commands", None)
    reading = await driver.read(full=True)
    for command in set(Command) - declared:
        # Never applied (the poller refuses it first); asked anyway, it is never "shown".
        assert driver.shows(reading, command, None) is not None


def test_every_command_has_a_refusal_phrase() -> None:
    assert set(ACTIONS) == set(Command)


def test_mhcp_declares_what_it_can_write() -> None:
    assert REGISTRY.factory("mhcp").commands == {  # type: ignore[attr-defined]
        Command.CURRENT_LIMIT,
        Command.PAUSE,
        Command.RESUME,
        Command.STOP,
    }


def test_registry_refuses_duplicates_and_lists_known_names() -> None:
    registry = DriverRegistry()
    registry.register("a", REGISTRY.factory("mhcp"))
    with pytest.raises(DriverRegistryError, match="already registered"):
        registry.register("a", REGISTRY.factory("mhcp"))
    with pytest.raises(DriverRegistryError, match="unknown driver 'modbus'; known drivers: a"):
        registry.factory("modbus")
