"""``chargelift-simulator-ocpp``: simulated OCPP 1.6J charge points (:mod:`.ocpp_fleet`).

Settings from the command line (:mod:`chargelift_simulator.ocpp_config`), logging with the
passwords redacted, then an :class:`~chargelift_simulator.service.OcppSimulatorService`
until SIGTERM or SIGINT. Exit status 2: bad options. The charge points reconnect on their
own, so an unreachable central system is logged, not fatal.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import ocpp.messages

from chargelift_runtime.logs import configure_logging
from chargelift_runtime.service import run_until_signal
from chargelift_simulator.ocpp_config import parse_args
from chargelift_simulator.ocpp_cp import basic_token
from chargelift_simulator.service import OcppSimulatorService


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point."""
    settings = parse_args(argv)
    fleet = settings.fleet
    secrets: list[str] = []
    for cp_id in fleet.charge_point_ids():
        password = fleet.password_for(cp_id)
        if password is not None:
            # The password, and the Authorization header a DEBUG log of websockets may show.
            secrets += [password, basic_token(cp_id, password)]
    configure_logging(settings.log_level, secrets)
    # The ocpp library validates the central system's calls on a worker thread by default;
    # in this process (nothing else uses the library) inline is cheaper: no threads.
    ocpp.messages.ASYNC_VALIDATION = False
    run_until_signal(OcppSimulatorService(settings.fleet))
    return 0


if __name__ == "__main__":
    sys.exit(main())
