"""The chargers file and the environment settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from chargelift_contract.limits import MAX_EDGE_CHARGERS_BYTES, MAX_PACKET_BYTES
from chargelift_poller.config import (
    ConfigFileError,
    MqttIdentity,
    MqttSettings,
    Settings,
    load_config,
)
from chargelift_runtime.settings import SettingsError, load_settings
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
    one, two = load_config(path, {"AMTRON_1_PIN": PIN}).chargers
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
        load_config(write(tmp_path, text), {"A": PIN})
    assert message in str(info.value)
    assert str(tmp_path) in str(info.value)
    assert PIN not in str(info.value)


def test_empty_pin_file(tmp_path: Path) -> None:
    (tmp_path / "pin").write_text("\n")
    with pytest.raises(ConfigFileError, match="is empty"):
        load_config(write(tmp_path, CHARGER + f'pin_file = "{tmp_path / "pin"}"\n'), {})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="chargers file"):
        load_config(tmp_path / "none.toml", {})


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
    s, mqtt = load_settings(Settings, MqttSettings)
    assert (mqtt.host, mqtt.port, mqtt.ca_file) == ("127.0.0.1", 8883, Path("/certs/ca.crt"))
    assert s.config == tmp_path / "c.toml"
    assert s.outbox == tmp_path / "o.sqlite"
    assert s.snapshot_interval == 120
    assert s.replay_window == 30
    assert s.outbox_max_rows == 5000
    assert s.outbox_max_age == 3600
    assert s.metrics_port == 9101


def test_settings_refuse_to_start_without_required_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POLLER_CONFIG", "POLLER_OUTBOX", "MQTT_HOST", "MQTT_CA_FILE", "MQTT_CERTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError) as info:
        Settings()
    missing = {e["loc"][0] for e in info.value.errors()}
    assert {"config", "outbox"} <= missing
    # main() reports both blocks at once, by variable name
    with pytest.raises(SettingsError) as both:
        load_settings(Settings, MqttSettings)
    for name in ("POLLER_CONFIG", "POLLER_OUTBOX", "MQTT_HOST", "MQTT_CA_FILE", "MQTT_CERTS_DIR"):
        assert f"{name}: Field required" in str(both.value)


# --- [mqtt]: per-charger or edge identity ---------------------------------------------

EDGE = '[mqtt]\nidentity = "edge"\nedge_id = "site-1"\n\n'
TWO = CHARGER + "\n" + CHARGER.replace("amtron-1", "amtron-2")


def test_without_mqtt_table_every_charger_has_its_own_identity(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TWO), {})
    assert config.mqtt == MqttIdentity("charger", None)
    assert not config.mqtt.is_edge
    assert [c.identity for c in config.chargers] == ["amtron-1", "amtron-2"]
    explicit = load_config(write(tmp_path, '[mqtt]\nidentity = "charger"\n' + TWO), {})
    assert explicit.mqtt == config.mqtt


def test_edge_identity(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, EDGE + TWO), {})
    assert config.mqtt == MqttIdentity("edge", "site-1")
    assert config.mqtt.is_edge
    # every charger publishes with the edge's certificate
    assert [(c.id, c.identity) for c in config.chargers] == [
        ("amtron-1", "site-1"),
        ("amtron-2", "site-1"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[mqtt]\nidentity = "edge"\n' + CHARGER, 'identity = "edge" needs edge_id'),
        ('[mqtt]\nedge_id = "site-1"\n' + CHARGER, 'edge_id is set but identity is not "edge"'),
        ('[mqtt]\nidentity = "site"\n' + CHARGER, "[mqtt]: identity: Input should be"),
        ('[mqtt]\nidentity = "edge"\nedge_id = "Site 1"\n' + CHARGER, "invalid edge id"),
        ('[mqtt]\nidentity = "edge"\nedge_id = ""\n' + CHARGER, "invalid edge id"),
        ("[mqtt]\nhost = 'x'\n" + CHARGER, "[mqtt]: host: Extra inputs are not permitted"),
        (EDGE + CHARGER + 'identity = "amtron-1"\n', "identity is per-charger"),
        ('[defaults]\nidentity = "x"\n' + CHARGER, "[defaults] may set only"),
    ],
)
def test_invalid_mqtt_tables_say_where_and_why(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigFileError) as info:
        load_config(write(tmp_path, text), {})
    assert message in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_an_edge_charger_list_must_fit_in_one_mqtt_packet(tmp_path: Path) -> None:
    entry = '[[chargers]]\nid = "{}"\ndriver = "mhcp"\nurl = "http://127.0.0.1:1"\n'
    ok = [entry.format(f"c{i:04d}-" + "x" * 50) for i in range(900)]  # 60 bytes each as JSON
    assert len(load_config(write(tmp_path, EDGE + "\n".join(ok)), {}).chargers) == 900
    # The bound is what fits in one packet of the broker's limit with the longest edge
    # topic; here 59 bytes per id as JSON (quotes and a comma)
    assert MAX_EDGE_CHARGERS_BYTES < MAX_PACKET_BYTES
    many = [entry.format(f"c{i:04d}-" + "x" * 50) for i in range(MAX_EDGE_CHARGERS_BYTES // 59 + 1)]
    with pytest.raises(ConfigFileError, match="split the chargers over two edges"):
        load_config(write(tmp_path, EDGE + "\n".join(many)), {})


# -- issue 16: control keys ------------------------------------------------------------


def test_control_keys_have_defaults_and_are_validated(tmp_path: Path) -> None:
    from chargelift_poller.config import ControlConfig

    base = '[[chargers]]\nid = "a"\ndriver = "mhcp"\nurl = "http://x"\n'
    config = load_config(write(tmp_path, base))
    assert config.chargers[0].control == ControlConfig(
        min_current=6.0, max_current=None, default_current=None,
        min_write_interval=2.0, permanent_writes=False,
    )  # fmt: skip
    text = (
        "[defaults]\nmin_write_interval = 5\npermanent_writes = true\n"
        + base
        + "min_current = 8\nmax_current = 20\ndefault_current = 10\n"
    )
    control = load_config(write(tmp_path, text)).chargers[0].control
    assert control == ControlConfig(8.0, 20.0, 10.0, 5.0, True)
    for extra, message in (
        ("max_current = 5\n", "min_current 6 A is above max_current 5 A"),
        ("default_current = 4\n", "default_current 4 A is below min_current 6 A"),
        ("max_current = 10\ndefault_current = 11\n", "above max_current 10 A"),
        ("min_write_interval = -1\n", "min_write_interval"),
        ("min_current = 0\n", "min_current"),
    ):
        with pytest.raises(ConfigFileError, match=message):
            load_config(write(tmp_path, base + extra))
