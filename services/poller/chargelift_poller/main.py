"""``chargelift-poller``: the command line; :mod:`.service` is the poller itself.

Reads the settings (``POLLER_*`` and ``MQTT_*``) and the chargers file, checks that
the poller can start (:mod:`.checks`), then runs a :class:`~.service.PollerService`
until SIGTERM or SIGINT. Exit status 2: bad settings, chargers file or start-up check.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from chargelift_poller.checks import StartupError, startup_checks
from chargelift_poller.config import ConfigFileError, MqttSettings, Settings, load_config
from chargelift_poller.service import PollerService, tune_runtime
from chargelift_runtime.logs import configure_logging
from chargelift_runtime.service import run_until_signal, settings_failed
from chargelift_runtime.settings import SettingsError, load_settings

PROG = "chargelift-poller"
log = logging.getLogger("chargelift_poller")


def build_parser() -> argparse.ArgumentParser:
    """The command line: no options but --help (configuration is environment + file)."""
    return argparse.ArgumentParser(
        prog=PROG,
        description="Poll the chargers of the chargers file and publish their values to "
        "the broker (mutual TLS), through a durable outbox. Runs until SIGTERM or SIGINT.",
        epilog="Configured by the environment, not by options: POLLER_CONFIG (the chargers "
        "file, TOML), POLLER_OUTBOX, MQTT_HOST, MQTT_PORT, MQTT_CA_FILE, MQTT_CERTS_DIR and "
        "the optional POLLER_* settings (docs/poller.md).",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: read the environment and the chargers file, run."""
    build_parser().parse_args(argv)  # --help and unknown options exit here
    try:
        settings, mqtt = load_settings(Settings, MqttSettings)
    except SettingsError as exc:
        return settings_failed(PROG, exc)
    redactor = configure_logging(settings.log_level)
    try:
        config = load_config(settings.config)
        redactor.add(c.pin.get_secret_value() for c in config.chargers if c.pin is not None)
        startup_checks(mqtt, config)
        tune_runtime()
        run_until_signal(PollerService(settings, mqtt, config))
    except (ConfigFileError, StartupError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
