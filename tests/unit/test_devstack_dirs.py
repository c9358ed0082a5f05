"""Where the dev stack's servers keep their files (chargelift_devstack.procs.server_home)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chargelift_devstack import procs


def test_a_user_keeps_the_servers_files_where_asked(tmp_path: Path) -> None:
    if procs.is_root():
        pytest.skip("as root the location depends on the servers' accounts")
    assert procs.server_home(tmp_path / ".dev", ("mosquitto", "postgres")) == tmp_path / ".dev"


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory others may traverse (pytest's tmp_path is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="chargelift-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_as_root_a_place_the_servers_accounts_cannot_reach_is_moved(
    scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clone under /root (0700): the servers' files go where their accounts can go."""
    if not procs.is_root():
        pytest.skip("only root's servers drop to other accounts")
    nobody = procs.account("nobody")
    assert nobody is not None
    monkeypatch.setattr(procs, "SERVER_HOMES", scratch / "homes")
    home = scratch / "root"
    home.mkdir()
    home.chmod(0o700)
    dev = home / "project" / ".dev"
    assert not procs.reachable(dev, nobody)
    moved = procs.server_home(dev, ("nobody",))
    assert moved.parent == scratch / "homes"
    assert procs.reachable(moved, nobody)
    assert procs.server_home(dev, ("nobody",)) == moved, "the same place every time"
    home.chmod(0o711)
    assert procs.server_home(dev, ("nobody",)) == dev
    assert os.stat(moved).st_mode & 0o777 == 0o755
