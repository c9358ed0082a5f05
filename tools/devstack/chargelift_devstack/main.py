"""``chargelift-devstack up`` — the whole native stack with simulated chargers (``make dev``).

Starts, in order: Mosquitto (mutual TLS, :8883), PostgreSQL (:5433), the schema
migration (one-shot), ingest, the charger simulator, the edge poller and the API, all
as local processes on loopback, with their state under ``.dev/``. Writes what a
client needs to ``.dev/dev.env`` (shell-sourceable ``KEY=value``) and prints it.
As root, Mosquitto and PostgreSQL drop to their own accounts; when those cannot reach
``.dev/`` (a clone under /root), the two servers keep their files in
/var/lib/chargelift-devstack/<hash of .dev's path>/ instead (``procs.server_home``).
Ctrl-C (or ``chargelift-devstack down`` / ``make dev-down`` from another terminal)
stops everything it started, in reverse order.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from chargelift_devstack.mosquitto import REPO, MosquittoServer
from chargelift_devstack.postgres import PostgresServer
from chargelift_devstack.procs import kill_group, server_home, shared_dir, tail

DEV_DIR = REPO / ".dev"
PID_FILE = DEV_DIR / "devstack.pid"
SERVER_ACCOUNTS = ("mosquitto", "postgres")  # the accounts the servers drop root to
#: The simulated OCPP charge points are <prefix>1..N; the spare one is for a real charger
#: (or another OCPP client) to connect at once; the gateway publishes as OCPP_EDGE.
OCPP_PREFIX = "ocpp-sim-"
OCPP_SPARE = "ocpp-spare"
OCPP_EDGE = "ocpp-gateway"
#: ``--modbus`` (``make dev DEV_MODBUS=1``): a mixed site. These simulated chargers (1-based
#: number -> driver) also serve that Modbus TCP map, and the poller reads them through it
#: (the same physical model, so the API shows them like the others); the rest stay MHCP.
MODBUS_CHARGERS = {2: "hcc3", 3: "bender"}
#: The simulator's map index (``--modbus-base-port``: charger i, map k on base + 2i + k).
MODBUS_MAP_INDEX = {"hcc3": 0, "bender": 1}


@dataclass(frozen=True)
class Ports:
    mqtt: int = 8883
    postgres: int = 5433
    api: int = 8000
    simulator: int = 25000
    simulator_control: int = 25099
    poller_metrics: int = 9101
    ingest_metrics: int = 9102
    ocpp: int = 9000
    ocpp_metrics: int = 9103
    bridge_metrics: int = 9104
    #: The simulator's Modbus servers: charger i (from 0), map k on modbus + 2i + k.
    modbus: int = 25200


@dataclass
class Service:
    """A long-running service of ours, started as a child process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}; log {self.log}:\n{tail(self.log)}"
            )

    def kill(self) -> None:
        """SIGKILL the service and anything it started."""
        if self.proc is not None:
            kill_group(self.proc)

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Stack:
    """The native stack. ``make dev`` runs it in ``.dev/``; the chaos soak in a scratch dir."""

    certs_dir: Path
    chargers: int
    speed: float
    run_dir: Path = DEV_DIR
    ports: Ports = field(default_factory=Ports)
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # extra env per service
    pg_settings: dict[str, str] = field(default_factory=dict)
    seed: int = 1
    simulator_args: list[str] = field(default_factory=list)
    #: Simulated OCPP charge points (0: no OCPP gateway either).
    ocpp_charge_points: int = 0
    ocpp_simulator_args: list[str] = field(default_factory=list)
    #: A mixed site: charger 2 read over Modbus as an HCC3, charger 3 as a Bender
    #: (``MODBUS_CHARGERS``; those that exist).
    modbus: bool = False
    services: list[Service] = field(default_factory=list)
    env_values: dict[str, str] = field(default_factory=dict)  # what up() wrote to dev.env
    broker: MosquittoServer | None = None
    postgres: PostgresServer | None = None

    def bin(self, name: str) -> str:
        path = Path(sys.executable).parent / name
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: run `make venv`")
        return str(path)

    def secret(self, name: str, nbytes: int = 16) -> str:
        """A development secret, made once and kept in .dev/ (mode 0600)."""
        path = self.run_dir / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(nbytes))
        return path.read_text().strip()

    def charger_ids(self) -> list[str]:
        return [f"amtron-{i}" for i in range(1, self.chargers + 1)]

    def ensure_charger_certs(self) -> None:
        missing = [
            c for c in self.charger_ids() if not (self.certs_dir / "clients" / f"{c}.crt").exists()
        ]
        for charger in missing:
            subprocess.run(
                [self.bin("chargelift-certs"), "--dir", str(self.certs_dir), "client", charger],
                check=True,
            )
        # The Home Assistant bridge's identity, and Home Assistant's (it may command the
        # simulated chargers): docs/integrations/home-assistant.md.
        chargers = [a for c in self.charger_ids() for a in ("--charger", c)]
        for identity, extra in (
            ("bridge", ["--role", "bridge"]),
            ("homeassistant", ["--role", "homeassistant", *chargers]),
        ):
            if not (self.certs_dir / "clients" / f"{identity}.crt").exists():
                subprocess.run(
                    [self.bin("chargelift-certs"), "--dir", str(self.certs_dir), "client",
                     identity, *extra],
                    check=True,
                )  # fmt: skip

    def ocpp_ids(self) -> list[str]:
        """The simulated OCPP charge points (each one connector: charger id = its id)."""
        return [f"{OCPP_PREFIX}{i}" for i in range(1, self.ocpp_charge_points + 1)]

    def ocpp_setup(self) -> dict[str, str]:
        """Register the simulated charge points and the spare one (profile 2, passwords
        kept in .dev/), and issue the gateway's edge certificate listing their chargers.
        Returns the gateway's environment."""
        state = shared_dir(self.run_dir / "ocpp")
        registry = state / "charge_points.toml"
        register = [self.bin("chargelift-ocpp"), "register", "--registry", str(registry)]
        self.secret("ocpp-sim-password", 24)
        self.secret("ocpp-spare-password", 24)
        for cp, secret in [(c, "ocpp-sim-password") for c in self.ocpp_ids()] + [
            (OCPP_SPARE, "ocpp-spare-password")
        ]:
            subprocess.run(
                [*register, cp, "--password-file", str(self.run_dir / secret), "--force"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        chargers = [a for c in [*self.ocpp_ids(), OCPP_SPARE] for a in ("--charger", c)]
        subprocess.run(
            [self.bin("chargelift-certs"), "--dir", str(self.certs_dir), "client",
             OCPP_EDGE, "--role", "edge", *chargers, "--force"],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        certs = self.certs_dir.resolve()
        return {
            "OCPP_CHARGE_POINTS": str(registry),
            "OCPP_STATE_DIR": str(state),
            "OCPP_HOST": "127.0.0.1",
            "OCPP_PORT": str(self.ports.ocpp),
            # the broker's server certificate names 127.0.0.1 and localhost
            "OCPP_TLS_CERT": str(certs / "broker.crt"),
            "OCPP_TLS_KEY": str(certs / "broker.key"),
            "OCPP_CA_FILE": str(certs / "ca.crt"),
            "OCPP_CRL_FILE": str(certs / "crl.pem"),
            "OCPP_METRICS_PORT": str(self.ports.ocpp_metrics),
            "MQTT_IDENTITY": OCPP_EDGE,
        }

    def modbus_drivers(self) -> dict[str, str]:
        """Charger id -> Modbus driver of the chargers read over Modbus (empty: all MHCP)."""
        if not self.modbus:
            return {}
        return {
            f"amtron-{n}": driver for n, driver in MODBUS_CHARGERS.items() if n <= self.chargers
        }

    def modbus_port(self, charger: str) -> int:
        """The simulator's port of ``charger``'s Modbus map (``--modbus-base-port`` rule)."""
        i = self.charger_ids().index(charger)
        return self.ports.modbus + 2 * i + MODBUS_MAP_INDEX[self.modbus_drivers()[charger]]

    def modbus_simulator_args(self) -> list[str]:
        drivers = self.modbus_drivers()
        if not drivers:
            return []
        per = [a for c, d in drivers.items() for a in ("--modbus-for", f"{c}={d}")]
        return [*per, "--modbus-base-port", str(self.ports.modbus)]

    def poller_config(self, pin_env: str) -> Path:
        lines = ["# Written by chargelift-devstack: the simulated chargers of `make dev`.", ""]
        modbus = self.modbus_drivers()
        for i, charger in enumerate(self.charger_ids()):
            lines += ["[[chargers]]", f'id = "{charger}"']
            if charger in modbus:
                lines += [
                    f'driver = "{modbus[charger]}"',
                    f'url = "tcp://127.0.0.1:{self.modbus_port(charger)}"',
                ]
                if modbus[charger] == "bender":
                    # the Bender map does not tell the box's maximum: the simulator's
                    lines.append("max_current = 16.0")
            else:
                lines += [
                    'driver = "mhcp"',
                    f'url = "http://127.0.0.1:{self.ports.simulator + i}"',
                    f'pin_env = "{pin_env}"',
                ]
            lines += ["interval = 1.0", ""]
        path = self.run_dir / "poller.toml"
        path.write_text("\n".join(lines))
        return path

    def up(self) -> dict[str, str]:
        shared_dir(self.run_dir)
        logs = shared_dir(self.run_dir / "logs")
        self.ensure_charger_certs()
        ocpp_env = self.ocpp_setup() if self.ocpp_charge_points else None
        servers = server_home(self.run_dir, SERVER_ACCOUNTS)
        if servers != self.run_dir:
            print(
                f"the mosquitto and postgres accounts cannot reach {self.run_dir}: "
                f"the servers' files are in {servers}",
                flush=True,
            )
        self.broker = MosquittoServer(
            certs_dir=self.certs_dir.resolve(),
            run_dir=servers / "mosquitto",
            port=self.ports.mqtt,
        )
        self.broker.start()
        self.postgres = PostgresServer(
            run_dir=servers / "postgres", port=self.ports.postgres, settings=self.pg_settings
        )
        self.postgres.start()

        pin = self.secret("charger-pin", 6)
        api_token = self.secret("api-token", 24)
        token_hash = hashlib.sha256(api_token.encode()).hexdigest()
        # read + send commands to the chargers (the API publishes them as identity api)
        control_token = self.secret("api-control-token", 24)
        control_hash = hashlib.sha256(control_token.encode()).hexdigest()
        certs = self.certs_dir.resolve()
        common = {
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(self.ports.mqtt),
            "MQTT_CA_FILE": str(certs / "ca.crt"),
            "MQTT_CERTS_DIR": str(certs),
            "DATABASE_URL": self.postgres.dsn,
        }
        subprocess.run(
            [self.bin("chargelift-ingest"), "migrate"], env={**os.environ, **common}, check=True
        )
        specs = [
            (
                "ingest",
                [self.bin("chargelift-ingest"), "run"],
                {
                    "INGEST_METRICS_PORT": str(self.ports.ingest_metrics),
                    # least privilege: writes data, no DDL, not a superuser
                    "DATABASE_URL": self.postgres.dsn_as("chargelift_ingest"),
                },
            ),
            (
                "simulator",
                [
                    self.bin("chargelift-simulator"),
                    "--count",
                    str(self.chargers),
                    "--base-port",
                    str(self.ports.simulator),
                    "--control-port",
                    str(self.ports.simulator_control),
                    "--speed",
                    str(self.speed),
                    "--seed",
                    str(self.seed),
                    "--truth-log",
                    str(self.run_dir / "truth.jsonl"),
                    *self.modbus_simulator_args(),
                    *self.simulator_args,
                ],
                {"SIMULATOR_PIN": pin},
            ),
            (
                "poller",
                [self.bin("chargelift-poller")],
                {
                    "POLLER_CONFIG": str(self.poller_config("AMTRON_PIN")),
                    "POLLER_OUTBOX": str(self.run_dir / "outbox.sqlite"),
                    "POLLER_METRICS_PORT": str(self.ports.poller_metrics),
                    "AMTRON_PIN": pin,
                },
            ),
            (
                "api",
                [self.bin("chargelift-api")],
                {
                    "API_PORT": str(self.ports.api),
                    "API_HOST": "127.0.0.1",
                    # reads, and inserts the commands it accepts (nothing else)
                    "DATABASE_URL": self.postgres.dsn_as("chargelift_api"),
                    "API_TOKENS": f"dev:read:{token_hash},dev-control:control:{control_hash}",
                    # the broker from `common`, as the API's own identity (a controller)
                    "MQTT_IDENTITY": "api",
                },
            ),
            (
                "bridge",
                [self.bin("chargelift-bridge")],
                {
                    # Home Assistant and evcc: chargelift/ha/# and the discovery documents
                    "BRIDGE_METRICS_PORT": str(self.ports.bridge_metrics),
                    "BRIDGE_CONTROL": "true",
                    "MQTT_IDENTITY": "bridge",
                },
            ),
        ]
        ocpp_url = f"wss://127.0.0.1:{self.ports.ocpp}/ocpp"
        if ocpp_env is not None:
            specs += [
                ("ocpp", [self.bin("chargelift-ocpp")], ocpp_env),
                (
                    "simulator-ocpp",
                    [
                        self.bin("chargelift-simulator-ocpp"),
                        "--url", ocpp_url,
                        "--count", str(self.ocpp_charge_points),
                        "--prefix", OCPP_PREFIX,
                        "--password-file", str(self.run_dir / "ocpp-sim-password"),
                        "--ca-file", str(certs / "ca.crt"),
                        "--speed", str(self.speed),
                        "--seed", str(self.seed),
                        *self.ocpp_simulator_args,
                    ],
                    {},
                ),
            ]  # fmt: skip
        for name, argv, env in specs:
            svc = Service(
                name, argv, {**common, **env, **self.env.get(name, {})}, logs / f"{name}.log"
            )
            svc.start()
            self.services.append(svc)
        time.sleep(1.0)
        for svc in self.services:
            svc.check()
        if ocpp_env is not None:
            self.wait_listening("ocpp", self.ports.ocpp)
        self.env_values = {
            **common,
            "API_URL": f"http://127.0.0.1:{self.ports.api}",
            "API_TOKEN": api_token,
            "API_CONTROL_TOKEN": control_token,
            "SIMULATOR_CONTROL_URL": f"http://127.0.0.1:{self.ports.simulator_control}",
            "POLLER_METRICS_URL": f"http://127.0.0.1:{self.ports.poller_metrics}/metrics",
            "INGEST_METRICS_URL": f"http://127.0.0.1:{self.ports.ingest_metrics}/metrics",
            "BRIDGE_METRICS_URL": f"http://127.0.0.1:{self.ports.bridge_metrics}/metrics",
        }
        if ocpp_env is not None:
            self.env_values |= {
                # what a real charger (or any OCPP 1.6J client) needs to connect: the URL
                # (it appends /<id>), the CA to trust, the spare charge point's id and
                # password (security profile 2)
                "OCPP_URL": ocpp_url,
                "OCPP_CA_FILE": str(certs / "ca.crt"),
                "OCPP_CHARGE_POINT_ID": OCPP_SPARE,
                "OCPP_PASSWORD": self.secret("ocpp-spare-password", 24),
                "OCPP_METRICS_URL": f"http://127.0.0.1:{self.ports.ocpp_metrics}/metrics",
            }
        return self.env_values

    def wait_listening(self, name: str, port: int, timeout: float = 30.0) -> None:
        """Wait until service ``name`` accepts connections on 127.0.0.1:``port``."""
        deadline = time.monotonic() + timeout
        while True:
            self.service(name).check()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} does not listen on port {port}") from None
                time.sleep(0.2)
            else:
                return

    def service(self, name: str) -> Service:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    def down(self) -> None:
        for svc in reversed(self.services):
            svc.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.broker is not None:
            self.broker.stop()


def write_env(values: dict[str, str]) -> Path:
    path = DEV_DIR / "dev.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# chargelift dev stack — source it: `set -a; . .dev/dev.env; set +a`\n")
        f.writelines(f"{k}={v}\n" for k, v in values.items())
    return path


class _Stop(Exception):  # noqa: N818 - a signal, not an error
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def cmd_up(args: argparse.Namespace) -> int:
    if PID_FILE.exists():
        try:
            os.kill(int(PID_FILE.read_text()), 0)
        except (OSError, ValueError):
            PID_FILE.unlink()
        else:
            print("a dev stack is already running (make dev-down stops it)", file=sys.stderr)
            return 1
    stack = Stack(
        certs_dir=Path(args.certs_dir),
        chargers=args.chargers,
        speed=args.speed,
        ocpp_charge_points=args.ocpp,
        modbus=args.modbus,
    )
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        env = stack.up()
        PID_FILE.write_text(str(os.getpid()))
        path = write_env(env)
        print(f"chargelift dev stack is up; {path}:")
        for k, v in env.items():
            print(f"  {k}={v}")
        print("logs in .dev/logs/; Ctrl-C or `make dev-down` stops everything.", flush=True)
        while True:
            time.sleep(1)
            for svc in stack.services:
                svc.check()
            # A new certificate (ACL) or a revocation (CRL) takes effect on its own.
            if stack.broker is not None and (done := stack.broker.refresh()):
                print(f"certificate files changed: broker {done}", flush=True)
    except _Stop:
        print("stopping...", flush=True)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.down()
        PID_FILE.unlink(missing_ok=True)
    return 0


def cmd_down(_args: argparse.Namespace) -> int:
    try:
        pid = int(PID_FILE.read_text())
    except (OSError, ValueError):
        print("no dev stack is running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            print("dev stack stopped")
            return 0
        time.sleep(0.2)
    print("dev stack did not stop within 60 s", file=sys.stderr)
    return 1


def cmd_reset(_args: argparse.Namespace) -> int:
    """Forget all dev state (database, broker persistence, outbox), keep the certificates."""
    if PID_FILE.exists():
        print("stop the stack first (make dev-down)", file=sys.stderr)
        return 1
    servers = server_home(DEV_DIR, SERVER_ACCOUNTS)
    if servers != DEV_DIR:
        shutil.rmtree(servers, ignore_errors=True)
    shutil.rmtree(DEV_DIR, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chargelift-devstack", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the stack in the foreground")
    up.add_argument("--certs-dir", default=str(REPO / "certs"))
    up.add_argument("--chargers", type=int, default=3)
    up.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    up.add_argument(
        "--ocpp", type=int, default=1, help="simulated OCPP charge points (0: no OCPP gateway)"
    )
    up.add_argument(
        "--modbus",
        action="store_true",
        help="a mixed site: charger 2 read over Modbus TCP as an HCC3, charger 3 as a Bender",
    )
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop a running stack").set_defaults(func=cmd_down)
    sub.add_parser("reset", help="delete .dev/ (not the certificates)").set_defaults(func=cmd_reset)
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
