"""Simulated OCPP 1.6J charge points in one process, on one simulation clock.

Usage (the gateway's tests and ``make bench-ocpp`` use exactly this)::

    config = OcppFleetConfig(url="wss://127.0.0.1:9443/ocpp", count=3, password="…16+ bytes…",
                             ca_file="certs/ca.pem")
    async with OcppFleet(config) as fleet:
        cp = fleet.charge_points[0]           # SimChargePoint: .id .status .transaction ...
        await fleet.wait_online()
        cp.model.plug()                       # a car arrives now
        cp.disconnect(60)                     # connection lost for 60 s

The charge points share the physical model of the MHCP simulator (:mod:`.model`: vehicles,
sessions, ramps, taper). A ticker advances it about ``tick_hz`` times a second by real
seconds times ``speed``; with ``auto_tick=False`` only ``fleet.step(seconds)`` moves it.
Each charge point runs as one task (plus one reader task while connected); no threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType

from chargelift_contract.topics import CHARGER_ID_RE, CHARGER_ID_RULE
from chargelift_simulator.clock import SimClock, load_tz
from chargelift_simulator.fleet import raise_fd_limit
from chargelift_simulator.model import MAX_STEP_S, ChargerModel, Settings
from chargelift_simulator.ocpp_cp import Endpoint, OcppFaults, SimChargePoint

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OcppFleetConfig:
    """What to simulate and where to connect.

    ``url``: the central system's ``ws://`` or ``wss://`` prefix (the id is appended).
    ``ids``: explicit charge point ids; empty: ``prefix1 .. prefixN`` for ``count``.
    ``password``: HTTP Basic password (profiles 1/2), one for all or a mapping id →
    password; ``None``: no Authorization header. ``cert_file``/``key_file``: a client
    certificate (profile 3); ``ca_file``: the CA of the server's certificate (wss).
    ``meter_interval_s``: MeterValues period in simulated seconds (0: none).
    ``id_tag``: the id tag every charge point uses (default: one per charge point, like an
    RFID card UID). ``faults``: copied to every charge point (each then has its own).
    ``stagger_s``: spread the first connections over this many seconds.
    """

    url: str
    count: int = 1
    prefix: str = "ocpp-sim-"
    ids: tuple[str, ...] = ()
    password: str | Mapping[str, str] | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    seed: int = 1
    speed: float = 1.0
    start: datetime | None = None
    tz: str = "Europe/Berlin"
    tick_hz: float = 10.0
    auto_tick: bool = True
    phases: int = 3
    max_current: int = 16
    random_traffic: bool = True
    meter_interval_s: float = 10.0
    id_tag: str | None = None
    faults: OcppFaults = field(default_factory=OcppFaults)
    open_timeout_s: float = 10.0
    response_timeout_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    stagger_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"the URL must start with ws:// or wss://, not {self.url[:16]!r}")
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if not (math.isfinite(self.speed) and self.speed >= 0):
            raise ValueError("speed must be a finite number >= 0")
        if not (math.isfinite(self.tick_hz) and 0 < self.tick_hz <= 1000):
            raise ValueError("tick_hz must be in (0, 1000]")
        if not (math.isfinite(self.meter_interval_s) and self.meter_interval_s >= 0):
            raise ValueError("meter_interval_s must be a finite number >= 0")
        for name in ("open_timeout_s", "response_timeout_s", "reconnect_min_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0")
        if not self.reconnect_max_s >= self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        if not (math.isfinite(self.stagger_s) and self.stagger_s >= 0):
            raise ValueError("stagger_s must be a finite number >= 0")
        if self.id_tag is not None and not 1 <= len(self.id_tag) <= 20:
            raise ValueError("an id tag has 1..20 characters (OCPP CiString20)")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        ids = self.charge_point_ids()
        if len(set(ids)) != len(ids):
            raise ValueError("charge point ids repeat")
        for cp_id in ids:
            if not CHARGER_ID_RE.fullmatch(cp_id):
                raise ValueError(f"charge point id {cp_id!r}: {CHARGER_ID_RULE}")
        if isinstance(self.password, Mapping):
            missing = [i for i in ids if not self.password.get(i)]
            if missing:
                raise ValueError(f"no password for {', '.join(missing[:5])}")
        elif self.password == "":
            raise ValueError("the password is empty")

    def charge_point_ids(self) -> list[str]:
        """``ids``, or ``prefix1 .. prefixN``."""
        if self.ids:
            return list(self.ids)
        return [f"{self.prefix}{i}" for i in range(1, self.count + 1)]

    def password_for(self, cp_id: str) -> str | None:
        if isinstance(self.password, Mapping):
            return self.password[cp_id]
        return self.password


def _report_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s died", task.get_name(), exc_info=task.exception())


class OcppFleet:
    """Simulated OCPP charge points; ``async with`` starts them, leaving stops them."""

    def __init__(
        self, config: OcppFleetConfig, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        start = config.start or datetime.fromtimestamp(wall_clock(), UTC)
        self.clock = SimClock(start, load_tz(config.tz))
        self._cps: dict[str, SimChargePoint] = {}
        for index, cp_id in enumerate(config.charge_point_ids()):
            # Physics draws from the same stream as an MHCP charger of that id would.
            rng = random.Random(f"{config.seed}/{cp_id}")  # noqa: S311 - physics, not crypto
            extra = random.Random(f"{config.seed}/{cp_id}/ocpp")  # noqa: S311
            settings = Settings(
                dev_name=cp_id,
                serial=430_100_001 + index,
                phases=config.phases,
                max_curr_wb=config.max_current,
                remote_curr=config.max_current,
                max_curr_t2=config.max_current,
            )
            model = ChargerModel(
                cp_id, self.clock, rng, settings, random_traffic=config.random_traffic
            )
            endpoint = Endpoint(
                url=config.url,
                password=config.password_for(cp_id),
                ca_file=config.ca_file,
                cert_file=config.cert_file,
                key_file=config.key_file,
                open_timeout_s=config.open_timeout_s,
                response_timeout_s=config.response_timeout_s,
                reconnect_min_s=config.reconnect_min_s,
                reconnect_max_s=config.reconnect_max_s,
            )
            self._cps[cp_id] = SimChargePoint(
                model,
                endpoint,
                serial=f"SIM{settings.serial}",
                id_tag=config.id_tag or f"{extra.getrandbits(32):08X}",
                meter_interval_s=config.meter_interval_s,
                faults=config.faults.copy(),
                register_wh=float(int(extra.uniform(100_000, 5_000_000))),
                rng=extra,
                sample_phase=1.0 - extra.random(),  # (0, 1]
            )
        self._tasks: list[asyncio.Task[None]] = []
        self._ticker: asyncio.Task[None] | None = None

    @property
    def charge_points(self) -> list[SimChargePoint]:
        """The charge points, in id order."""
        return list(self._cps.values())

    def charge_point(self, cp_id: str) -> SimChargePoint:
        try:
            return self._cps[cp_id]
        except KeyError:
            raise KeyError(f"no charge point {cp_id!r}") from None

    def step(self, seconds: float) -> None:
        """Advance the simulation by ``seconds`` (in ≤ 1 s steps), observing every step."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"cannot step by {seconds!r} s")
        cps = list(self._cps.values())
        remaining = seconds
        while True:
            h = min(remaining, MAX_STEP_S)
            self.clock.advance(h)
            now = self.clock.elapsed
            for cp in cps:
                cp.model.advance_to(now)
                cp.observe()
            remaining -= h
            if remaining <= 0:
                break

    async def wait_online(self, within_s: float = 30.0) -> None:
        """Until every charge point is connected and booted (TimeoutError otherwise)."""
        async with asyncio.timeout(within_s):
            # A helper for tests and the benchmark: polling plain state is enough.
            while not all(cp.online for cp in self._cps.values()):  # noqa: ASYNC110
                await asyncio.sleep(0.02)

    async def __aenter__(self) -> OcppFleet:
        raise_fd_limit(len(self._cps) + 256)
        self.step(0)
        if self.config.auto_tick:
            self._ticker = asyncio.create_task(self._tick(), name="ocpp-simulator-ticker")
            self._ticker.add_done_callback(_report_death)
        n = len(self._cps)
        for index, cp in enumerate(self._cps.values()):
            delay = self.config.stagger_s * index / n
            task = asyncio.create_task(self._run(cp, delay), name=f"ocpp-cp-{cp.id}")
            task.add_done_callback(_report_death)
            self._tasks.append(task)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks = [*self._tasks, *([self._ticker] if self._ticker is not None else [])]
        self._tasks, self._ticker = [], None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @staticmethod
    async def _run(cp: SimChargePoint, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        await cp.run()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.config.tick_hz
        speed = self.config.speed
        last = loop.time()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            self.step((now - last) * speed)
            last = now
