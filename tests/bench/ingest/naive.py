"""The naive design the benchmark compares against (docs/reference/measured-limits.md):
per message, acquire a database connection, run one ``INSERT``, commit, release.

It validates exactly as ingest does and acknowledges a message only after its insert
(so it loses nothing either); messages are handled one at a time, like a paho
``on_message`` callback that writes synchronously. Same environment variables as
``chargelift-ingest run``; ``/metrics`` on ``INGEST_METRICS_PORT``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from chargelift_ingest import __version__
from chargelift_ingest.config import DEFAULT_IDENTITY, MqttSettings, Settings
from chargelift_ingest.validate import Reading, validate
from chargelift_runtime.http import HttpEndpoint
from chargelift_runtime.mqtt import Message, MqttClient
from chargelift_runtime.service import health, run_until_signal
from chargelift_runtime.settings import load_settings

INSERT = (
    "INSERT INTO readings (time, charger, field, value_num, value_text, value_bool) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
)


class NaiveIngest:
    """``run(stop)`` like :class:`chargelift_ingest.service.IngestService`, one insert
    per message."""

    def __init__(self, settings: Settings, mqtt: MqttSettings) -> None:
        self.settings = settings
        self.mqtt = mqtt

    async def run(self, stop: asyncio.Event) -> None:
        settings, mqtt = self.settings, self.mqtt
        identity = mqtt.identity or DEFAULT_IDENTITY
        one_at_a_time = asyncio.Lock()
        async with asyncpg.create_pool(
            settings.database_url.get_secret_value(), min_size=1, max_size=1
        ) as pool:

            async def on_message(msg: Message) -> None:
                item = validate(
                    msg.topic,
                    msg.payload,
                    now=datetime.now(UTC),
                    max_bytes=settings.max_payload_bytes,
                    max_future=timedelta(seconds=settings.max_future_seconds),
                )
                if not isinstance(item, Reading):
                    return
                async with one_at_a_time, pool.acquire() as conn:
                    await conn.execute(
                        INSERT,
                        item.time,
                        item.charger,
                        item.field,
                        item.value_num,
                        item.value_text,
                        item.value_bool,
                    )

            client = MqttClient(
                host=mqtt.host,
                port=mqtt.port,
                client_id=identity,
                tls=mqtt.tls(identity),
                persistent_session=True,
                manual_ack=True,
                on_message=on_message,
                subscriptions=["chargers/#"],
                receive_maximum=1000,
            )
            registry = CollectorRegistry()  # no metrics of its own
            endpoint = HttpEndpoint(
                "127.0.0.1",
                settings.metrics_port,
                {
                    "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
                    "/healthz": lambda: health(None, __version__),
                },
            )
            async with endpoint, client:
                await stop.wait()


if __name__ == "__main__":
    run_until_signal(NaiveIngest(*load_settings(Settings, MqttSettings)))
