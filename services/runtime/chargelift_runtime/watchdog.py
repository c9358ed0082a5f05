"""Liveness: notice when a service is stuck, say so on ``/healthz``, and end the process.

A service is *stuck* when work waits and nothing has progressed for the liveness window
(ingest: messages held unacknowledged and no batch committed; the poller: unsent rows
and an MQTT connection up, and no PUBACK), or when its event loop stops turning (a
blocking call, a busy loop), or when the whole process was frozen (SIGSTOP, a paused
VM) for longer than the window. Time bounds on every database and broker call make
stuck states unlikely; this is the net under them for the ones nobody foresaw.

What happens then:

* ``/healthz`` answers 503 with the reason (and the gauge ``<prefix>_stalled_seconds``
  grows), from the moment the window is exceeded;
* after ``exit_after`` seconds more, a watchdog *thread* (it works also while the event
  loop is blocked) logs the reason and ends the process with exit code 70, so that
  ``restart: unless-stopped`` (compose) or ``Restart=always`` (systemd) starts a fresh
  one. Nothing is lost by that: the poller's outbox is durable, and ingest acknowledges
  only what it committed;
* under systemd (``NOTIFY_SOCKET`` set) ``READY=1`` is sent once, and ``WATCHDOG=1``
  every few seconds only while the event loop turns and nothing is stuck, so
  ``WatchdogSec=`` restarts a process frozen in place too.

Progress is observed, not reported: ``progress()`` returns a number that changes
whenever the service did useful work (a counter), ``waiting()`` says whether work waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: The exit code of a process ended by its watchdog (EX_SOFTWARE).
EXIT_STUCK = 70

#: How often the event loop proves it turns, and the watchdog thread looks.
TICK = 1.0


def sd_notify(message: str) -> bool:
    """Send ``message`` to systemd's notification socket, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


class Liveness:
    """Tracks progress against a liveness window; ``async with`` runs the watchdog."""

    def __init__(
        self,
        name: str,
        *,
        window: float,
        exit_after: float | None,
        waiting: Callable[[], bool],
        progress: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
        exit: Callable[[int], None] = os._exit,
    ) -> None:
        self.name = name
        self.window = window
        self.exit_after = exit_after
        self._waiting = waiting
        self._progress = progress
        self._clock = clock
        self._exit = exit
        now = clock()
        self._last_value = progress()
        self._progress_at = now  # last progress, or when work started to wait
        self._loop_at = now  # last turn of the event loop
        self._frozen_for = 0.0  # longest freeze of the whole process seen
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticker: asyncio.Task[None] | None = None

    # -- observing --------------------------------------------------------------

    def observe(self) -> None:
        """Note progress (or that nothing waits); called on the loop, every tick."""
        now = self._clock()
        value = self._progress()
        with self._lock:
            self._loop_at = now
            if value != self._last_value or not self._waiting():
                self._last_value = value
                self._progress_at = now

    def stalled_for(self) -> float:
        """Seconds that work has waited without progress (0 while not waiting)."""
        with self._lock:
            return max(0.0, self._clock() - self._progress_at)

    def problem(self) -> str | None:
        """Why the service counts as stuck, or None while it is alive."""
        now = self._clock()
        with self._lock:
            loop_silent = now - self._loop_at
            stalled = now - self._progress_at
            frozen = self._frozen_for
        if frozen > self.window:
            return f"the process was frozen for {frozen:.0f} s"
        if loop_silent > self.window:
            return f"the event loop has not turned for {loop_silent:.0f} s"
        if stalled > self.window:
            return f"work has waited {stalled:.0f} s without progress"
        return None

    def healthy(self) -> bool:
        return self.problem() is None

    # -- running ----------------------------------------------------------------

    async def __aenter__(self) -> Liveness:
        self.observe()
        self._ticker = asyncio.create_task(self._tick(), name=f"liveness:{self.name}")
        if self.exit_after is not None:
            self._thread = threading.Thread(
                target=self._watch, name=f"watchdog:{self.name}", daemon=True
            )
            self._thread.start()
        sd_notify("READY=1")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    async def _tick(self) -> None:
        while True:
            self.observe()
            if self.healthy():
                sd_notify("WATCHDOG=1")
            await asyncio.sleep(TICK)

    def _watch(self) -> None:
        """The watchdog thread: ends the process when it has been stuck long enough."""
        assert self.exit_after is not None
        last = self._clock()
        while not self._stop.wait(TICK):
            now = self._clock()
            gap = now - last - TICK
            last = now
            if gap > self.window:
                # This thread did not run either: the whole process was stopped.
                with self._lock:
                    self._frozen_for = max(self._frozen_for, gap)
            reason = self.problem()
            if reason is None:
                continue
            with self._lock:
                since = min(self._loop_at, self._progress_at)
                frozen = self._frozen_for
            if frozen > self.window or now - since > self.window + self.exit_after:
                self._die(reason)
                return

    def _die(self, reason: str) -> None:
        log.critical("%s is stuck: %s; exiting so that it is restarted", self.name, reason)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        self._exit(EXIT_STUCK)
