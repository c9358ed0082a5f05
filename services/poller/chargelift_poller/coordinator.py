"""One coordinator per charger: polls at a fixed cadence and writes to the outbox.

* Fixed cadence (``interval``), ``asyncio.timeout`` around every device read.
* A failure is retried with bounded exponential backoff (``interval`` doubling up to
  ``max_backoff``: :class:`chargelift_runtime.retry.Backoff` without jitter); a
  permanent error (wrong PIN, bad address) takes the charger out of fast rotation: it
  is retried every ``permanent_retry`` seconds.
* "Down" is logged once when it happens (loudly, at ERROR, for permanent errors) and
  "up again" once when the charger recovers; in between, failures go to DEBUG.
* Availability (``online``/``offline``) is written to the outbox on every transition,
  so it travels in order with the samples.
* Coordinators share nothing but the outbox: one charger's failure cannot delay or
  disturb another's polls.
* A reading with a value that the contract refuses (NaN, ±Infinity, a number beyond
  ±2**53, a wrong type for its field: :class:`~chargelift_poller.models.ChargerReading`
  checks) is refused whole with a
  :class:`~chargelift_poller.errors.ChargerProtocolError` naming the charger and the
  field, and the charger is marked down like any other failure.
* An exception outside the :class:`~chargelift_poller.errors.ChargerError` tree raised
  by the driver or the mapping (a bug met by an odd answer) is, with
  ``contain_driver_faults`` (what ``main`` passes), a
  :class:`~chargelift_poller.errors.DriverFaultError`: logged once with its traceback
  and the charger's name, counted, retried with backoff, so that one charger cannot
  stop the site (issue 14). Without it (the default, what unit tests get) it
  propagates, so a bug fails the test instead of showing as "charger offline".
  Failures of the outbox (the disk) are never contained.
* The charger's device is shared with its :class:`~chargelift_poller.commands.Commander`:
  every read holds :attr:`Coordinator.device_lock`, which the commander holds for a
  write and its read-back, so polls and writes never interleave on the box. The
  commander's control state (``CurrentLimit``, ``CurrentLimitLeaseEnd``: ``extra``)
  joins every reading, so it travels through the same change detection and outbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from chargelift_contract import Envelope, availability_topic, encode, field_topic
from chargelift_contract.envelope import Value
from chargelift_contract.topics import OFFLINE, ONLINE
from chargelift_edge.changes import ChangeDetector
from chargelift_edge.clock import Clock
from chargelift_edge.outbox import Entry
from chargelift_poller.drivers import Driver
from chargelift_poller.errors import (
    ChargerError,
    ChargerProtocolError,
    ChargerTimeoutError,
    DriverFaultError,
    PermanentError,
)
from chargelift_poller.metrics import PollerMetrics
from chargelift_poller.models import ChargerReading, InvalidReadingError
from chargelift_runtime.retry import Backoff

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where a coordinator writes (the outbox): one call is one transaction."""

    def append(self, entries: Sequence[Entry]) -> object: ...


@dataclass(frozen=True, slots=True)
class Timing:
    """Cadence settings of one coordinator (seconds)."""

    interval: float
    timeout: float
    max_backoff: float = 60.0
    permanent_retry: float = 300.0
    start_delay: float = 0.0

    def backoff(self, failures: int) -> float:
        """Delay before the next attempt after ``failures`` consecutive failures.

        chargelift's one retry policy without jitter (the scheduler keeps each charger's
        phase), never shorter than ``interval``.
        """
        policy = Backoff(initial=self.interval, maximum=self.max_backoff, jitter=0.0)
        return max(self.interval, policy.delay(failures))


@dataclass(frozen=True, slots=True)
class ChargerStatus:
    """What the health endpoint shows about one charger."""

    charger: str
    up: bool | None  # None: not polled yet
    since: datetime | None
    failures: int
    last_error: str | None


