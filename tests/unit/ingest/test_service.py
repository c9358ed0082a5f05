"""The ingest service's skeleton: settings, the /healthz shape, injected metrics."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import CollectorRegistry

from chargelift_ingest import __version__
from chargelift_ingest.config import MqttSettings, Settings
from chargelift_ingest.main import main
from chargelift_ingest.service import IngestService

ENV = {
    "DATABASE_URL": "postgresql://u:hunter2@db:5432/x",
    "MQTT_HOST": "broker",
    "MQTT_CA_FILE": "/c/ca.crt",
    "MQTT_CERTS_DIR": "/c",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MQTT_IDENTITY", raising=False)


def test_the_identity_defaults_to_ingest(env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert IngestService(Settings(), MqttSettings()).identity == "ingest"
    monkeypatch.setenv("MQTT_IDENTITY", "ingest-2")
    assert IngestService(Settings(), MqttSettings()).identity == "ingest-2"


def test_healthz_has_the_shape_of_every_service(env: None) -> None:
    status, ctype, body = IngestService(Settings(), MqttSettings()).healthz()
    assert (status, ctype) == (200, "application/json")
    assert orjson.loads(body) == {
        "status": "ok",
        "version": __version__,
        "problem": None,
        "stalled_seconds": 0.0,
        "mqtt_connected": False,
        "database_ok": True,
        "pending": 0,
    }


def test_metrics_are_on_the_injected_registry(env: None) -> None:
    registry = CollectorRegistry()
    service = IngestService(Settings(), MqttSettings(), registry=registry)
    assert service.metrics.registry is registry
    assert registry.get_sample_value("ingest_mqtt_connected") == 0
    assert registry.get_sample_value("ingest_pending_messages") == 0
    # Two services (two tests, two processes' worth) never share a collector.
    other = IngestService(Settings(), MqttSettings())
    assert other.registry is not registry
    assert b"ingest_messages_received_total" in service.prometheus()[2]


def test_main_names_every_bad_variable_and_no_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (*ENV, "MQTT_IDENTITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INGEST_BATCH_SIZE", "0")
    monkeypatch.setenv("MQTT_PORT", "hunter2")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chargelift-ingest: invalid environment:")
    assert "INGEST_DATABASE_URL" not in err
    for name in (
        "DATABASE_URL",
        "INGEST_BATCH_SIZE",
        "MQTT_HOST",
        "MQTT_PORT",
        "MQTT_CA_FILE",
        "MQTT_CERTS_DIR",
    ):
        assert name in err
    assert "hunter2" not in err


def test_migrate_needs_only_the_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    # Named as it is set (pydantic reports an aliased field by its alias).
    assert "\n  DATABASE_URL: " in err
    assert "MQTT" not in err
