"""Issue 8: the short chaos soak, part of the suite (the full one: `make chaos`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_short_chaos_soak_loses_and_duplicates_nothing() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.chaos.chaos",
            "--duration",
            "100",
            "--chargers",
            "8",
            "--kills",
            "1",
            "--seed",
            "11",
            "--outbox-max-rows",
            "300",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    out = run.stdout
    last = out.strip().splitlines()[-1] if out.strip() else ""
    m = re.fullmatch(
        r"chaos: samples=(\d+) stored=(\d+) lost=(\d+) duplicated=(\d+) "
        r"dead_letters=(\d+) kills=(\d+)",
        last,
    )
    assert m is not None, f"no summary line:\n{out[-3000:]}\n{run.stderr[-3000:]}"
    samples, stored, lost, duplicated, dead, kills = map(int, m.groups())
    print(out[-1500:])
    assert run.returncode == 0, out[-3000:]
    assert samples > 500
    assert duplicated == 0
    assert kills == 4
    assert dead > 0
    assert stored + lost == samples
    drops = re.search(r"outbox drops \(recorded, the only allowed gaps\): (\d+)", out)
    assert drops is not None
    assert int(drops.group(1)) > 0, "the soak did not drive the outbox to its bound"
    assert lost <= int(drops.group(1))
