"""Run a throw-away (tests) or local (``make dev``) PostgreSQL 15+ on 127.0.0.1.

PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` account (created by Debian's package) and is started through runuser.
Authentication is ``trust`` for loopback only: this cluster is for development and
tests; the compose stack uses passwords (docs/deploy.md).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chargelift_devstack.procs import (
    account,
    free_port,
    is_root,
    kill_group,
    shared_dir,
    tail,
    wait_port,
)

USER = "chargelift"
DATABASE = "chargelift"


def pg_bindir() -> Path:
    """The bin directory of the newest installed PostgreSQL >= 15 (or ``$PG_BINDIR``).

    ``PG_BINDIR`` points the stack and the tests at another installation, e.g. one
    with TimescaleDB built in (docs/schema.md, "Trying the TimescaleDB path").
    """
    override = os.environ.get("PG_BINDIR")
    if override:
        return Path(override)
    candidates = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        m = re.search(r"/postgresql/(\d+)/bin$", d)
        if m and int(m.group(1)) >= 15 and os.access(Path(d) / "postgres", os.X_OK):
            candidates.append((int(m.group(1)), Path(d)))
    if not candidates:
        raise FileNotFoundError("PostgreSQL >= 15 not found: run `make system-deps`")
    return max(candidates)[1]


def preload_settings() -> dict[str, str]:
    """Preload TimescaleDB when the installation has it; the schema then uses it."""
    pkglibdir = subprocess.run(
        [str(pg_bindir() / "pg_config"), "--pkglibdir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if (Path(pkglibdir) / "timescaledb.so").exists():
        return {"shared_preload_libraries": "timescaledb", "timescaledb.telemetry_level": "off"}
    return {}


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in ``run_dir`` listening on 127.0.0.1:``port``."""

    run_dir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    settings: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "postgres.log"

    @property
    def dsn(self) -> str:
        """The schema owner's (migrations, tests): a superuser of this cluster."""
        return self.dsn_as(USER)

    def dsn_as(self, role: str, database: str = DATABASE) -> str:
        """A login as ``role`` (the services' own roles: 0007_service_roles.sql)."""
        return f"postgresql://{role}@{self.host}:{self.port}/{database}"

    def _as_owner(self) -> dict[str, Any]:
        """Popen arguments that drop root to the postgres account (exec'd directly)."""
        if is_root():
            if account("postgres") is None:
                raise RuntimeError("running as root needs the 'postgres' account (Debian package)")
            return {"user": "postgres", "group": "postgres", "extra_groups": []}
        return {}

    def _chown(self, path: Path) -> None:
        acct = account("postgres")
        if is_root() and acct is not None:
            os.chown(path, acct.pw_uid, acct.pw_gid)

    def init(self) -> bool:
        """Create the cluster and the database if missing; True if it was created."""
        shared_dir(self.run_dir)
        if (self.data_dir / "PG_VERSION").exists():
            return False
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._chown(self.data_dir)
        subprocess.run(
            [
                str(pg_bindir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.run_dir,
            **self._as_owner(),
        )
        return True

    def start(self, timeout: float = 30.0) -> None:
        created = self.init()
        log = self.log_path.open("ab")
        self._chown(self.log_path)
        opts = {
            **preload_settings(),
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.data_dir),
            "max_connections": "100",
            **self.settings,
        }
        args = [x for k, v in opts.items() for x in ("-c", f"{k}={v}")]
        self.proc = subprocess.Popen(
            [str(pg_bindir() / "postgres"), "-D", str(self.data_dir), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.run_dir,
            **self._as_owner(),
        )
        log.close()
        wait_port(self.host, self.port, self.proc, self.log_path, timeout)
        self._wait_accepting(timeout)
        if created:
            subprocess.run(
                [
                    str(pg_bindir() / "createdb"),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-U",
                    USER,
                    DATABASE,
                ],
                check=True,
            )

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run(
                [str(pg_bindir() / "pg_isready"), "-h", self.host, "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"PostgreSQL not ready:\n{tail(self.log_path)}")

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT): rolls back open transactions, writes a checkpoint."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend (a crash); the next start recovers."""
        if self.proc is not None:
            kill_group(self.proc)
        self.proc = None
