"""The simulator services: :class:`SimulatorService` runs a :class:`~.fleet.Fleet` until stopped,
:class:`OcppSimulatorService` an :class:`~.ocpp_fleet.OcppFleet`.

It follows the lifecycle of every chargelift service (``chargelift_runtime.service``):
built from its settings (nothing starts in ``__init__``), ``await run(stop)`` starts
the fleet, logs one line per charger with its URL (never the PIN), serves until
``stop`` is set and closes every port before it returns.
"""

from __future__ import annotations

import asyncio
import logging

from chargelift_simulator.fleet import Fleet, FleetConfig
from chargelift_simulator.ocpp_fleet import OcppFleet, OcppFleetConfig

log = logging.getLogger("chargelift_simulator")


class SimulatorService:
    """A fleet of simulated chargers as a service: ``run_until_signal(SimulatorService(c))``."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.fleet: Fleet | None = None  # while running

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; an ``OSError`` (a port in use) ends the start."""
        config = self.config
        async with Fleet(config) as fleet:
            self.fleet = fleet
            for charger in fleet.chargers:
                log.info("%s: MHCP at %s/MHCP/1.0 (%s)", charger.id, charger.url, charger.state)
                for name in charger.modbus:
                    log.info(
                        "%s: Modbus TCP %s map at %s", charger.id, name, charger.modbus_url(name)
                    )
            if fleet.control_port is not None:
                log.info(
                    "control endpoint at http://%s:%d/chargers",
                    config.control_host,
                    fleet.control_port,
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
        self.fleet = None
        log.info("stopped")


class OcppSimulatorService:
    """Simulated OCPP charge points as a service: ``run_until_signal(OcppSimulatorService(c))``."""

    def __init__(self, config: OcppFleetConfig) -> None:
        self.config = config
        self.fleet: OcppFleet | None = None  # while running

    async def run(self, stop: asyncio.Event) -> None:
        """Connect every charge point (they reconnect on their own) until ``stop`` is set."""
        config = self.config
        # The ocpp library logs every frame at INFO: far too much for 1000 charge points.
        logging.getLogger("ocpp").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
        async with OcppFleet(config) as fleet:
            self.fleet = fleet
            for cp in fleet.charge_points[:10]:
                log.info("%s: OCPP 1.6J to %s/%s (id tag %s)", cp.id, config.url, cp.id, cp.id_tag)
            log.info(
                "%d OCPP charge points, seed %d, speed %g, MeterValues every %g s",
                len(fleet.charge_points),
                config.seed,
                config.speed,
                config.meter_interval_s,
            )
            await stop.wait()
            log.info("stopping")
        self.fleet = None
        log.info("stopped")
