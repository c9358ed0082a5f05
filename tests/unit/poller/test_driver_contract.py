"""The contract every registered driver keeps, run over the whole registry.

A new driver needs recorded responses in ``fixtures/<name>/``: for an HTTP driver one
file per endpoint (named after the last path segment), served by
``httpx.MockTransport``; for a Modbus TCP driver a register dump ``registers.json``,
served on 127.0.0.1 by a Modbus server with the simulator's fault switches
(tests/support/modbus.py). Then these tests cover it without any edit here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from chargelift_contract import CATALOGUE, OperationState
from chargelift_contract.commands import Command
from chargelift_poller.drivers import (
    REGISTRY,
    Closeable,
    Controller,
    Driver,
    DriverRegistry,
    DriverRegistryError,
)
from chargelift_poller.drivers.base import ACTIONS
from chargelift_poller.errors import (
    AuthError,
    ChargerConnectionError,
    ChargerError,
    ConfigError,
    PermanentError,
    TransientError,
)
from chargelift_poller.models import ChargerReading, DriverSpec
from chargelift_simulator.faults import Fault, FaultKind
from tests.support.modbus import load_dump, recorded_device
from tests.unit.poller.conftest import FIXTURES, PIN

DRIVERS = REGISTRY.names()
#: Drivers recorded as a Modbus register dump; the others are HTTP drivers.
MODBUS_DRIVERS = tuple(n for n in DRIVERS if (FIXTURES / n / "registers.json").is_file())
HTTP_DRIVERS = tuple(n for n in DRIVERS if n not in MODBUS_DRIVERS)
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
    assert {"hcc3", "bender"} <= set(MODBUS_DRIVERS)


@pytest.mark.parametrize("name", DRIVERS)
def test_driver_has_recorded_responses(name: str) -> None:
    assert (FIXTURES / name).is_dir(), f"add recorded responses in {FIXTURES / name}"
    for path in (FIXTURES / name).glob("*.json"):
        json.loads(path.read_text())


@pytest.mark.parametrize("name", HTTP_DRIVERS)
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


@pytest.mark.parametrize("name", HTTP_DRIVERS)
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


@pytest.mark.parametrize("name", HTTP_DRIVERS)
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
    async def check(driver: Driver) -> None:
        if not isinstance(driver, Controller):
            return  # read-only: every command is rejected ("cannot control this charger")
        declared = driver.commands
        assert isinstance(declared, frozenset)
        assert declared <= set(Command)
        # A class constant, the same for every charger.
        assert declared == getattr(type(driver), "commands", None)
        reading = await driver.read(full=True)
        for command in set(Command) - declared:
            # Never applied (the poller refuses it first); asked anyway, never "shown".
            assert driver.shows(reading, command, None) is not None

    if name not in MODBUS_DRIVERS:
        await check(build(name, recorded(name), []))
        return
    async with recorded_device(dump(name)) as (server, _map):
        driver = REGISTRY.create(name, modbus_spec(server.port), httpx.AsyncClient())
        assert isinstance(driver, Closeable)
        try:
            await check(driver)
        finally:
            await driver.aclose()


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


# -- Modbus TCP drivers: a recorded register dump served on 127.0.0.1 ------------------


def modbus_spec(port: int, timeout: float = 2.0) -> DriverSpec:
    return DriverSpec(
        charger_id="contract-1",
        url=f"tcp://127.0.0.1:{port}",
        clock=lambda: datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC),
        options={"request_interval": 0.0},
        timeout=timeout,
    )


def dump(name: str) -> dict[str, Any]:
    return load_dump(FIXTURES / name / "registers.json")


@pytest.mark.parametrize("name", MODBUS_DRIVERS)
@pytest.mark.parametrize("full", [True, False])
async def test_modbus_read_returns_a_valid_reading_over_one_kept_connection(
    name: str, full: bool
) -> None:
    async with recorded_device(dump(name)) as (server, _map):
        driver = REGISTRY.create(name, modbus_spec(server.port), httpx.AsyncClient())
        assert isinstance(driver, Closeable)
        try:
            first = await driver.read(full=full)
            second = await driver.read(full=full)
        finally:
            await driver.aclose()
    for reading in (first, second):
        assert reading.sampling_time == datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)
        assert set(reading.values) <= set(CATALOGUE)
        for field, value in reading.values.items():
            CATALOGUE[field].check(value)
        assert reading.values["OperationState"] in {s.value for s in OperationState}
    assert server.connections == 1, "one TCP connection per device, kept open"
    assert server.requests >= 2


MODBUS_FAILURES: dict[str, Fault] = {
    "exception code 4": Fault(FaultKind.EXCEPTION),
    "exception code 6": Fault(FaultKind.EXCEPTION, raw=(("code", "6"),)),
    "garbage": Fault(FaultKind.MALFORMED),
    "truncated": Fault(FaultKind.TRUNCATED),
    "reset": Fault(FaultKind.RESET),
    "timeout": Fault(FaultKind.TIMEOUT),
}


@pytest.mark.parametrize("name", MODBUS_DRIVERS)
@pytest.mark.parametrize("failure", sorted(MODBUS_FAILURES))
@pytest.mark.usefixtures("quiet_libraries")
async def test_modbus_failures_are_transient_and_the_next_read_recovers(
    name: str, failure: str
) -> None:
    fault = MODBUS_FAILURES[failure]
    async with recorded_device(dump(name), Fault(fault.kind, 0.0, 1, fault.raw)) as (server, _m):
        driver = REGISTRY.create(name, modbus_spec(server.port, timeout=0.5), httpx.AsyncClient())
        assert isinstance(driver, Closeable)
        try:
            with pytest.raises(TransientError) as info:
                await driver.read(full=True)
            assert "contract-1" in str(info.value)
            reading = await driver.read(full=True)  # the fault hit one request only
        finally:
            await driver.aclose()
    assert "OperationState" in reading.values


@pytest.mark.parametrize("name", MODBUS_DRIVERS)
async def test_modbus_refused_connection_is_a_connection_error(name: str) -> None:
    async with recorded_device(dump(name)) as (server, _map):
        port = server.port
    driver = REGISTRY.create(name, modbus_spec(port), httpx.AsyncClient())
    with pytest.raises(ChargerConnectionError, match="contract-1"):
        await driver.read(full=True)


@pytest.mark.parametrize("name", MODBUS_DRIVERS)
async def test_modbus_missing_register_is_a_config_error(name: str) -> None:
    """Exception 2 (illegal data address): not this device's map, not worth a fast retry."""
    doc = dump(name)
    doc["input"], doc["holding"] = {}, {}
    async with recorded_device(doc) as (server, _map):
        driver = REGISTRY.create(name, modbus_spec(server.port), httpx.AsyncClient())
        with pytest.raises(ConfigError, match="exception 2"):
            await driver.read(full=True)
        assert isinstance(driver, Closeable)
        await driver.aclose()


@pytest.mark.parametrize("name", MODBUS_DRIVERS)
@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("http://127.0.0.1:502", {}),
        ("tcp://", {}),
        ("tcp://127.0.0.1:502/path", {}),
        ("tcp://127.0.0.1:99999", {}),
        ("tcp://127.0.0.1:502", {"unit_id": 256}),
        ("tcp://127.0.0.1:502", {"unit_id": True}),
        ("tcp://127.0.0.1:502", {"request_interval": -1.0}),
        ("tcp://127.0.0.1:502", {"request_interval": float("nan")}),
        ("tcp://127.0.0.1:502", {"no_such_option": 1}),
    ],
)
def test_modbus_bad_configuration_is_refused_at_construction(
    name: str, url: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError, match="contract-1"):
        REGISTRY.create(
            name, DriverSpec(charger_id="contract-1", url=url, options=options), httpx.AsyncClient()
        )
