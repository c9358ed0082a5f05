"""Start-up refuses clearly when something is missing (no servers needed)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from chargelift_poller import main as poller_main
from chargelift_poller.service import first_poll_delay
from tests.unit.poller.conftest import PIN

REQUIRED = ("POLLER_CONFIG", "POLLER_OUTBOX", "MQTT_HOST", "MQTT_CA_FILE", "MQTT_CERTS_DIR")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: str) -> None:
    (tmp_path / "c.toml").write_text(config)
    (tmp_path / "clients").mkdir()
    (tmp_path / "ca.crt").write_text("x")
    values = {
        "POLLER_CONFIG": str(tmp_path / "c.toml"),
        "POLLER_OUTBOX": str(tmp_path / "o.sqlite"),
        "MQTT_HOST": "127.0.0.1",
        "MQTT_CA_FILE": str(tmp_path / "ca.crt"),
        "MQTT_CERTS_DIR": str(tmp_path),
        "AMTRON_PIN": PIN,
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)


def test_missing_environment_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in REQUIRED:
        monkeypatch.delenv(name, raising=False)
    assert poller_main.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chargelift-poller: invalid environment:\n")
    for name in REQUIRED:
        assert f"  {name}: Field required" in err


CHARGER = """
[[chargers]]
id = "amtron-1"
driver = "{driver}"
url = "http://127.0.0.1:25000"
pin_env = "AMTRON_PIN"
"""


@pytest.mark.parametrize(
    ("driver", "message"),
    [
        ("modbus", "charger amtron-1: unknown driver 'modbus'; known drivers: bender, hcc3, mhcp"),
        ("mhcp", "charger amtron-1: no certificate file"),
    ],
)
def test_bad_chargers_are_refused_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    driver: str, message: str,
) -> None:  # fmt: skip
    env(monkeypatch, tmp_path, CHARGER.format(driver=driver))
    assert poller_main.main([]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert PIN not in err


def test_an_edge_without_its_certificate_is_refused_with_the_command_to_issue_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edge = '[mqtt]\nidentity = "edge"\nedge_id = "site-1"\n'
    env(monkeypatch, tmp_path, edge + CHARGER.format(driver="mhcp"))
    assert poller_main.main([]) == 2
    err = capsys.readouterr().err
    assert "edge site-1: no certificate file" in err
    assert "chargelift-certs client site-1 --role edge --charger <id>" in err
    assert PIN not in err


def test_an_edge_certificate_that_does_not_list_a_charger_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Mosquitto drops the whole edge connection after each publish its ACL denies.
    from chargelift_certs import pki

    edge = '[mqtt]\nidentity = "edge"\nedge_id = "site-1"\n'
    two = CHARGER.format(driver="mhcp") + CHARGER.format(driver="mhcp").replace(
        "amtron-1", "amtron-2"
    )
    env(monkeypatch, tmp_path, edge + two)
    certs = tmp_path / "pki"
    monkeypatch.setenv("MQTT_CERTS_DIR", str(certs))
    pki.create_ca(certs)
    pki.issue_client(certs, "site-1", role="edge", chargers=["amtron-1"])
    assert poller_main.main([]) == 2
    err = capsys.readouterr().err
    assert "edge site-1: its certificate" in err
    assert "does not list charger(s) amtron-2;" in err
    assert "--role edge --charger <id> ... --force" in err


def test_the_poller_reads_the_same_charger_urn_the_ca_tool_writes(tmp_path: Path) -> None:
    from chargelift_certs import pki
    from chargelift_edge.announce import (
        EdgeCertificateError,
        certificate_chargers,
        listed_chargers,
    )

    pki.create_ca(tmp_path)
    cert = pki.issue_client(tmp_path, "site-1", role="edge", chargers=["a-1", "b_2"])
    assert certificate_chargers(cert) == {"a-1", "b_2"}
    assert listed_chargers(cert) == {"a-1", "b_2"}  # the way the poller reads it
    assert certificate_chargers(pki.issue_client(tmp_path, "amtron-1")) == frozenset()
    (tmp_path / "junk.crt").write_text("not a certificate")
    with pytest.raises(EdgeCertificateError, match="cannot read the edge certificate"):
        listed_chargers(tmp_path / "junk.crt")


def test_the_poller_does_not_load_cryptography() -> None:
    # 7.6 MB of RSS for good: the edge certificate is read in a child process.
    import subprocess
    import sys

    code = "import sys, chargelift_poller.main; print('cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert out.stdout.strip() == b"False"


def test_first_polls_are_spread_by_default_at_100_chargers_per_second() -> None:
    delays = [first_poll_delay(i, 1000, 1.0, None) for i in range(1000)]
    assert delays[0] == 0.0
    assert delays[-1] == pytest.approx(9.99)
    steps = {round(b - a, 9) for a, b in itertools.pairwise(delays)}
    assert steps == {0.01}
    # Fewer chargers than one interval's worth: spread over the interval, as before.
    assert [first_poll_delay(i, 3, 1.0, None) for i in range(3)] == pytest.approx([0, 1 / 3, 2 / 3])
    assert first_poll_delay(2, 4, 5.0, None) == 2.5


def test_an_explicit_spread_is_used_but_never_shorter_than_the_interval() -> None:
    assert first_poll_delay(500, 1000, 1.0, 60.0) == 30.0
    assert first_poll_delay(500, 1000, 2.0, 0.5) == 1.0
