"""The driver registry: every driver the poller can use, listed explicitly.

Adding a driver: copy :mod:`._blueprint` to ``<protocol>.py``, fill it in, register it
below with one line, add recorded responses under
``tests/unit/poller/fixtures/<name>/`` — the contract test then runs over it.
"""

from chargelift_poller.drivers.base import (
    Closeable,
    Controller,
    Driver,
    DriverFactory,
    DriverRegistry,
    DriverRegistryError,
)
from chargelift_poller.drivers.bender import BenderDriver
from chargelift_poller.drivers.hcc3 import Hcc3Driver
from chargelift_poller.drivers.mhcp import MhcpDriver

REGISTRY = DriverRegistry()
REGISTRY.register("mhcp", MhcpDriver)
REGISTRY.register("hcc3", Hcc3Driver)
REGISTRY.register("bender", BenderDriver)

__all__ = [
    "REGISTRY",
    "BenderDriver",
    "Closeable",
    "Controller",
    "Driver",
    "DriverFactory",
    "DriverRegistry",
    "DriverRegistryError",
    "Hcc3Driver",
    "MhcpDriver",
]
