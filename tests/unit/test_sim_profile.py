"""The compose `sim` profile simulates, certifies and polls SIM_COUNT chargers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from chargelift_poller.config import load_chargers

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SIM_COUNT = "${SIM_COUNT:-3}"


def test_simulator_certs_and_poller_read_the_same_count() -> None:
    command = SERVICES["simulator"]["command"]
    assert command[command.index("--count") + 1] == SIM_COUNT
    assert SERVICES["certs"]["environment"]["SIM_COUNT"] == SIM_COUNT
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
    chargers = load_chargers(tmp_path / "seen.toml", {"SIM_PIN": "1234"})
    assert [(c.id, c.url) for c in chargers] == [
        (f"amtron-{i}", f"http://simulator:{25000 + i - 1}") for i in range(1, 5)
    ]
    bad = subprocess.run(
        ["sh", str(script)], env={**env, "SIM_COUNT": "three"}, capture_output=True, timeout=10
    )
    assert bad.returncode == 2
    assert b"SIM_COUNT" in bad.stderr


def test_the_certs_bootstrap_issues_the_simulated_chargers(tmp_path: Path) -> None:
    # As the certs container runs it, with chown stubbed (it runs as root there).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "chown").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "chown").chmod(0o755)
    certs_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{certs_bin}:{os.environ['PATH']}",
        "CERTS_DIR": str(tmp_path / "certs"),
        "SIM_COUNT": "4",
        "CHARGELIFT_SERVICES_ACL": str(REPO / "mosquitto" / "acl.services"),
    }
    script = REPO / "docker" / "entrypoints" / "certs.sh"
    subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True, timeout=60)
    issued = sorted(p.stem for p in (tmp_path / "certs" / "clients").glob("*.crt"))
    assert issued == [
        "amtron-1",
        "amtron-2",
        "amtron-3",
        "amtron-4",
        "ingest",
        "ingest-2",
        "monitor",
    ]
