"""``chargelift-simulator``: the command line; :mod:`.service` runs the fleet.

Settings from the command line (:mod:`chargelift_simulator.config`), logging with the
PINs redacted, then a :class:`~chargelift_simulator.service.SimulatorService` until
SIGTERM or SIGINT. Exit status 2: bad options (argparse); 1: cannot serve (a port in use).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from chargelift_runtime.logs import configure_logging
from chargelift_runtime.service import run_until_signal
from chargelift_simulator.config import parse_args
from chargelift_simulator.service import SimulatorService

log = logging.getLogger("chargelift_simulator")


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point."""
    settings = parse_args(argv, os.environ)
    pin = settings.fleet.pin
    configure_logging(settings.log_level, [pin] if isinstance(pin, str) else pin.values())
    try:
        run_until_signal(SimulatorService(settings.fleet))
    except OSError as e:
        # e.g. a port in use: the message says it all (and names no secret).
        log.error("cannot serve: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
