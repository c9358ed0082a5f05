"""The compose `sim` profile simulates, certifies and polls SIM_COUNT chargers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from chargelift_ocpp.registry import read_registry
from chargelift_poller.config import load_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SIM_COUNT = "${SIM_COUNT:-3}"


def test_simulator_certs_and_poller_read_the_same_count() -> None:
    command = SERVICES["simulator"]["command"]
    assert command[command.index("--count") + 1] == SIM_COUNT
    assert SERVICES["sim-certs"]["environment"]["SIM_COUNT"] == SIM_COUNT
    poller = SERVICES["poller"]
    assert poller["environment"]["SIM_COUNT"] == SIM_COUNT
    [script] = [v.split(":")[1] for v in poller["volumes"] if v.startswith("./docker/sim/")]
    assert poller["entrypoint"] == ["/bin/sh", script]


def test_the_sim_poller_polls_every_simulated_charger(tmp_path: Path) -> None:
    # A stand-in chargelift-poller keeps the chargers file it was started with.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "chargelift-poller"
    stub.write_text(f'#!/bin/sh\ncp "$POLLER_CONFIG" {tmp_path}/seen.toml\n')
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    script = REPO / "docker" / "sim" / "poller.sh"
    subprocess.run(["sh", str(script)], env={**env, "SIM_COUNT": "4"}, check=True, timeout=10)
    chargers = load_config(tmp_path / "seen.toml", {"SIM_PIN": "1234"}).chargers
    assert [(c.id, c.url) for c in chargers] == [
        (f"amtron-{i}", f"http://simulator:{25000 + i - 1}") for i in range(1, 5)
    ]
    bad = subprocess.run(
        ["sh", str(script)], env={**env, "SIM_COUNT": "three"}, capture_output=True, timeout=10
    )
    assert bad.returncode == 2
    assert b"SIM_COUNT" in bad.stderr


def test_only_the_sim_profile_issues_simulated_chargers() -> None:
    # Issue 14 (low): no charger identity nobody asked for on a production stack. The
    # plain certs service issues none; sim-certs (profile sim) issues amtron-1..SIM_COUNT
    # with the CA key, before the broker reads its ACL and before the poller starts.
    certs, sim = SERVICES["certs"], SERVICES["sim-certs"]
    assert "SIM_COUNT" not in certs["environment"]
    assert "profiles" not in certs
    assert sim["profiles"] == ["sim"]
    assert (sim["image"], sim["build"]) == (certs["image"], certs["build"])
    assert sim["user"] == certs["user"] == "0:0"  # to hand each key to its service
    # the CA key in its own volume; the OCPP gateway's registry (charge points, passwords)
    assert sim["volumes"] == certs["volumes"] == ["certs:/certs", "ca:/ca", "ocpp-registry:/ocpp"]
    assert sim["environment"]["CHARGELIFT_CA_KEY"] == certs["environment"]["CHARGELIFT_CA_KEY"]
    assert sim["environment"]["CHARGELIFT_CA_KEY"] == "/ca/ca.key"
    assert sim["network_mode"] == "none"
    assert sim["restart"] == "no"
    done = {"condition": "service_completed_successfully"}
    assert sim["depends_on"] == {"certs": done}
    for service in ("poller", "simulator"):
        assert SERVICES[service]["profiles"] == ["sim"]
        assert SERVICES[service]["depends_on"]["sim-certs"] == done, service
    # the broker waits for it when the sim profile is on, and only then
    assert SERVICES["mosquitto"]["depends_on"]["sim-certs"] == {**done, "required": False}
    assert "profiles" not in SERVICES["mosquitto"]
    # the stand-in override builds it like certs
    standins = yaml.safe_load((REPO / "tests" / "compose" / "compose.standins.yml").read_text())
    assert standins["services"]["sim-certs"] == standins["services"]["certs"]


def _run_certs(tmp_path: Path, **env: str) -> list[str]:
    """certs.sh as the certs containers run it, with chown stubbed (root there): the
    client identities in the certificate directory afterwards."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "chown").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "chown").chmod(0o755)
    certs_bin = Path(sys.executable).parent
    environ = {
        **{k: v for k, v in os.environ.items() if k != "SIM_COUNT"},
        "PATH": f"{bin_dir}:{certs_bin}:{os.environ['PATH']}",
        "CERTS_DIR": str(tmp_path / "certs"),
        "CHARGELIFT_CA_KEY": str(tmp_path / "ca" / "ca.key"),
        **env,
        "OCPP_REGISTRY_DIR": str(tmp_path / "ocpp"),  # never the machine's /ocpp
    }
    (tmp_path / "ocpp").mkdir(exist_ok=True)
    script = REPO / "docker" / "entrypoints" / "certs.sh"
    subprocess.run(["sh", str(script)], env=environ, check=True, capture_output=True, timeout=60)
    return sorted(p.stem for p in (tmp_path / "certs" / "clients").glob("*.crt"))


def _env(service: str) -> dict[str, str]:
    """The service's environment as compose gives it with SIM_COUNT=4 in .env, less the
    CA key's path (the tests keep it in their own directory)."""
    resolved = {}
    for name, value in SERVICES[service]["environment"].items():
        m = re.fullmatch(r"\$\{(\w+):-(.*)\}", value)
        resolved[name] = ("4" if m[1] == "SIM_COUNT" else m[2]) if m else value
    del resolved["CHARGELIFT_CA_KEY"]
    return resolved


def test_the_certs_bootstrap_issues_no_charger_the_sim_certs_the_simulated_ones(
    tmp_path: Path,
) -> None:
    # the OCPP gateway's edge identity, listing the spare charge point; the Home Assistant
    # bridge's identity
    services = ["api", "bridge", "healthcheck", "ingest", "ingest-2", "monitor", "ocpp-gateway"]
    assert _run_certs(tmp_path, **_env("certs")) == services
    registry = read_registry(tmp_path / "ocpp" / "charge_points.toml")
    assert list(registry) == ["ocpp-spare"]
    acl = (tmp_path / "certs" / "mosquitto.acl").read_text()
    assert "amtron" not in acl
    # the API publishes the commands it accepts: a controller of every charger
    api_rules = acl.split("user api\n", 1)[1].split("\n\n", 1)[0]
    assert "topic write chargers/+/set/+" in api_rules
    bridge_rules = acl.split("user bridge\n", 1)[1].split("\n\n", 1)[0]
    assert "topic readwrite chargelift/ha/#" in bridge_rules
    assert "set" not in bridge_rules
    # the sim profile: sim-certs after certs, with the CA key (in its own directory)
    assert (tmp_path / "ca" / "ca.key").is_file()
    sim_env = _env("sim-certs")
    assert sim_env["SIM_COUNT"] == "4"
    chargers = [f"amtron-{i}" for i in range(1, 5)]
    assert _run_certs(tmp_path, **sim_env) == sorted(chargers + services)
    acl = (tmp_path / "certs" / "mosquitto.acl").read_text()
    for charger in chargers:
        assert f"user {charger}" in acl
    # and the simulated OCPP charge point, which the gateway's identity now lists too
    registry = read_registry(tmp_path / "ocpp" / "charge_points.toml")
    assert sorted(registry) == ["ocpp-sim-1", "ocpp-spare"]
    gateway_rules = acl.split("user ocpp-gateway\n", 1)[1].split("\n\n", 1)[0]
    assert "chargers/ocpp-sim-1/" in gateway_rules
