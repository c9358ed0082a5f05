"""The architecture contracts (root pyproject.toml ``[tool.importlinter]``, run by
``make check``) hold, and they would catch a forbidden import.

To show that a contract bites, the packages' sources are copied to a temporary folder,
one forbidden import is added to the copy, and ``lint-imports`` runs with the repository's
configuration against the copy (first on ``PYTHONPATH``, so it shadows the editable
installs): it must fail and name the broken contract. The unmodified tree must pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = {
    "chargelift_contract": "services/contract",
    "chargelift_runtime": "services/runtime",
    "chargelift_edge": "services/edge",
    "chargelift_certs": "services/certs",
    "chargelift_poller": "services/poller",
    "chargelift_simulator": "services/simulator",
    "chargelift_ingest": "services/ingest",
    "chargelift_api": "services/api",
    "chargelift_ocpp": "services/ocpp",
    "chargelift_bridge": "services/bridge",
    "chargelift_devstack": "tools/devstack",
}

SERVICES_INDEPENDENT = "Services never import each other"
CONTRACT_PURE = "The wire contract imports no runtime, no service and no I/O library"
RUNTIME_ONLY_CONTRACT = (
    "The runtime imports, of chargelift, only the contract (no service, no devstack)"
)
EDGE_LIBRARY = "The edge library imports, of chargelift, only the contract and the runtime"
NO_DEVSTACK = "No service imports the development stack (tools/devstack)"


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(CONFIG)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in (
        SERVICES_INDEPENDENT,
        CONTRACT_PURE,
        RUNTIME_ONLY_CONTRACT,
        EDGE_LIBRARY,
        NO_DEVSTACK,
    ):
        assert f"{name} KEPT" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden", "contract"),
    [
        ("chargelift_contract/topics.py", "chargelift_runtime", CONTRACT_PURE),
        ("chargelift_contract/envelope.py", "gmqtt", CONTRACT_PURE),
        ("chargelift_poller/coordinator.py", "chargelift_api", SERVICES_INDEPENDENT),
        ("chargelift_runtime/logs.py", "chargelift_ingest", RUNTIME_ONLY_CONTRACT),
        ("chargelift_runtime/logs.py", "chargelift_edge", RUNTIME_ONLY_CONTRACT),
        ("chargelift_edge/publisher.py", "chargelift_poller", EDGE_LIBRARY),
        ("chargelift_contract/topics.py", "chargelift_edge", CONTRACT_PURE),
        ("chargelift_api/series.py", "chargelift_devstack", NO_DEVSTACK),
    ],
)
def test_a_forbidden_import_breaks_the_contracts(
    tmp_path: Path, module: str, forbidden: str, contract: str
) -> None:
    src = tmp_path / "src"
    for package, folder in PACKAGES.items():
        shutil.copytree(
            ROOT / folder / package,
            src / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    target = src / module
    target.write_text(target.read_text() + f"\nimport {forbidden}  # the forbidden import\n")

    result = lint_imports(tmp_path, pythonpath=src)
    assert result.returncode != 0, result.stdout
    assert f"{contract} BROKEN" in result.stdout, result.stdout + result.stderr
    assert f"{forbidden}" in result.stdout
