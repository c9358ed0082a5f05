"""``chargelift-ocpp`` — ``run`` (default): the OCPP 1.6J gateway; ``register``: add a
charge point to the registry and print what to enter in its web UI."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from chargelift_ocpp.config import MqttSettings, Settings
from chargelift_ocpp.registration import RegistrationError, instructions, register
from chargelift_ocpp.service import OcppService, StartupError
from chargelift_runtime.logs import configure_logging
from chargelift_runtime.service import run_until_signal, settings_failed
from chargelift_runtime.settings import SettingsError, load_settings

PROG = "chargelift-ocpp"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    sub = p.add_subparsers(dest="cmd")
    sub.add_parser("run", help="run the gateway (the default)")
    r = sub.add_parser("register", help="register a charge point, print its settings")
    r.add_argument("id", help="the charge point id (its OCPP identity)")
    r.add_argument(
        "--profile",
        type=int,
        choices=[1, 2, 3],
        default=2,
        help="2: TLS + password (default); 3: TLS + client certificate; "
        "1: password over plain ws:// (LAN, needs OCPP_ALLOW_PLAIN)",
    )
    r.add_argument(
        "--charger",
        action="append",
        default=[],
        metavar="ID",
        help="(repeat) a charger id it may report for; none: every connector",
    )
    r.add_argument(
        "--registry",
        default=os.environ.get("OCPP_CHARGE_POINTS"),
        help="the registry file (default: $OCPP_CHARGE_POINTS)",
    )
    r.add_argument(
        "--certs-dir", help="the chargelift-certs directory (profile 3: issues the certificate)"
    )
    r.add_argument(
        "--url",
        default=f"wss://{socket.gethostname()}:9000/ocpp",
        help="the gateway's URL as the charger reaches it (default: wss://<this host>:9000/ocpp)",
    )
    r.add_argument(
        "--ca-file",
        default=os.environ.get("OCPP_CA_FILE"),
        help="the CA certificate the charger must trust (default: $OCPP_CA_FILE)",
    )
    r.add_argument(
        "--password-file",
        type=Path,
        help="profiles 1/2: take the password from this file's first line (at least 16 "
        "bytes) instead of making one",
    )
    r.add_argument("--force", action="store_true", help="replace an entry: a new secret")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: ``chargelift-ocpp [run|register ...]``."""
    args = parser().parse_args(argv)
    if args.cmd == "register":
        return _register(args)
    try:
        settings, mqtt = load_settings(Settings, MqttSettings)
    except SettingsError as exc:
        return settings_failed(PROG, exc)
    configure_logging(settings.log_level, [])
    try:
        run_until_signal(OcppService(settings, mqtt))
    except StartupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    return 0


def _register(args: argparse.Namespace) -> int:
    if not args.registry:
        print(f"{PROG}: give --registry or set OCPP_CHARGE_POINTS", file=sys.stderr)
        return 2
    certs_dir = Path(args.certs_dir) if args.certs_dir else None
    try:
        password = (
            None
            if args.password_file is None
            else args.password_file.read_text().splitlines()[0].strip()
        )
        done = register(
            Path(args.registry),
            args.id,
            profile=args.profile,
            chargers=tuple(args.charger),
            certs_dir=certs_dir,
            force=args.force,
            password=password,
        )
    except (RegistrationError, OSError, IndexError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    ca = args.ca_file or (str(certs_dir / "ca.crt") if certs_dir else "the CA of OCPP_TLS_CERT")
    print(instructions(done, url=args.url, ca_file=ca))
    return 0


if __name__ == "__main__":
    sys.exit(main())
