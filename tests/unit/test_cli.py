"""Every console script answers --help, and a bad option, with its usage and exits.

Run as a user runs them (the installed scripts, in a subprocess): nothing may start, so
each must return within seconds and leave its working directory empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCRIPTS = sorted(
    name
    for pyproject in REPO.glob("*/*/pyproject.toml")
    for name in tomllib.loads(pyproject.read_text())["project"].get("scripts", {})
)
#: What would let a service start if it ignored its arguments: a complete environment.
STARTABLE_ENV = {
    "POLLER_CONFIG": "poller.toml",
    "POLLER_OUTBOX": "outbox.sqlite",
    "MQTT_HOST": "127.0.0.1",
    "MQTT_CA_FILE": "ca.crt",
    "MQTT_CERTS_DIR": ".",
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing",
    "API_TOKENS": "",
    "SIMULATOR_PIN": "1234",
}


def run(script: str, arg: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / script), arg],
        cwd=cwd,
        env={**os.environ, **STARTABLE_ENV},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_scripts_are_found() -> None:
    assert {"chargelift-poller", "chargelift-api", "chargelift-devstack"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage_and_exits(script: str, tmp_path: Path) -> None:
    done = run(script, "--help", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script}"), done.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bad_option_prints_usage_and_exits_2(script: str, tmp_path: Path) -> None:
    done = run(script, "--no-such-option", tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"usage: {script}"), done.stderr
    assert "--no-such-option" in done.stderr or "required" in done.stderr
    assert list(tmp_path.iterdir()) == []
