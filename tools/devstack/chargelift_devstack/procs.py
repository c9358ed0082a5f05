"""Small helpers for the servers the stack runs: free ports, accounts, waiting."""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

# Where the servers keep their files when, as root, their accounts cannot reach the
# repository (a clone under /root, mode 0700): see server_home().
SERVER_HOMES = Path("/var/lib/chargelift-devstack")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_root() -> bool:
    return os.geteuid() == 0


def account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def find_binary(name: str, extra_dirs: tuple[str, ...] = ()) -> str:
    """Path of an executable from PATH or ``extra_dirs``; raise with an install hint."""
    for d in extra_dirs:
        candidate = Path(d) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise FileNotFoundError(f"{name} not found: run `make system-deps` (apt-get install)")
    return found


def shared_dir(path: Path) -> Path:
    """Create ``path`` readable/traversable by other accounts (servers drop root)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def reachable(path: Path, acct: pwd.struct_passwd) -> bool:
    """Whether ``acct`` may traverse every existing directory from / down to ``path``."""
    groups = {acct.pw_gid} | {g.gr_gid for g in grp.getgrall() if acct.pw_name in g.gr_mem}
    full = path.resolve()
    for d in [*reversed(full.parents), full]:
        try:
            st = d.stat()
        except FileNotFoundError:
            break  # created later by shared_dir(): mode 0755
        if st.st_uid == acct.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def server_home(path: Path, accounts: Sequence[str]) -> Path:
    """Where servers that drop root to ``accounts`` keep their files for ``path``.

    ``path`` itself, unless we run as root and one of the accounts cannot reach it (the
    repository under /root, mode 0700): then /var/lib/chargelift-devstack/<hash of path>,
    the same directory for the same ``path`` every time (the dev database survives).
    """
    if not is_root():
        return path
    accts = [a for a in map(account, accounts) if a is not None]
    if all(reachable(path, a) for a in accts):
        return path
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    shared_dir(SERVER_HOMES)
    return shared_dir(SERVER_HOMES / digest)


def wait_port(
    host: str, port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    """Wait until ``port`` accepts connections; raise with the log's tail if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not open after {timeout}s:\n{tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a server started with ``start_new_session`` and all its children."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def process_and_children(pid: int) -> list[int]:
    """``pid`` and its direct children: a server's whole set of processes where the
    children leave its process group (PostgreSQL's backends call setsid())."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [pid, *(int(p) for p in out.stdout.split())]


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    """Send ``sig`` to each of ``pids`` that still exists (freeze: SIGSTOP / SIGCONT)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
