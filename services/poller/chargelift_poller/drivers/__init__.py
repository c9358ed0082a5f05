"""The driver registry: every driver the poller can use, listed explicitly.

Adding a driver: copy :mod:`._blueprint` to ``<protocol>.py``, fill it in, register it
below with one line, add recorded responses under
``tests/unit/poller/fixtures/<name>/`` — the contract test then runs over it.
"""

from chargelift_poller.drivers.base import (
    Controller,
    Driver,
    DriverFactory,
    DriverRegistry,
    DriverRegistryError,
)
from chargelift_poller.drivers.mhcp import MhcpDriver

REGISTRY = DriverRegistry()
REGISTRY.register("mhcp", MhcpDriver)

__all__ = [
    "REGISTRY",
    "Controller",
    "Driver",
    "DriverFactory",
    "DriverRegistry",
    "DriverRegistryError",
    "MhcpDriver",
]