class Coordinator:
    """Polls one charger for the life of the process (see the module docstring)."""

    def __init__(
        self,
        charger_id: str,
        driver: Driver,
        sink: Sink,
        metrics: PollerMetrics,
        *,
        timing: Timing,
        snapshot_interval: float,
        clock: Clock,
        contain_driver_faults: bool = False,
        extra: Callable[[], Mapping[str, Value]] | None = None,
    ) -> None:
        self.charger_id = charger_id
        #: Held for every read of the device (and by the commander for its writes).
        self.device_lock = asyncio.Lock()
        #: The commander's control state, joined to every reading.
        self.extra = extra
        self._contain = contain_driver_faults
        self._fault_logged = False
        self._driver = driver
        self._sink = sink
        self._timing = timing
        self._clock = clock
        self._changes = ChangeDetector(snapshot_interval)
        self._topics: dict[str, str] = {}
        self._availability_topic = availability_topic(charger_id)
        self._up: bool | None = None
        self._since: datetime | None = None
        self._failures = 0
        self._last_error: str | None = None
        self._permanent_logged = False
        self._next_due: float | None = None
        self._m_ok = metrics.polls_ok.labels(charger_id)
        self._m_failed = metrics.polls_failed
        self._m_up = metrics.charger_up.labels(charger_id)
        self._m_duration = metrics.poll_duration
        self._m_samples = metrics.samples.labels(charger_id)

    # -- state -------------------------------------------------------------------

    @property
    def driver(self) -> Driver:
        """The charger's driver (the service closes it at shutdown if it is Closeable)."""
        return self._driver

    @property
    def status(self) -> ChargerStatus:
        """The charger as this coordinator sees it now."""
        return ChargerStatus(
            self.charger_id, self._up, self._since, self._failures, self._last_error
        )

    def availability(self) -> bytes | None:
        """Current availability payload (``None`` before the first poll)."""
        if self._up is None:
            return None
        return ONLINE if self._up else OFFLINE

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        """Poll until cancelled."""
        await self._clock.sleep(self._timing.start_delay)
        while True:
            delay = await self.poll_once()
            await self._clock.sleep(delay)

    async def poll_once(self) -> float:
        """Read the charger once, record the outcome; return the delay until the next read."""
        started = self._clock.monotonic()
        full = self._changes.snapshot_due(started)
        try:
            async with self.device_lock, asyncio.timeout(self._timing.timeout):
                reading = await self._driver.read(full=full)
            if self.extra is not None:
                reading = ChargerReading(reading.sampling_time, {**reading.values, **self.extra()})
            changed, entries = self._entries(reading, full)
        except InvalidReadingError as exc:  # ChargerReading refused a value: name the field
            return self._failed(ChargerProtocolError(self.charger_id, f"reading refused: {exc}"))
        except TimeoutError:
            error: ChargerError = ChargerTimeoutError(
                self.charger_id, f"no answer within {self._timing.timeout:g} s"
            )
            return self._failed(error)
        except ChargerError as exc:
            return self._failed(exc)
        except Exception as exc:  # contained only when told to (module docstring)
            if not self._contain:
                raise
            return self._failed(self._fault(exc))
        self._succeeded(reading, changed, entries, full, started)
        return self._next_delay(started)

    def _fault(self, exc: Exception) -> DriverFaultError:
        error = DriverFaultError(
            self.charger_id,
            f"unexpected {type(exc).__name__} in the driver or its mapping (a bug)",
        )
        if not self._fault_logged:
            self._fault_logged = True  # once until the charger recovers
            log.error("%s (a bug; logged once until it recovers)", error, exc_info=exc)
        return error

    def _next_delay(self, started: float) -> float:
        # Keep the phase of the cadence; if a poll overran, skip the missed ticks
        # instead of bursting to catch up.
        interval = self._timing.interval
        due = started + interval if self._next_due is None else self._next_due + interval
        now = self._clock.monotonic()
        if due < now:
            due += interval * (int((now - due) / interval) + 1)
        self._next_due = due
        return max(0.0, due - now)

    # -- outcomes ----------------------------------------------------------------

    def _topic(self, field: str) -> str:
        topic = self._topics.get(field)
        if topic is None:
            topic = self._topics[field] = field_topic(self.charger_id, field)
        return topic

    def _entries(self, reading: ChargerReading, full: bool) -> tuple[dict[str, Value], list[Entry]]:
        """The outbox entries of ``reading``: what changed, encoded (no state changes)."""
        sampled_at = reading.sampling_time.timestamp()
        entries: list[Entry] = []
        if self._up is not True:
            entries.append(Entry(self.charger_id, self._availability_topic, ONLINE, sampled_at))
        changed = self._changes.select(reading.values, full=full)
        for name, value in changed.items():
            payload = encode(Envelope(reading.sampling_time, value))
            entries.append(Entry(self.charger_id, self._topic(name), payload, sampled_at))
        return changed, entries

    def _succeeded(
        self,
        reading: ChargerReading,
        changed: dict[str, Value],
        entries: list[Entry],
        full: bool,
        started: float,
    ) -> None:
        recovered = self._up is not True
        self._sink.append(entries)  # one transaction; raises only if the disk fails
        self._changes.commit(changed, full=full, now=started)
        self._m_ok.inc()
        self._m_samples.inc(len(changed))
        self._m_duration.observe(self._clock.monotonic() - started)
        if recovered:
            if self._up is False:
                assert self._since is not None
                down_for = (reading.sampling_time - self._since).total_seconds()
                log.info(
                    "charger %s is up again after %.0f s down (%d failed polls)",
                    self.charger_id,
                    down_for,
                    self._failures,
                )
            else:
                log.info("charger %s is up", self.charger_id)
            self._up = True
            self._since = reading.sampling_time
            self._m_up.set(1)
        self._failures = 0
        self._last_error = None
        self._permanent_logged = False
        self._fault_logged = False

    def _failed(self, error: ChargerError) -> float:
        self._failures += 1
        self._last_error = str(error)
        self._next_due = None
        self._m_failed.labels(self.charger_id, error.kind).inc()
        permanent = isinstance(error, PermanentError)
        if self._up is not False:
            now = self._clock.now()
            self._up = False
            self._since = now
            self._m_up.set(0)
            # The next successful read is a full snapshot: consumers may have
            # discarded what they knew while the charger was offline.
            self._changes.forget()
            self._sink.append(
                [Entry(self.charger_id, self._availability_topic, OFFLINE, now.timestamp())]
            )
            if permanent:
                self._log_permanent(error)
            else:
                log.warning("%s; charger marked down, retrying with backoff", error)
        elif permanent and not self._permanent_logged:
            self._log_permanent(error)
        else:
            log.debug("%s (still down, %d failed polls)", error, self._failures)
        if permanent:
            self._permanent_logged = True
            return self._timing.permanent_retry
        return self._timing.backoff(self._failures)

    def _log_permanent(self, error: ChargerError) -> None:
        log.error(
            "%s; charger marked down and taken out of rotation: retried every %.0f s, "
            "fix the configuration and restart the poller",
            error,
            self._timing.permanent_retry,
        )
