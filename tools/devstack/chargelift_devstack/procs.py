"""Small helpers for the servers the stack runs: free ports, accounts, waiting."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


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
