"""``chargelift-api`` — serve the API (default) or make a token (``hash-token``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from chargelift_api.auth import SCOPES, hash_token, new_token
from chargelift_api.config import MqttSettings, Settings, mqtt_configured
from chargelift_api.service import ApiService
from chargelift_runtime.logs import configure_logging
from chargelift_runtime.service import run_until_signal, settings_failed
from chargelift_runtime.settings import SettingsError, env_name, load_settings

PROG = "chargelift-api"

MAKE_ONE_HINT = (
    "  make a token: chargelift-api hash-token <name> (with compose: "
    "docker compose run --rm --no-deps api hash-token <name>)"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    sub = parser.add_subparsers(dest="cmd")
    sub.add_parser("serve", help="run the API (the default)")
    tok = sub.add_parser("hash-token", help="print a new token and its API_TOKENS entry")
    tok.add_argument("name")
    tok.add_argument(
        "--scope",
        choices=SCOPES,
        default="read",
        help="read (the default), control (read and send commands) or admin",
    )
    args = parser.parse_args(argv)
    if args.cmd == "hash-token":
        token = new_token()
        print(f"token (give it to the user, it is not stored): {token}")
        print(f"API_TOKENS entry: {args.name}:{args.scope}:{hash_token(token)}")
        return 0
    mqtt: MqttSettings | None = None
    try:
        # The broker is optional: without MQTT_HOST the command endpoints answer 503.
        if mqtt_configured(dict(os.environ)):
            settings, mqtt = load_settings(Settings, MqttSettings)
        else:
            settings = load_settings(Settings)
    except SettingsError as exc:
        status = settings_failed(PROG, exc)
        if f"{env_name(Settings, 'tokens')}:" in str(exc):
            print(MAKE_ONE_HINT, file=sys.stderr)
        return status
    password = urlsplit(settings.database_url.get_secret_value()).password
    configure_logging("INFO", [password or ""])
    run_until_signal(ApiService(settings, mqtt=mqtt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
