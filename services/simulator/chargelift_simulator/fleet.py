"""A fleet of simulated chargers in one process: one TCP port each, one simulation clock.

Usage (the poller's tests and the benchmark use exactly this)::

    async with Fleet(FleetConfig(count=3, base_port=0, pin="1234", seed=1)) as fleet:
        charger = fleet.chargers[0]          # SimCharger: .id .port .url .state .truth
        charger.plug()                       # a car arrives now
        charger.set_fault(Fault(FaultKind.TIMEOUT))

While running, a ticker advances the simulation about ``tick_hz`` times a second by
(real seconds elapsed times ``speed``). With ``auto_tick=False`` nothing moves unless the test
calls ``fleet.step(seconds)``, which makes every served value reproducible from the seed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from chargelift_contract.topics import CHARGER_ID_RE, CHARGER_ID_RULE
from chargelift_simulator.clock import SimClock, load_tz
from chargelift_simulator.control import ControlServer
from chargelift_simulator.mhcp import SimCharger
from chargelift_simulator.modbus import MAPS
from chargelift_simulator.model import MAX_STEP_S, ChargerModel, Session, Settings
from chargelift_simulator.truth import TruthLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """What to simulate and where to serve it.

    ``pin`` is one PIN for all chargers or a mapping charger id → PIN. ``base_port=0``
    gives every charger a free port; otherwise charger *i* (from 0) gets
    ``base_port + i``. ``control_port=None`` serves no control endpoint (``0``: a free
    port). A naive ``start`` is the chargers' local time in ``tz``; ``None`` is now.
    ``truth_memory`` bounds the served objects kept per charger in memory (``None``:
    all; the JSONL ``truth_log`` is never bounded). ``random_traffic=False``: cars arrive
    and leave only by ``plug()``/``unplug()`` and never pause on their own.
    """

    count: int = 3
    base_port: int = 0
    host: str = "127.0.0.1"
    pin: str | Mapping[str, str] = field(default="1234", repr=False)
    seed: int = 1
    speed: float = 1.0
    start: datetime | None = None
    truth_log: Path | str | None = None
    prefix: str = "amtron-"
    control_port: int | None = None
    control_host: str = "127.0.0.1"
    auto_tick: bool = True
    tick_hz: float = 10.0
    tz: str = "Europe/Berlin"
    phases: int = 3
    max_current: int = 16
    truth_memory: int | None = 10_000
    idle_timeout: float = 30.0
    random_traffic: bool = True
    #: Modbus TCP register maps served beside MHCP (``hcc3``, ``bender``): one sequence
    #: for every charger, or a mapping charger id -> maps (chargers not in it: none).
    modbus: Sequence[str] | Mapping[str, Sequence[str]] = ()
    #: First Modbus port (0: free ports): charger *i*, map *k* gets
    #: ``modbus_base_port + i * len(MAPS) + k`` (k: 0 hcc3, 1 bender).
    modbus_base_port: int = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if self.base_port != 0 and not 1 <= self.base_port <= 65536 - self.count:
            raise ValueError(f"ports {self.base_port}..+{self.count - 1} do not exist")
        if self.control_port is not None and not 0 <= self.control_port <= 65535:
            raise ValueError(f"control port {self.control_port} does not exist")
        if not (math.isfinite(self.speed) and self.speed >= 0):
            raise ValueError("speed must be a finite number >= 0")
        if not (math.isfinite(self.tick_hz) and 0 < self.tick_hz <= 1000):
            raise ValueError("tick_hz must be in (0, 1000]")
        if self.truth_memory is not None and self.truth_memory < 0:
            raise ValueError("truth_memory must be >= 0 or None")
        if not self.idle_timeout > 0:
            raise ValueError("idle_timeout must be > 0")
        for charger_id in self.ids():
            if not CHARGER_ID_RE.fullmatch(charger_id):  # the MQTT contract's rule
                raise ValueError(f"charger id {charger_id!r}: {CHARGER_ID_RULE}")
        if not isinstance(self.pin, str):
            missing = [i for i in self.ids() if i not in self.pin]
            if missing:
                raise ValueError(f"no PIN for {', '.join(missing)}")
            if any(not p for p in self.pin.values()):
                raise ValueError("a PIN is empty")
        elif not self.pin:
            raise ValueError("the PIN is empty")
        for charger_id in self.ids():
            unknown = set(self.modbus_maps(charger_id)) - set(MAPS)
            if unknown:
                raise ValueError(f"unknown Modbus map(s) {sorted(unknown)}; known: {MAPS}")
        if self.modbus_base_port != 0 and not (
            1 <= self.modbus_base_port <= 65536 - self.count * len(MAPS)
        ):
            raise ValueError(f"Modbus ports from {self.modbus_base_port} do not exist")

    def modbus_maps(self, charger_id: str) -> tuple[str, ...]:
        """The Modbus maps ``charger_id`` serves (may be none)."""
        if isinstance(self.modbus, Mapping):
            return tuple(self.modbus.get(charger_id, ()))
        if isinstance(self.modbus, str):
            return (self.modbus,)
        return tuple(self.modbus)

    def modbus_ports(self, index: int, charger_id: str) -> list[int]:
        """The ports of charger number ``index`` (from 0)'s Modbus servers."""
        maps = self.modbus_maps(charger_id)
        if self.modbus_base_port == 0:
            return [0] * len(maps)
        return [self.modbus_base_port + index * len(MAPS) + MAPS.index(m) for m in maps]

    def ids(self) -> list[str]:
        """``prefix1 .. prefixN``."""
        return [f"{self.prefix}{i}" for i in range(1, self.count + 1)]

    def pin_for(self, charger_id: str) -> str:
        return self.pin if isinstance(self.pin, str) else self.pin[charger_id]


