"""The API service: the application under uvicorn, with the lifecycle of every service.

``await ApiService(settings).run(stop)`` serves until ``stop`` is set (by
:func:`chargelift_runtime.service.run_until_signal` on SIGTERM or SIGINT), then lets
uvicorn finish: it stops accepting, completes the requests in flight, runs the
lifespan's shutdown (the database pool closes) and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from chargelift_api.app import create_app
from chargelift_api.config import Settings
from chargelift_api.metrics import ApiMetrics


class _Server(uvicorn.Server):
    """uvicorn's server without signal handlers of its own: the service's ``stop``
    event (set by ``run_until_signal``) is the one way to end it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiService:
    """The API on ``API_HOST:API_PORT``; nothing starts before :meth:`run`."""

    def __init__(self, settings: Settings, *, metrics: ApiMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else ApiMetrics()
        self.server = _Server(
            uvicorn.Config(
                create_app(settings, metrics=self.metrics),
                host=settings.host,
                port=settings.port,
                # Records go to the root logger (chargelift_runtime.logs: redacted).
                log_config=None,
                log_level="info",
                access_log=False,
            )
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down gracefully. A failed start-up (the
        lifespan cannot open the pool, the port is taken) ends the process with uvicorn's
        exit status 3, as ``uvicorn.run`` did."""

        async def exit_on_stop() -> None:
            await stop.wait()
            self.server.should_exit = True

        watcher = asyncio.create_task(exit_on_stop(), name="stop")
        try:
            await self.server.serve()
        finally:
            watcher.cancel()
