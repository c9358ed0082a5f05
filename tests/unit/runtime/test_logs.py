"""Secrets never reach the log output."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from chargelift_runtime.logs import RedactSecrets, configure_logging
from tests.unit.poller.conftest import PIN


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "gmqtt", "hpack")}
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    for n, lvl in levels.items():
        logging.getLogger(n).setLevel(lvl)


def test_redacts_query_secrets_and_configured_tokens() -> None:
    r = RedactSecrets([PIN])
    assert (
        r.redact(f"GET /MHCP/1.0/ChargeData?DevKey={PIN}&x=1")
        == "GET /MHCP/1.0/ChargeData?DevKey=***&x=1"
    )
    assert r.redact("GET /MHCP/1.1/Info?Pin=999") == "GET /MHCP/1.1/Info?Pin=***"
    assert r.redact(f"pin is {PIN}.") == "pin is ***."


def test_a_short_numeric_pin_is_redacted_as_a_token_only() -> None:
    r = RedactSecrets(["1234"])
    assert r.redact("pin 1234 here") == "pin *** here"
    assert r.redact("port 41234 and 12345") == "port 41234 and 12345"


@pytest.mark.usefixtures("restore_logging")
def test_configured_logging_keeps_the_pin_out_even_at_debug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    redactor = configure_logging("DEBUG")
    redactor.add([PIN])
    url = f"http://127.0.0.1:25000/MHCP/1.0/ChargeData?DevKey={PIN}"
    logging.getLogger("httpx").info("HTTP Request: GET %s", url)  # capped: not emitted
    logging.getLogger("chargelift_poller.x").debug("fetched %s", url)
    try:
        raise RuntimeError(f"boom {PIN}")
    except RuntimeError:
        logging.getLogger("chargelift_poller.x").exception("failed")
    text = stream.getvalue()
    assert "HTTP Request" not in text
    assert "fetched http://127.0.0.1:25000/MHCP/1.0/ChargeData?DevKey=***" in text
    assert "RuntimeError: boom ***" in text
    assert PIN not in text
