"""The naive design the benchmark compares against (docs/reference/measured-limits.md):
per message, acquire a database connection, run one ``INSERT``, commit, release.

It validates exactly as ingest does and acknowledges a message only after its insert
(so it loses nothing either); messages are handled one at a time, like a paho
``on_message`` callback that writes synchronously. Same environment variables as
``chargelift-ingest run``; ``/metrics`` on ``INGEST_METRICS_PORT``.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta

import asyncpg

from chargelift_ingest import http
from chargelift_ingest.config import Settings
from chargelift_ingest.validate import Reading, validate
from chargelift_runtime.mqtt import Message, MqttClient, TlsFiles

INSERT = (
    "INSERT INTO readings (time, charger, field, value_num, value_text, value_bool) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
)


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
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
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            client_id=settings.mqtt_identity,
            tls=TlsFiles.for_identity(
                settings.mqtt_ca_file, settings.mqtt_certs_dir, settings.mqtt_identity
            ),
            persistent_session=True,
            manual_ack=True,
            on_message=on_message,
            subscriptions=["chargers/#"],
            receive_maximum=1000,
        )
        server = await http.serve("127.0.0.1", settings.metrics_port, lambda: {"ok": True})
        async with server, client:
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(run(Settings()))
