"""The bridge's settings and command line: bad settings are reported, never run."""

from __future__ import annotations

import pytest

from chargelift_bridge.config import Settings
from chargelift_bridge.main import main


def test_defaults_and_the_current_range(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRIDGE_CONTROL", "BRIDGE_MIN_CURRENT", "BRIDGE_MAX_CURRENT"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert (s.control, s.min_current, s.max_current, s.metrics_port) == (False, 6, 32, 9104)
    monkeypatch.setenv("BRIDGE_MIN_CURRENT", "40")
    with pytest.raises(ValueError, match="BRIDGE_MIN_CURRENT"):
        Settings()


def test_missing_broker_settings_exit_2_naming_each(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("MQTT_HOST", "MQTT_CA_FILE", "MQTT_CERTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BRIDGE_MAX_CURRENT", "nan")
    assert main([]) == 2
    err = capsys.readouterr().err
    for name in ("MQTT_HOST", "MQTT_CA_FILE", "MQTT_CERTS_DIR", "BRIDGE_MAX_CURRENT"):
        assert name in err
