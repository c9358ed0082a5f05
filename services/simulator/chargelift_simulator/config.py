"""Command-line configuration of ``chargelift-simulator``, turned into a FleetConfig.

Built in ``main()``, never at import time. The PIN comes from ``--pin``, ``--pin-file`` or
the environment variable ``SIMULATOR_PIN`` (in that order); there is no default, and the
PIN never appears in a log line or an error message. A PIN file holds either one PIN
(first non-empty line) for all chargers, or one ``<charger id>=<PIN>`` line per charger
(``#`` starts a comment line).

The simulator is a development tool configured on its command line: this is argparse
and a frozen dataclass rather than the pydantic-settings class the services use (the
simulator takes only the service lifecycle and logging from chargelift-runtime).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from chargelift_simulator.fleet import FleetConfig
from chargelift_simulator.modbus import MAPS

ENV_PIN = "SIMULATOR_PIN"


@dataclass(frozen=True, slots=True)
class CliSettings:
    """Everything ``main()`` needs."""

    fleet: FleetConfig
    log_level: str


def read_pin_file(path: Path) -> str | dict[str, str]:
    """One PIN, or a mapping charger id → PIN (see the module docstring)."""
    lines = [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise ValueError(f"PIN file {path} is empty")
    if all("=" in line for line in lines):
        pins: dict[str, str] = {}
        for line in lines:
            charger, _, pin = line.partition("=")
            pins[charger.strip()] = pin.strip()
        return pins
    return lines[0]


def _start(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chargelift-simulator",
        description="Simulated Mennekes AMTRON Xtra/Premium chargers speaking MHCP, "
        "one TCP port each.",
    )
    p.add_argument("--count", type=int, default=3, help="number of chargers (default 3)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve MHCP on")
    p.add_argument(
        "--base-port", type=int, default=25000, help="port of the first charger; 0 = free ports"
    )
    p.add_argument("--prefix", default="amtron-", help="charger ids are <prefix>1..N")
    p.add_argument("--control-port", type=int, default=None, help="control endpoint port")
    p.add_argument("--control-host", default="127.0.0.1", help="control endpoint address")
    pins = p.add_mutually_exclusive_group()
    pins.add_argument("--pin", help=f"one PIN (DevKey) for all chargers (or ${ENV_PIN})")
    pins.add_argument("--pin-file", type=Path, help="file with a PIN or <id>=<PIN> lines")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)"
    )
    p.add_argument("--start", type=_start, help="simulated start time, ISO 8601 (default: now)")
    p.add_argument("--tz", default="Europe/Berlin", help="the chargers' time zone")
    p.add_argument("--tick-hz", type=float, default=10.0, help="simulation updates per second")
    p.add_argument("--phases", type=int, default=3, choices=(1, 2, 3))
    p.add_argument("--max-current", type=int, default=16, help="MaxCurrWb in A (default 16)")
    p.add_argument("--truth-log", type=Path, help="append the ground-truth JSONL here")
    p.add_argument(
        "--no-random-traffic",
        dest="random_traffic",
        action="store_false",
        help="cars come and go only through the control endpoint (plug/unplug)",
    )
    p.add_argument(
        "--modbus",
        type=_maps,
        default=(),
        metavar="MAPS",
        help="Modbus TCP maps every charger also serves: hcc3, bender or hcc3,bender",
    )
    p.add_argument(
        "--modbus-for",
        action="append",
        default=[],
        metavar="ID=MAPS",
        help="Modbus TCP maps of one charger (repeatable; replaces --modbus for it)",
    )
    p.add_argument(
        "--modbus-base-port",
        type=int,
        default=25200,
        help="charger i, map k (0 hcc3, 1 bender) serves on base + 2i + k; 0 = free ports",
    )
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def _maps(value: str) -> tuple[str, ...]:
    maps = tuple(m.strip() for m in value.split(",") if m.strip())
    unknown = set(maps) - set(MAPS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown Modbus map(s) {sorted(unknown)}; known: {', '.join(MAPS)}"
        )
    return maps


def _modbus(
    parser: argparse.ArgumentParser, args: argparse.Namespace, ids: list[str]
) -> tuple[str, ...] | dict[str, tuple[str, ...]]:
    if not args.modbus_for:
        return tuple(args.modbus)
    per: dict[str, tuple[str, ...]] = dict.fromkeys(ids, tuple(args.modbus))
    for item in args.modbus_for:
        charger_id, sep, maps = item.partition("=")
        if not sep or charger_id not in per:
            parser.error(f"--modbus-for {item!r}: expected ID=MAPS with ID one of the chargers")
        try:
            per[charger_id] = _maps(maps)
        except argparse.ArgumentTypeError as e:
            parser.error(f"--modbus-for {item!r}: {e}")
    return per


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str]) -> CliSettings:
    """Arguments and environment → settings; exits with a clear message when invalid."""
    parser = build_parser()
    args = parser.parse_args(argv)
    pin: str | dict[str, str]
    if args.pin is not None:
        pin = args.pin
    elif args.pin_file is not None:
        try:
            pin = read_pin_file(args.pin_file)
        except OSError as e:
            parser.error(f"cannot read the PIN file {args.pin_file}: {e.strerror}")
        except UnicodeDecodeError:
            parser.error(f"the PIN file {args.pin_file} is not UTF-8 text")
        except ValueError as e:
            parser.error(str(e))
    elif environ.get(ENV_PIN):
        pin = environ[ENV_PIN]
    else:
        parser.error(f"no PIN: give --pin, --pin-file or set {ENV_PIN}")
    ids = [f"{args.prefix}{i}" for i in range(1, args.count + 1)]
    modbus = _modbus(parser, args, ids)
    try:
        fleet = FleetConfig(
            count=args.count,
            base_port=args.base_port,
            host=args.host,
            pin=pin,
            seed=args.seed,
            speed=args.speed,
            start=args.start,
            truth_log=args.truth_log,
            prefix=args.prefix,
            control_port=args.control_port,
            control_host=args.control_host,
            tick_hz=args.tick_hz,
            tz=args.tz,
            phases=args.phases,
            max_current=args.max_current,
            random_traffic=args.random_traffic,
            modbus=modbus,
            modbus_base_port=args.modbus_base_port if modbus else 0,
            # Nobody in this process reads the in-memory truth: the JSONL file is it.
            truth_memory=0,
        )
    except ValueError as e:
        parser.error(str(e))
    return CliSettings(fleet=fleet, log_level=args.log_level)
