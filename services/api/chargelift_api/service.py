"""The API service: the application under uvicorn, with the lifecycle of every service.

``await ApiService(settings).run(stop)`` serves until ``stop`` is set (by
:func:`chargelift_runtime.service.run_until_signal` on SIGTERM or SIGINT), then lets
uvicorn finish: it stops accepting, completes the requests in flight, runs the
lifespan's shutdown (the database pool closes) and returns.

With the broker block (``MQTT_*``) the service also owns the MQTT client (identity
``api``, a controller) and the :class:`~chargelift_api.control.CommandPublisher` that
publishes the commands the API accepts: both start before uvicorn serves, and after it
has finished the queue is drained for at most :data:`DRAIN_S` seconds before the client
disconnects (what is left is on record: the next start queues it again while it may
still be applied, :func:`chargelift_api.app.resend_unfinished`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from chargelift_api.app import create_app
from chargelift_api.config import DEFAULT_IDENTITY, MqttSettings, Settings
from chargelift_api.control import CommandPublisher
from chargelift_api.metrics import ApiMetrics
from chargelift_runtime.mqtt import MqttClient

#: Longest wait at shutdown for the queued commands to reach the broker.
DRAIN_S = 5.0


class _Server(uvicorn.Server):
    """uvicorn's server without signal handlers of its own: the service's ``stop``
    event (set by ``run_until_signal``) is the one way to end it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiService:
    """The API on ``API_HOST:API_PORT``; nothing starts before :meth:`run`."""

    def __init__(
        self,
        settings: Settings,
        *,
        mqtt: MqttSettings | None = None,
        metrics: ApiMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else ApiMetrics()
        self.client: MqttClient | None = None
        self.commands: CommandPublisher | None = None
        if mqtt is not None:
            identity = mqtt.identity or DEFAULT_IDENTITY
            # Not connected before run(); no will: the API's presence is nobody's state.
            self.client = MqttClient(
                host=mqtt.host,
                port=mqtt.port,
                client_id=identity,
                tls=mqtt.tls(identity),
            )
            self.commands = CommandPublisher(self.client, settings.control_queue, self.metrics)
        self.server = _Server(
            uvicorn.Config(
                create_app(settings, metrics=self.metrics, commands=self.commands),
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

        async with contextlib.AsyncExitStack() as stack:
            if self.client is not None:
                await stack.enter_async_context(self.client)
            async with asyncio.TaskGroup() as tg:
                watcher = tg.create_task(exit_on_stop(), name="stop")
                publishing = (
                    tg.create_task(self.commands.run(), name="commands")
                    if self.commands is not None
                    else None
                )
                try:
                    await self.server.serve()
                    if self.commands is not None:
                        await self.commands.drain(DRAIN_S)
                finally:
                    watcher.cancel()
                    if publishing is not None:
                        publishing.cancel()
