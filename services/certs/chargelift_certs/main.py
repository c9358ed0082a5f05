"""``chargelift-certs`` — the command line over :mod:`chargelift_certs.pki`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from chargelift_certs import pki

RELOAD_HINT = (
    "the broker of make dev and of compose picks this up on its own within a second "
    '(another broker: kill -HUP "$(pgrep -x mosquitto)")'
)


def _role_text(c: pki.CertInfo) -> str:
    if c.role == "edge":
        return f"edge ({len(c.chargers)} chargers)"
    if c.role == "controller":
        return f"controller ({len(c.chargers)} chargers)" if c.chargers else "controller (all)"
    if c.role == "homeassistant":
        n = len(c.chargers)
        return f"homeassistant (controls {n} chargers)" if n else "homeassistant (read-only)"
    return c.role


def _print_table(rows: list[pki.CertInfo]) -> None:
    header = ("identity", "kind", "role", "serial", "not after (UTC)", "days", "status")
    table = [header] + [
        (
            c.identity,
            c.kind,
            _role_text(c),
            f"{c.serial:x}"[:16],
            c.not_after.strftime("%Y-%m-%d %H:%M"),
            str(c.days_left),
            c.status,
        )
        for c in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def run(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    match args.cmd:
        case "init":
            existed = (d / "ca.crt").exists()
            pki.create_ca(d, force=args.force, days=args.days, key_type=args.key_type)
            print(
                "CA exists, kept (use --force to replace)"
                if existed and not args.force
                else f"created CA in {d}"
            )
        case "server":
            print(pki.issue_server(d, sans=args.san, days=args.days, force=args.force))
        case "client":
            print(
                pki.issue_client(
                    d,
                    args.identity,
                    role=args.role,
                    chargers=args.charger,
                    days=args.days,
                    force=args.force,
                )
            )
            print(RELOAD_HINT)
        case "rotate":
            print(pki.rotate(d, args.identity, days=args.days))
            print(RELOAD_HINT)
        case "revoke":
            serial = pki.revoke(d, args.identity)
            print(f"revoked {args.identity} (serial {serial:x}); {RELOAD_HINT}")
        case "list":
            rows = pki.list_certs(d)
            if args.json:
                print(
                    json.dumps(
                        [
                            {
                                "identity": c.identity,
                                "kind": c.kind,
                                "role": c.role,
                                "serial": f"{c.serial:x}",
                                "not_after": c.not_after.isoformat(),
                                "days_left": c.days_left,
                                "status": c.status,
                                **(
                                    {"chargers": list(c.chargers)}
                                    if c.role in pki.LISTING_ROLES
                                    else {}
                                ),
                            }
                            for c in rows
                        ],
                        indent=2,
                    )
                )
            else:
                _print_table(rows)
        case "crl":
            if pki.refresh_crl(d, within_days=args.if_within):
                print(f"re-signed {d / 'crl.pem'}; {RELOAD_HINT}")
            else:
                print(f"{d / 'crl.pem'} is valid until {pki.crl_next_update(d):%Y-%m-%d}: kept")
        case "acl":
            print(pki.write_acl(d))
        case "dev-set":
            pki.dev_set(d)
            print(f"development certificates ready in {d}")
        case "expiry":
            soon = pki.expiring(d, args.warn_days)
            for c in soon:
                print(
                    f"{c.identity} ({c.kind}) expires {c.not_after:%Y-%m-%d} ({c.days_left} days)"
                )
            return 1 if soon else 0
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chargelift-certs",
        description=pki.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dir", default="certs", help="certificate directory (default: certs)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("init", help="create the CA, an empty CRL and the ACL")
    s.add_argument("--force", action="store_true", help="replace an existing CA")
    s.add_argument("--days", type=int, default=3650)
    s.add_argument("--key-type", choices=["ec", "rsa"], default="ec")
    s = sub.add_parser("server", help="issue the broker's certificate")
    s.add_argument("--san", action="append", default=[], help="extra DNS name or IP")
    s.add_argument("--days", type=int, default=825)
    s.add_argument("--force", action="store_true")
    s = sub.add_parser("client", help="issue a client certificate")
    s.add_argument("identity")
    s.add_argument(
        "--role",
        choices=list(pki.ROLES),
        default="charger",
        help="charger: writes chargers/<identity>/<Field>, reads its commands, writes "
        "their results; service: ingest, monitor, api, poller; edge: one poller writing "
        "for every --charger; ingest: one more ingest of a $share group (reads "
        "everything); monitor: one more read-only reader; controller: may command every "
        "--charger (every charger when none is given); bridge: the Home Assistant bridge "
        "(reads chargers/#, writes chargelift/ha/# and discovery); homeassistant: Home "
        "Assistant or evcc (reads the bridge's output, may command each --charger, none "
        "when none is given)",
    )
    s.add_argument(
        "--charger",
        action="append",
        default=[],
        metavar="ID",
        help="(edge, controller, homeassistant; repeat) a charger this edge may write "
        "for, or this controller or Home Assistant may command",
    )
    s.add_argument("--days", type=int, default=825)
    s.add_argument("--force", action="store_true")
    s = sub.add_parser("rotate", help="revoke and reissue a client certificate")
    s.add_argument("identity")
    s.add_argument("--days", type=int, default=825)
    s = sub.add_parser("revoke", help="revoke a client certificate")
    s.add_argument("identity")
    s = sub.add_parser("list", help="list certificates with expiry and status")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("crl", help="re-sign the CRL (fresh nextUpdate, same entries)")
    s.add_argument(
        "--if-within",
        type=int,
        metavar="DAYS",
        help="only when it expires within DAYS days (or is missing)",
    )
    sub.add_parser("acl", help="regenerate mosquitto.acl")
    sub.add_parser("dev-set", help="complete development set (idempotent)")
    s = sub.add_parser("expiry", help="exit 1 if a certificate expires within N days")
    s.add_argument("--warn-days", type=int, default=30)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except pki.CertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
