"""``chargelift-ingest`` — ``run`` (default): MQTT → database; ``migrate``: apply the schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from pydantic import ValidationError

from chargelift_contract.mqtt import Message, MqttClient, TlsFiles
from chargelift_ingest import http, metrics
from chargelift_ingest.batcher import Batcher
from chargelift_ingest.config import Settings
from chargelift_ingest.migrate import migrate
from chargelift_ingest.validate import validate
from chargelift_ingest.writer import Writer

log = logging.getLogger("chargelift_ingest")


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    max_future = timedelta(seconds=settings.max_future_seconds)
    # min_size 0: start even while the database is down; the batcher retries.
    async with asyncpg.create_pool(
        settings.database_url.get_secret_value(), min_size=0, max_size=2, command_timeout=60
    ) as pool:
        batcher = Batcher(
            Writer(pool), size=settings.batch_size, age_s=settings.batch_age_ms / 1000
        )

        async def on_message(msg: Message) -> None:
            metrics.RECEIVED.inc()
            item = validate(
                msg.topic,
                msg.payload,
                now=datetime.now(UTC),
                max_bytes=settings.max_payload_bytes,
                max_future=max_future,
            )
            await batcher.submit(item, msg.topic, msg.payload)

        client = MqttClient(
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            client_id=settings.client_id,
            tls=TlsFiles.for_identity(
                settings.mqtt_ca_file, settings.mqtt_certs_dir, settings.mqtt_identity
            ),
            persistent_session=True,
            manual_ack=True,
            on_message=on_message,
            subscriptions=[settings.subscription],
            receive_maximum=settings.receive_maximum,
            retain_handling=1,
        )

        def health() -> dict[str, object]:
            metrics.MQTT_CONNECTED.set(1 if client.is_connected else 0)
            return {"ok": True, "mqtt_connected": client.is_connected, "pending": batcher.pending}

        server = await http.serve(settings.metrics_host, settings.metrics_port, health)
        async with server, asyncio.TaskGroup() as tg:
            writing = tg.create_task(batcher.run(), name="batcher")
            async with client:
                log.info(
                    "ingest up: %s → database; metrics on %s:%d",
                    settings.subscription,
                    settings.metrics_host,
                    settings.metrics_port,
                )
                await stop.wait()
                log.info("stopping: flushing %d messages", batcher.pending)
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing
                async with asyncio.timeout(15):
                    await batcher.drain()
                await asyncio.sleep(0.1)  # let the handlers return: gmqtt sends the PUBACKs
            batcher.abandon()  # after disconnect: not acknowledged, redelivered next time
            await asyncio.sleep(0)
    log.info("ingest stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chargelift-ingest", description=__doc__)
    parser.add_argument("cmd", nargs="?", choices=["run", "migrate"], default="run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("gmqtt").setLevel(logging.ERROR)
    try:
        settings = Settings()
    except ValidationError as exc:
        missing = ", ".join(str(e["loc"][0]) for e in exc.errors())
        print(f"error: invalid or missing settings: {missing}", file=sys.stderr)
        return 2
    if args.cmd == "migrate":
        applied = asyncio.run(
            migrate(
                settings.database_url.get_secret_value(), retention_days=settings.retention_days
            )
        )
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        return 0
    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
