"""The bridge service: subscribe, hand each message to :class:`~.core.Bridge`, publish.

:class:`BridgeService` owns the lifecycle (:mod:`chargelift_runtime.service`): ``run``
starts the ``/metrics`` + ``/healthz`` endpoint and the MQTT session and runs until
``stop`` is set; then it waits (bounded) for the publishes in flight and disconnects
with its will (``chargelift/ha/status`` ``offline``).

One subscription packet, in this order: the bridge's own output (``chargelift/ha/#``)
and the discovery documents first, then ``chargers/#`` and ``homeassistant/status``.
Mosquitto sends the retained messages of a SUBSCRIBE filter by filter, in order, on one
connection, so the retained outputs seed the watermarks before the first charger sample
is handled: a restart does not publish an older sample than the one retained on an
output topic (tests/integration/bridge/test_bridge.py proves it on the real broker).

Messages are handled one at a time in arrival order (QoS 1, one connection), and each
answer is published before the next message is handled, so the output topics see the
samples in the order the watermark admitted them. A publish the broker loses (the
connection drops) is not retried: the retained input is delivered again on the new
connection and the watermark, which was raised, is re-seeded from the retained output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from chargelift_bridge import __version__
from chargelift_bridge.config import DEFAULT_IDENTITY, MqttSettings, Settings
from chargelift_bridge.core import Bridge, Dropped, Out
from chargelift_bridge.metrics import BridgeMetrics
from chargelift_contract.topics import (
    BRIDGE_FILTER,
    BRIDGE_STATUS,
    HA_DISCOVERY_FILTER,
    HA_STATUS,
    OFFLINE,
    ONLINE,
    SUBSCRIBE_ALL,
    SUBSCRIBE_EDGES,
)
from chargelift_runtime.http import HttpEndpoint, Response
from chargelift_runtime.mqtt import ConnectionLostError, Message, MqttClient, MqttError, Will
from chargelift_runtime.service import health

log = logging.getLogger("chargelift_bridge")

#: Order matters (module docstring): the outputs first, so they seed the watermarks.
SUBSCRIPTIONS = (BRIDGE_FILTER, HA_DISCOVERY_FILTER, SUBSCRIBE_ALL, SUBSCRIBE_EDGES, HA_STATUS)
#: How long a publish may wait for its PUBACK before it counts as lost.
PUBLISH_TIMEOUT_S = 10.0
#: How long a stop waits for the message being handled.
DRAIN_S = 5.0


class BridgeService:
    """``await BridgeService(settings, mqtt).run(stop)``. Nothing starts before run()."""

    def __init__(
        self,
        settings: Settings,
        mqtt: MqttSettings,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.mqtt = mqtt
        self.identity = mqtt.identity or DEFAULT_IDENTITY
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = BridgeMetrics(self.registry)
        self.bridge = Bridge(
            version=__version__,
            control=settings.control,
            min_current=settings.min_current,
            max_current=settings.max_current,
            max_chargers=settings.max_chargers,
            on_drop=self._dropped,
        )
        self.client: MqttClient | None = None
        self._lock = asyncio.Lock()
        self.metrics.mqtt_connected.set_function(lambda: 1 if self.mqtt_connected else 0)
        self.metrics.chargers.set_function(lambda: len(self.bridge.chargers))

    @property
    def mqtt_connected(self) -> bool:
        return self.client is not None and self.client.is_connected

    def _dropped(self, reason: Dropped) -> None:
        self.metrics.dropped.labels(reason.value).inc()

    def healthz(self) -> Response:
        return health(
            None, __version__, mqtt_connected=self.mqtt_connected,
            chargers=len(self.bridge.chargers),
        )  # fmt: skip

    def prometheus(self) -> Response:
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)

    async def on_message(self, msg: Message) -> None:
        topic = (
            msg.topic
            if isinstance(msg.topic, str)
            else bytes(msg.topic).decode("utf-8", errors="replace")
        )
        self.metrics.received.inc()
        async with self._lock:  # one message at a time, its answers in order
            for out in self.bridge.handle(topic, msg.payload):
                await self._publish(out)

    async def _publish(self, out: Out) -> None:
        assert self.client is not None
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await self.client.publish(out.topic, out.payload, qos=1, retain=out.retain)
        except (MqttError, TimeoutError) as exc:
            self.metrics.publish_failures.inc()
            log.warning("publish to %s failed: %s", out.topic, exc)
            return
        self.metrics.published.inc()

    async def run(self, stop: asyncio.Event) -> None:
        tls = self.mqtt.tls(self.identity)
        routes = {"/metrics": self.prometheus, "/healthz": self.healthz}
        async with (
            HttpEndpoint(self.settings.metrics_host, self.settings.metrics_port, routes),
            MqttClient(
                host=self.mqtt.host,
                port=self.mqtt.port,
                client_id=self.identity,
                tls=tls,
                will=Will(BRIDGE_STATUS, OFFLINE),
                subscriptions=SUBSCRIPTIONS,
                on_message=self.on_message,
                manual_ack=True,
            ) as client,
        ):
            self.client = client
            async with asyncio.TaskGroup() as tg:
                announcer = tg.create_task(self._announce_online(client, stop))
                await stop.wait()
                announcer.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_S), self._lock:
                    pass  # the message being handled finishes its publishes
            self.client = None

    async def _announce_online(self, client: MqttClient, stop: asyncio.Event) -> None:
        """Publish ``online`` on the bridge's status after every (re)connection."""
        seen = 0
        while not stop.is_set():
            await client.wait_connected()
            if client.connections != seen:
                seen = client.connections
                try:
                    await client.publish(BRIDGE_STATUS, ONLINE, qos=1, retain=True)
                except (MqttError, ConnectionLostError) as exc:
                    log.warning("cannot publish %s: %s", BRIDGE_STATUS, exc)
                    continue
            await client.wait_disconnected()
