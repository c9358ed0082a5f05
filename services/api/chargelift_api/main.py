"""``chargelift-api`` — serve the API (default) or make a token (``hash-token``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError

from chargelift_api.app import create_app
from chargelift_api.auth import hash_token, new_token
from chargelift_api.config import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chargelift-api", description=__doc__)
    sub = parser.add_subparsers(dest="cmd")
    sub.add_parser("serve", help="run the API (the default)")
    tok = sub.add_parser("hash-token", help="print a new token and its API_TOKENS entry")
    tok.add_argument("name")
    tok.add_argument("--scope", choices=["read", "admin"], default="read")
    args = parser.parse_args(argv)
    if args.cmd == "hash-token":
        token = new_token()
        print(f"token (give it to the user, it is not stored): {token}")
        print(f"API_TOKENS entry: {args.name}:{args.scope}:{hash_token(token)}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings()
    except ValidationError as exc:
        # Names and reasons only: the values may be secrets (a DSN with its password).
        for e in exc.errors(include_input=False, include_url=False):
            name = str(e["loc"][0]) if e["loc"] else "?"
            var = name if name == "DATABASE_URL" else f"API_{name.upper()}"
            print(f"error: {var}: {e['msg']}", file=sys.stderr)
            if var == "API_TOKENS":
                print(
                    "  make a token: chargelift-api hash-token <name> (with compose: "
                    "docker compose run --rm --no-deps api hash-token <name>)",
                    file=sys.stderr,
                )
        return 2
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
