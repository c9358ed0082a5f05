"""Command line of ``chargelift-simulator-ocpp``, turned into an :class:`OcppFleetConfig`.

Built in ``main()``, never at import time. The HTTP Basic password (security profiles 1
and 2) comes from ``--password`` or ``--password-file`` (one password for all charge
points, or ``<charge point id>=<password>`` lines, ``#`` comments); profile 3 gives a client
certificate instead (``--cert-file``, ``--key-file``). A password never appears in a log
line or an error message. Like ``chargelift-simulator`` (:mod:`.config`), argparse and a
frozen dataclass: the simulator is a development tool configured on its command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chargelift_simulator.config import _start, read_pin_file
from chargelift_simulator.ocpp_cp import OcppFaults
from chargelift_simulator.ocpp_fleet import OcppFleetConfig


@dataclass(frozen=True, slots=True)
class OcppCliSettings:
    """Everything ``main()`` needs."""

    fleet: OcppFleetConfig
    log_level: str


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chargelift-simulator-ocpp",
        description="Simulated OCPP 1.6J charge points (one connector each) that connect to "
        "a central system at <url>/<charge point id>.",
    )
    p.add_argument("--url", required=True, help="ws:// or wss:// prefix; the id is appended")
    p.add_argument("--id", help="one charge point with this id (instead of --count/--prefix)")
    p.add_argument("--count", type=int, default=1, help="number of charge points (default 1)")
    p.add_argument("--prefix", default="ocpp-sim-", help="ids are <prefix>1..N")
    pw = p.add_mutually_exclusive_group()
    pw.add_argument("--password", help="HTTP Basic password for all charge points")
    pw.add_argument("--password-file", type=Path, help="file with a password or <id>=<pw> lines")
    p.add_argument("--ca-file", help="CA of the central system's certificate (wss://)")
    p.add_argument("--cert-file", help="client certificate (security profile 3)")
    p.add_argument("--key-file", help="its private key")
    p.add_argument(
        "--interval", type=float, default=10.0, help="MeterValues every S simulated s (10)"
    )
    p.add_argument("--id-tag", help="id tag of every transaction (default: one per charge point)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)"
    )
    p.add_argument("--start", type=_start, help="simulated start time, ISO 8601 (default: now)")
    p.add_argument("--tz", default="Europe/Berlin", help="the charge points' time zone")
    p.add_argument("--tick-hz", type=float, default=10.0, help="simulation updates per second")
    p.add_argument("--phases", type=int, default=3, choices=(1, 2, 3))
    p.add_argument("--max-current", type=int, default=16, help="hardware limit in A (16)")
    p.add_argument(
        "--no-random-traffic",
        dest="random_traffic",
        action="store_false",
        help="no cars come by themselves (plug one in with the programmatic API; a central "
        "system's RemoteStartTransaction starts a session once a car is there)",
    )
    p.add_argument("--stagger", type=float, default=0.0, help="spread first connects over S s")
    p.add_argument(
        "--reconnect-max", type=float, default=30.0, help="longest reconnect backoff, s (30)"
    )
    f = p.add_argument_group("faults")
    f.add_argument("--fault-skew", type=float, default=0.0, help="clock skew of S s")
    f.add_argument("--fault-silent", action="store_true", help="never answer a central call")
    f.add_argument(
        "--fault-offline",
        type=float,
        default=0.0,
        help="every transaction loses the connection for S real s",
    )
    f.add_argument(
        "--fault-offline-after",
        type=float,
        default=30.0,
        help="... this many simulated s after it started (30)",
    )
    f.add_argument(
        "--fault-duplicate",
        action="store_true",
        help="after an outage, one replayed message is sent twice",
    )
    f.add_argument(
        "--fault-register-drop",
        action="store_true",
        help="the first periodic sample of every transaction reports 0 Wh",
    )
    f.add_argument(
        "--fault-schema",
        type=float,
        default=0.0,
        help="a schema-breaking MeterValues frame every S real s",
    )
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def parse_args(argv: Sequence[str] | None) -> OcppCliSettings:
    """Arguments → settings; exits with a clear message (status 2) when invalid."""
    parser = build_parser()
    args = parser.parse_args(argv)
    password: str | dict[str, str] | None = args.password
    if args.password_file is not None:
        try:
            password = read_pin_file(args.password_file)
        except OSError as e:
            parser.error(f"cannot read the password file {args.password_file}: {e.strerror}")
        except UnicodeDecodeError:
            parser.error(f"the password file {args.password_file} is not UTF-8 text")
        except ValueError:
            parser.error(f"the password file {args.password_file} is empty")
    faults = OcppFaults(
        clock_skew_s=args.fault_skew,
        ignore_calls=args.fault_silent,
        duplicate_on_replay=args.fault_duplicate,
        register_drop_in_tx=args.fault_register_drop,
        offline_after_s=args.fault_offline_after,
        offline_for_s=args.fault_offline,
        schema_violation_every_s=args.fault_schema,
    )
    try:
        fleet = OcppFleetConfig(
            url=args.url,
            count=1 if args.id else args.count,
            prefix=args.prefix,
            ids=(args.id,) if args.id else (),
            password=password,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            seed=args.seed,
            speed=args.speed,
            start=args.start,
            tz=args.tz,
            tick_hz=args.tick_hz,
            phases=args.phases,
            max_current=args.max_current,
            random_traffic=args.random_traffic,
            meter_interval_s=args.interval,
            id_tag=args.id_tag,
            faults=faults,
            reconnect_max_s=args.reconnect_max,
            stagger_s=args.stagger,
        )
    except ValueError as e:
        parser.error(str(e))
    return OcppCliSettings(fleet=fleet, log_level=args.log_level)