def raise_fd_limit(needed: int) -> None:
    """Raise the soft open-files limit to the hard one when ``needed`` exceeds it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = hard if hard != resource.RLIM_INFINITY else max(needed, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log.warning("open-files limit %d is below the %d this fleet may need", target, needed)


def _report_ticker_death(task: asyncio.Task[None]) -> None:
    # Said at once, not only at exit: without the ticker the simulated world stands still.
    if not task.cancelled() and task.exception() is not None:
        log.error("the simulation ticker died", exc_info=task.exception())


class Fleet:
    """Simulated chargers on their ports plus the optional control endpoint.

    Construction does no I/O; ``async with`` binds the ports, opens the truth log and
    starts the ticker, and leaving it closes every connection and flushes the log.
    """

    def __init__(self, config: FleetConfig, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.config = config
        tz = load_tz(config.tz)
        start = config.start or datetime.fromtimestamp(wall_clock(), UTC)
        self.clock = SimClock(start, tz)
        self._truth = TruthLog(None if config.truth_log is None else Path(config.truth_log))
        self._chargers: dict[str, SimCharger] = {}
        for index, charger_id in enumerate(config.ids()):
            # One stream per charger, keyed by its id: adding chargers does not change
            # what the existing ones do.
            rng = random.Random(f"{config.seed}/{charger_id}")  # noqa: S311 - physics, not crypto
            settings = Settings(
                dev_name=charger_id,
                serial=420_100_001 + index,
                phases=config.phases,
                max_curr_wb=config.max_current,
                remote_curr=config.max_current,
                max_curr_t2=config.max_current,
            )
            model = ChargerModel(
                charger_id,
                self.clock,
                rng,
                settings,
                self._session_ended,
                random_traffic=config.random_traffic,
            )
            port = 0 if config.base_port == 0 else config.base_port + index
            self._chargers[charger_id] = SimCharger(
                model,
                pin=config.pin_for(charger_id),
                host=config.host,
                port=port,
                truth_log=self._truth,
                truth_memory=config.truth_memory,
                idle_timeout=config.idle_timeout,
                wall_clock=wall_clock,
                modbus=config.modbus_maps(charger_id),
                modbus_ports=config.modbus_ports(index, charger_id),
            )
        self._control: ControlServer | None = None
        if config.control_port is not None:
            self._control = ControlServer(
                self._chargers, config.control_host, config.control_port, config.idle_timeout
            )
        self._ticker: asyncio.Task[None] | None = None

    # -- public view ---------------------------------------------------------------

    @property
    def chargers(self) -> list[SimCharger]:
        """The chargers, in id order (``amtron-1`` first)."""
        return list(self._chargers.values())

    def charger(self, charger_id: str) -> SimCharger:
        """One charger by id (KeyError names the known ones)."""
        try:
            return self._chargers[charger_id]
        except KeyError:
            known = ", ".join(self._chargers)
            raise KeyError(f"no charger {charger_id!r}; known: {known}") from None

    @property
    def control_port(self) -> int | None:
        """The control endpoint's bound port, None when there is none."""
        return None if self._control is None else self._control.port

    @property
    def sim_time(self) -> datetime:
        """Simulated now (aware, the chargers' local time zone)."""
        return self.clock.local()

    def step(self, seconds: float) -> None:
        """Advance the simulation by ``seconds`` simulated seconds (in ≤ 1 s steps)."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"cannot step by {seconds!r} s")
        models = [c.model for c in self._chargers.values()]
        remaining = seconds
        while True:
            h = min(remaining, MAX_STEP_S)
            self.clock.advance(h)
            now = self.clock.elapsed
            for model in models:
                model.advance_to(now)
            remaining -= h
            if remaining <= 0:
                break

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Fleet:
        servers = sum(1 + len(c.modbus) for c in self._chargers.values())
        raise_fd_limit(2 * servers + 256)
        try:
            self._truth.open()
            for charger in self._chargers.values():
                await charger.start()
            if self._control is not None:
                await self._control.server.start()
            self.step(0)  # what is due at the start (cars already there) happens now
            if self.config.auto_tick:
                self._ticker = asyncio.create_task(self._tick(), name="simulator-ticker")
                self._ticker.add_done_callback(_report_ticker_death)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        ticker, self._ticker = self._ticker, None
        try:
            if ticker is not None:
                ticker.cancel()
                try:
                    await ticker
                except asyncio.CancelledError:
                    if not ticker.cancelled():
                        raise  # not the ticker's cancellation: our own
            if self._control is not None:
                await self._control.server.close()
            for charger in self._chargers.values():
                await charger.close()
        finally:
            self._truth.close()

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
            self._truth.flush()

    def _session_ended(self, model: ChargerModel, session: Session) -> None:
        self._truth.session_end(
            model.id,
            energy_wh=session.energy_wh,
            start_ts=self.clock.at(session.start),
            end_ts=self.clock.at(session.end),
            duration_s=session.duration_s,
            reason=session.reason,
        )
