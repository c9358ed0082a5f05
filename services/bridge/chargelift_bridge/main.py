"""``chargelift-bridge`` — Home Assistant and evcc: chargers/# → chargelift/ha/# and MQTT
discovery, only ever newer samples."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from chargelift_bridge.config import MqttSettings, Settings
from chargelift_bridge.service import BridgeService
from chargelift_runtime.logs import configure_logging
from chargelift_runtime.service import run_until_signal, settings_failed
from chargelift_runtime.settings import SettingsError, load_settings

PROG = "chargelift-bridge"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("cmd", nargs="?", choices=["run"], default="run")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: ``chargelift-bridge [run]``."""
    parser().parse_args(argv)
    try:
        settings, mqtt = load_settings(Settings, MqttSettings)
    except SettingsError as exc:
        return settings_failed(PROG, exc)
    configure_logging(settings.log_level, [])
    run_until_signal(BridgeService(settings, mqtt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
