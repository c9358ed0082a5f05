"""Run Mosquitto with the one broker configuration of the repository.

``mosquitto/mosquitto.conf.template`` is rendered with the paths and the port of
this run; the policy (mutual TLS, ACL, queues, persistence) is not touched.

Started as root, Mosquitto drops to the ``mosquitto`` account before it reads its key,
ACL and CRL, so it reads copies in ``run_dir/tls`` (never the CA key) rather than the
certificate directory, which that account may not reach (a clone under /root) and
whose files stay as ``chargelift-certs`` wrote them. ``reload()`` copies what changed
and sends SIGHUP. ``refresh()``, which the dev stack calls every second, does the same
for a new ACL and *restarts* the broker for a new CRL (a revocation): TLS is checked
only at the handshake, so a restart is what closes the revoked identity's open
connections (everybody else reconnects; persistence keeps sessions and retained values).
"""

from __future__ import annotations

import filecmp
import os
import pwd
import shutil
import signal
import string
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from chargelift_devstack.procs import (
    account,
    current_user,
    find_binary,
    free_port,
    is_root,
    kill_group,
    shared_dir,
    wait_port,
)

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "mosquitto" / "mosquitto.conf.template"
# What the broker reads from the certificate directory (the template's ${CERTS_DIR}).
BROKER_FILES = ("ca.crt", "broker.crt", "broker.key", "crl.pem", "mosquitto.acl")


def render_config(
    *, certs_dir: Path, data_dir: Path, port: int, bind: str = "127.0.0.1", run_user: str
) -> str:
    """The broker configuration for these paths (every ${...} must be known)."""
    template = string.Template(TEMPLATE.read_text())
    return template.substitute(
        CERTS_DIR=str(certs_dir),
        DATA_DIR=str(data_dir),
        PORT=str(port),
        BIND=bind,
        RUN_USER=run_user,
    )


COMPOSE_CONFIG = REPO / "mosquitto" / "compose.conf"


def render_compose_config() -> str:
    """mosquitto/compose.conf: the template for the container's paths, all addresses."""
    text = render_config(
        certs_dir=Path("/mosquitto/certs"),
        data_dir=Path("/mosquitto/data"),
        port=8883,
        bind="",
        run_user="mosquitto",
    ).replace("listener 8883 \n", "listener 8883\n")
    return (
        "# GENERATED from mosquitto.conf.template for the compose stack (docker-compose.yml\n"
        "# mounts it): `make mosquitto-compose-conf` rewrites it; never edit it by hand\n"
        "# (tests/unit/test_compose_files.py fails when it drifts from the template).\n\n" + text
    )


@dataclass
class MosquittoServer:
    """A Mosquitto process on 127.0.0.1 using ``certs_dir`` (layout of chargelift-certs)."""

    certs_dir: Path
    run_dir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.run_dir / "mosquitto.log"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def tls_dir(self) -> Path:
        """The broker's copies of ``BROKER_FILES`` (its ${CERTS_DIR})."""
        return self.run_dir / "tls"

    def _account(self) -> pwd.struct_passwd | None:
        """The account Mosquitto drops to when started as root (None: it keeps ours)."""
        return account("mosquitto") if is_root() else None

    def sync_files(self) -> set[str]:
        """Copy the broker's files that changed in ``certs_dir``; their names."""
        shared_dir(self.tls_dir)
        acct = self._account()
        changed: set[str] = set()
        for name in BROKER_FILES:
            src, dst = self.certs_dir / name, self.tls_dir / name
            if not src.exists() or (dst.exists() and filecmp.cmp(src, dst, shallow=False)):
                continue
            tmp = dst.with_name(f".{name}.tmp")
            tmp.unlink(missing_ok=True)
            shutil.copyfile(src, tmp)
            tmp.chmod(0o600 if name.endswith(".key") else 0o644)
            if acct is not None:
                os.chown(tmp, acct.pw_uid, acct.pw_gid)
            tmp.replace(dst)
            changed.add(name)
        return changed

    def _prepare(self) -> Path:
        shared_dir(self.run_dir)
        shared_dir(self.data_dir)
        self.sync_files()
        run_user = current_user()
        if is_root():
            # Mosquitto started as root drops to this account *before* it reads the
            # key, so the account must own the key and the persistence directory.
            acct = self._account()
            if acct is not None:
                run_user = acct.pw_name
                os.chown(self.data_dir, acct.pw_uid, acct.pw_gid)
                for f in self.data_dir.iterdir():
                    os.chown(f, acct.pw_uid, acct.pw_gid)
            else:
                run_user = "root"
        conf = self.run_dir / "mosquitto.conf"
        conf.write_text(
            render_config(
                certs_dir=self.tls_dir,
                data_dir=self.data_dir,
                port=self.port,
                bind=self.host,
                run_user=run_user,
            )
        )
        return conf

    def start(self, timeout: float = 15.0) -> None:
        conf = self._prepare()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [find_binary("mosquitto"), "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        wait_port(self.host, self.port, self.proc, self.log_path, timeout)

    def reload(self) -> None:
        """Copy the changed files, then SIGHUP: Mosquitto re-reads the ACL file and the CRL."""
        self.sync_files()
        self._signal(signal.SIGHUP)

    def refresh(self) -> str | None:
        """Apply what changed in ``certs_dir``: ``"restarted"`` for a new CRL (a
        revocation: the restart closes the revoked identity's connections),
        ``"reloaded"`` (SIGHUP) for other files, None when nothing changed."""
        changed = self.sync_files()
        if not changed:
            return None
        if "crl.pem" in changed and self.proc is not None:
            self.restart()
            return "restarted"
        self._signal(signal.SIGHUP)
        return "reloaded"

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown (SIGTERM): Mosquitto writes its persistence file."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no chance to save anything."""
        if self.proc is not None:
            kill_group(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        time.sleep(0.1)
        self.start()

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("mosquitto is not running")
        self.proc.send_signal(sig)
