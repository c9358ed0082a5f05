"""``chargelift-simulator``: run a fleet of simulated AMTRONs until SIGTERM or SIGINT.

Assembles and starts things, nothing else: settings from the command line
(:mod:`chargelift_simulator.config`), a :class:`~chargelift_simulator.fleet.Fleet`, one
log line per charger with its URL (never the PIN), a clean exit on a signal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from chargelift_simulator.config import CliSettings, parse_args
from chargelift_simulator.fleet import Fleet, raise_fd_limit

log = logging.getLogger("chargelift_simulator")


async def run(settings: CliSettings, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (by SIGTERM/SIGINT when not given)."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    config = settings.fleet
    async with Fleet(config) as fleet:
        for charger in fleet.chargers:
            log.info("%s: MHCP at %s/MHCP/1.0 (%s)", charger.id, charger.url, charger.state)
        if fleet.control_port is not None:
            log.info(
                "control endpoint at http://%s:%d/chargers", config.control_host, fleet.control_port
            )
        log.info(
            "%d chargers, seed %d, speed %g, simulated start %s",
            len(fleet.chargers),
            config.seed,
            config.speed,
            fleet.sim_time.isoformat(timespec="seconds"),
        )
        await stop.wait()
        log.info("stopping")
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> None:
    """Console script entry point."""
    settings = parse_args(argv, os.environ)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # A thousand chargers are a thousand listening sockets plus their connections.
    raise_fd_limit(2 * settings.fleet.count + 256)
    try:
        asyncio.run(run(settings))
    except OSError as e:
        # e.g. a port in use: the message says it all (and names no secret).
        log.error("cannot serve: %s", e)
        sys.exit(1)


if __name__ == "__main__":
    main()
