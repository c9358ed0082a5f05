"""The Prometheus configuration and alert rules, checked and unit-tested by promtool.

promtool (Debian package ``prometheus``; ``make test`` installs it as root) validates
deploy/prometheus/prometheus.yml with its rule file, then evaluates the rules over
synthetic series: each alert fires when it should, stays quiet when it should not, and
renders its summary as written below.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = {
    r["alert"]: r
    for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    for r in g["rules"]
}
PI = {"instance": "pi:9101", "job": "chargelift-poller"}
INGEST = {"instance": "ingest:9102", "job": "chargelift-ingest"}
OCPP = {"instance": "ocpp:9103", "job": "chargelift-ocpp"}


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def _alert(name: str, labels: dict[str, str], summary: str) -> dict[str, Any]:
    """An expected alert: its labels, and the rule's annotations rendered for them."""
    rule = RULES[name]
    all_labels = {**labels, **rule["labels"]}
    annotations = {"summary": summary}
    if "description" in rule["annotations"]:
        annotations["description"] = re.sub(
            r"\{\{ \$labels\.(\w+) \}\}",
            lambda m: all_labels[m.group(1)],
            rule["annotations"]["description"],
        )
    return {"exp_labels": all_labels, "exp_annotations": annotations}


CASES: list[dict[str, Any]] = [
    {  # a charger that stops answering: quiet for the first 5 minutes, then firing
        "input_series": [_series("poller_charger_up", {"charger": "garage", **PI}, "1 1 0x12")],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "ChargerDown", "exp_alerts": []},
            {
                "eval_time": "8m",
                "alertname": "ChargerDown",
                "exp_alerts": [
                    _alert(
                        "ChargerDown",
                        {"charger": "garage", **PI},
                        "charger garage has not answered its poller for 5 minutes",
                    )
                ],
            },
        ],
    },
    {  # a service down fires; the sim profile's poller (often not started) does not
        "input_series": [
            _series("up", INGEST, "0x10"),
            _series(
                "up", {"instance": "poller:9101", "job": "chargelift-poller", "site": "sim"}, "0x10"
            ),
        ],
        "alert_rule_test": [
            {
                "eval_time": "6m",
                "alertname": "ChargeliftTargetDown",
                "exp_alerts": [
                    _alert(
                        "ChargeliftTargetDown",
                        INGEST,
                        "chargelift-ingest at ingest:9102 does not answer scrapes",
                    )
                ],
            }
        ],
    },
    {  # the outbox's oldest sample ages past 10 minutes: 700 s at 2m, +60 s a minute
        "input_series": [_series("poller_outbox_oldest_unsent_age_seconds", PI, "0 60 700+60x12")],
        "alert_rule_test": [
            {"eval_time": "6m", "alertname": "OutboxBacklog", "exp_alerts": []},
            {
                "eval_time": "8m",
                "alertname": "OutboxBacklog",
                "exp_alerts": [
                    _alert("OutboxBacklog", PI, "pi:9101: samples wait 17m 40s for the broker")
                ],
            },
        ],
    },
    {  # the OCPP gateway's outbox: the same rule (its series are ocpp_outbox_*)
        "input_series": [_series("ocpp_outbox_oldest_unsent_age_seconds", OCPP, "0 60 700+60x12")],
        "alert_rule_test": [
            {"eval_time": "6m", "alertname": "OutboxBacklog", "exp_alerts": []},
            {
                "eval_time": "8m",
                "alertname": "OutboxBacklog",
                "exp_alerts": [
                    _alert("OutboxBacklog", OCPP, "ocpp:9103: samples wait 17m 40s for the broker")
                ],
            },
        ],
    },
    {  # the OCPP gateway's outbox drops
        "input_series": [
            _series("ocpp_outbox_dropped_total", {"reason": "max_rows", **OCPP}, "0 0 0 5 10 15")
        ],
        "alert_rule_test": [
            {"eval_time": "2m", "alertname": "OutboxDropping", "exp_alerts": []},
            {
                "eval_time": "5m",
                "alertname": "OutboxDropping",
                "exp_alerts": [
                    _alert(
                        "OutboxDropping",
                        {"reason": "max_rows", **OCPP},
                        "ocpp:9103 dropped samples (max_rows)",
                    )
                ],
            },
        ],
    },
    {  # drops: firing at once, no waiting
        "input_series": [
            _series("poller_outbox_dropped_total", {"reason": "max_rows", **PI}, "0 0 0 5 10 15")
        ],
        "alert_rule_test": [
            {"eval_time": "2m", "alertname": "OutboxDropping", "exp_alerts": []},
            {
                "eval_time": "5m",
                "alertname": "OutboxDropping",
                "exp_alerts": [
                    _alert(
                        "OutboxDropping",
                        {"reason": "max_rows", **PI},
                        "pi:9101 dropped samples (max_rows)",
                    )
                ],
            },
        ],
    },
    {  # three bad messages: one alert per reason, across ingest processes
        "input_series": [
            _series("ingest_dead_letters_total", {"reason": "bad_json", **INGEST}, "0 0 3 3 3"),
            _series("ingest_dead_letters_total", {"reason": "unknown_field", **INGEST}, "0x5"),
        ],
        "alert_rule_test": [
            {
                "eval_time": "4m",
                "alertname": "DeadLetters",
                "exp_alerts": [
                    _alert("DeadLetters", {"reason": "bad_json"}, "messages rejected as bad_json")
                ],
            }
        ],
    },
    {  # a flood over one identity's budget, across ingest processes
        "input_series": [
            _series(
                "ingest_dead_letters_rate_limited_total",
                {"limit": "identity", **INGEST},
                "0 0 2900 2900 2900",
            ),
        ],
        "alert_rule_test": [
            {
                "eval_time": "4m",
                "alertname": "DeadLettersRateLimited",
                "exp_alerts": [
                    _alert(
                        "DeadLettersRateLimited",
                        {"limit": "identity"},
                        "dead letters over the identity budget dropped",
                    )
                ],
            }
        ],
    },
    {  # every reading stored 60-300 s after sampling: p99 = 60 + 0.99 × 240 = 297.6 s
        "input_series": [
            _series("ingest_lag_seconds_bucket", {"le": "60", **INGEST}, "0x20"),
            _series("ingest_lag_seconds_bucket", {"le": "300", **INGEST}, "0+100x20"),
            _series("ingest_lag_seconds_bucket", {"le": "+Inf", **INGEST}, "0+100x20"),
        ],
        "alert_rule_test": [
            {"eval_time": "10m", "alertname": "IngestLagHigh", "exp_alerts": []},
            {
                "eval_time": "16m",
                "alertname": "IngestLagHigh",
                "exp_alerts": [
                    _alert(
                        "IngestLagHigh",
                        {"instance": "ingest:9102"},
                        "99 % of readings are stored more than 4m 57s after sampling",
                    )
                ],
            },
        ],
    },
    {  # the database goes away at 1m: firing after 2 minutes of it
        "input_series": [_series("ingest_database_ok", INGEST, "1 0x10")],
        "alert_rule_test": [
            {"eval_time": "2m", "alertname": "IngestDatabaseFailing", "exp_alerts": []},
            {
                "eval_time": "4m",
                "alertname": "IngestDatabaseFailing",
                "exp_alerts": [
                    _alert("IngestDatabaseFailing", INGEST, "ingest cannot write to the database")
                ],
            },
        ],
    },
    {  # the broker's CRL expires in 5 days: both the warning and the critical alert
        "input_series": [
            _series(
                "chargelift_crl_next_update_timestamp_seconds",
                {"file": "/certs/crl.pem", **INGEST},
                f"{5 * 86400}x5",
            )
        ],
        "alert_rule_test": [
            {
                "eval_time": "1m",
                "alertname": "RevocationListExpiresSoon",
                "exp_alerts": [
                    _alert(
                        "RevocationListExpiresSoon",
                        {"file": "/certs/crl.pem", **INGEST},
                        "the broker's revocation list /certs/crl.pem expires in 4d 23h 59m 0s",
                    )
                ],
            },
            {
                "eval_time": "1m",
                "alertname": "RevocationListExpiresVerySoon",
                "exp_alerts": [
                    _alert(
                        "RevocationListExpiresVerySoon",
                        {"file": "/certs/crl.pem", **INGEST},
                        "the broker's revocation list expires in 4d 23h 59m 0s: "
                        "every client will be refused",
                    )
                ],
            },
        ],
    },
    {  # a CRL re-signed a year ahead: quiet
        "input_series": [
            _series(
                "chargelift_crl_next_update_timestamp_seconds",
                {"file": "/certs/crl.pem", **INGEST},
                f"{365 * 86400}x5",
            )
        ],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "RevocationListExpiresSoon", "exp_alerts": []},
        ],
    },
    {  # ingest holds messages and commits nothing: quiet under a minute, then firing
        "input_series": [_series("ingest_stalled_seconds", INGEST, "0 0 70 130 0")],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "IngestStalled", "exp_alerts": []},
            {
                "eval_time": "3m",
                "alertname": "IngestStalled",
                "exp_alerts": [
                    _alert(
                        "IngestStalled",
                        INGEST,
                        "ingest:9102 has held messages 2m 10s without committing any",
                    )
                ],
            },
            {"eval_time": "4m", "alertname": "IngestStalled", "exp_alerts": []},  # restarted
        ],
    },
    {  # the broker stops acknowledging a poller's publishes
        "input_series": [_series("poller_stalled_seconds", PI, "0 30 90")],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "PollerStalled", "exp_alerts": []},
            {
                "eval_time": "2m",
                "alertname": "PollerStalled",
                "exp_alerts": [
                    _alert(
                        "PollerStalled",
                        PI,
                        "pi:9101 has had publishes in flight 1m 30s without a PUBACK",
                    )
                ],
            },
        ],
    },
    {  # a broker certificate valid for 20 more days (promtool's clock starts at 0)
        "input_series": [
            _series(
                "chargelift_certificate_expiry_timestamp_seconds",
                {"file": "/certs/broker.crt", "subject": "broker", **INGEST},
                f"{20 * 86400}x5",
            ),
            _series(
                "chargelift_certificate_expiry_timestamp_seconds",
                {"file": "/certs/ca.crt", "subject": "chargelift CA", **INGEST},
                f"{3650 * 86400}x5",
            ),
        ],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "CertificateExpiresVerySoon", "exp_alerts": []},
            {
                "eval_time": "1m",
                "alertname": "CertificateExpiresSoon",
                "exp_alerts": [
                    _alert(
                        "CertificateExpiresSoon",
                        {"file": "/certs/broker.crt", "subject": "broker", **INGEST},
                        "certificate broker (/certs/broker.crt) expires in 19d 23h 59m 0s",
                    )
                ],
            },
        ],
    },
]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: install Debian's `prometheus` (make system-deps)")
    return path


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=60, check=False
    )


def test_config_and_rules_are_valid(promtool: str) -> None:
    checked = _run(promtool, "check", "config", PROMETHEUS / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout


def test_every_alert_has_a_case() -> None:
    covered = {t["alertname"] for c in CASES for t in c["alert_rule_test"]}
    untested = set(RULES) - covered
    # Alerts on a plain 0/1 gauge, alike to the IngestDatabaseFailing case:
    assert untested <= {
        "PollerBrokerDisconnected",
        "IngestBrokerDisconnected",
        "CertificateUnreadable",
    }, untested


def test_alerts_fire_as_specified(promtool: str, tmp_path: Path) -> None:
    spec = {
        "rule_files": [str(PROMETHEUS / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", **case} for case in CASES],
    }
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = _run(promtool, "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
