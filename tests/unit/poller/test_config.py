"""The chargers file and the environment settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from chargelift_poller.config import ConfigFileError, Settings, load_chargers
from tests.unit.poller.conftest import PIN


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chargers.toml"
    path.write_text(text)
    return path


def test_a_complete_file(tmp_path: Path) -> None:
    pin_file = tmp_path / "pin2"
    pin_file.write_text("  2468\n\n")
    path = write(
        tmp_path,
        f"""
[defaults]
interval = 2.0
timeout = 1.5

[[chargers]]
id = "amtron-1"
driver = "mhcp"
url = "http://127.0.0.1:25000"
pin_env = "AMTRON_1_PIN"

[[chargers]]
id = "amtron-2"
driver = "mhcp"
url = "http://127.0.0.1:25001"
pin_file = "{pin_file}"
identity = "edge-amtron-2"
interval = 0.5
[chargers.options]
api_path = "/MHCP/1.0"
""",
    )
    one, two = load_chargers(path, {"AMTRON_1_PIN": PIN})
    assert (one.id, one.driver, one.url, one.identity) == (
        "amtron-1", "mhcp", "http://127.0.0.1:25000", "amtron-1",
    )  # fmt: skip
    assert (one.interval, one.timeout) == (2.0, 1.5)
    assert one.pin is not None
    assert one.pin.get_secret_value() == PIN
    assert one.pin_ref == "env AMTRON_1_PIN"
    assert two.pin is not None
    assert two.pin.get_secret_value() == "2468"
    assert two.pin_ref == f"file {pin_file}"
    assert (two.identity, two.interval, two.timeout) == ("edge-amtron-2", 0.5, 1.5)
    assert two.options == {"api_path": "/MHCP/1.0"}
    assert PIN not in repr(one)


CHARGER = '[[chargers]]\nid = "amtron-1"\ndriver = "mhcp"\nurl = "http://127.0.0.1:25000"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no [[chargers]]"),
        ("[[chargers]\n", "invalid TOML"),
        ("[site]\nname='x'\n" + CHARGER, "unknown table"),
        ("[defaults]\nurl='x'\n" + CHARGER, "[defaults] may set only"),
        (CHARGER + 'pin_env = "NOPE_PIN"\n', "charger #1 (amtron-1): the PIN variable NOPE_PIN"),
        (CHARGER + 'pin_file = "/nonexistent/pin"\n', "cannot read the PIN file"),
        (CHARGER + 'pin_env = "A"\npin_file = "/x"\n', "not both"),
        (CHARGER + "colour = 'red'\n", "colour: Extra inputs are not permitted"),
        (CHARGER + "interval = 0\n", "interval"),
        (CHARGER.replace("amtron-1", "Amtron 1"), "invalid charger id"),
        (CHARGER + CHARGER, "appears twice"),
        (
            CHARGER
            + 'identity = "shared"\n'
            + CHARGER.replace("amtron-1", "amtron-2")
            + 'identity = "shared"\n',
            "identity 'shared' is used by two chargers",
        ),
    ],
)
def test_invalid_files_say_where_and_why(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigFileError) as info:
        load_chargers(write(tmp_path, text), {"A": PIN})
    assert message in str(info.value)
    assert str(tmp_path) in str(info.value)
    assert PIN not in str(info.value)


def test_empty_pin_file(tmp_path: Path) -> None:
    (tmp_path / "pin").write_text("\n")
    with pytest.raises(ConfigFileError, match="is empty"):
        load_chargers(write(tmp_path, CHARGER + f'pin_file = "{tmp_path / "pin"}"\n'), {})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="chargers file"):
        load_chargers(tmp_path / "none.toml", {})


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "POLLER_CONFIG": str(tmp_path / "c.toml"),
        "POLLER_OUTBOX": str(tmp_path / "o.sqlite"),
        "MQTT_HOST": "127.0.0.1",
        "MQTT_CA_FILE": "/certs/ca.crt",
        "MQTT_CERTS_DIR": "/certs",
        "POLLER_SNAPSHOT_INTERVAL": "120",
        "POLLER_REPLAY_WINDOW": "30",
        "POLLER_OUTBOX_MAX_ROWS": "5000",
        "POLLER_OUTBOX_MAX_AGE": "3600",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert s.mqtt_port == 8883
    assert s.poller_snapshot_interval == 120
    assert s.poller_replay_window == 30
    assert s.poller_outbox_max_rows == 5000
    assert s.poller_outbox_max_age == 3600
    assert s.poller_metrics_port == 9101


def test_settings_refuse_to_start_without_required_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POLLER_CONFIG", "POLLER_OUTBOX", "MQTT_HOST", "MQTT_CA_FILE", "MQTT_CERTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError) as info:
        Settings()
    missing = {e["loc"][0] for e in info.value.errors()}
    assert {"poller_config", "poller_outbox", "mqtt_host", "mqtt_ca_file"} <= missing
