"""``chargelift-ingest`` — ``run`` (default): MQTT → database; ``migrate``: apply the schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from pydantic import ValidationError

from chargelift_ingest import __version__, http, metrics
from chargelift_ingest.batcher import Batcher, NotStored
from chargelift_ingest.config import MigrateSettings, Settings
from chargelift_ingest.deadletters import DeadLetterBudget, prune_forever
from chargelift_ingest.edges import EdgeCertificates
from chargelift_ingest.migrate import migrate
from chargelift_ingest.validate import Cleared, DeadLetter, validate
from chargelift_ingest.writer import Writer
from chargelift_runtime.mqtt import Message, MqttClient, TlsFiles
from chargelift_runtime.watchdog import Liveness

log = logging.getLogger("chargelift_ingest")


def _topic_text(topic: object) -> str:
    # gmqtt hands over the raw bytes of a topic that is not UTF-8; it becomes a
    # bad_topic dead letter like any other malformed topic.
    if isinstance(topic, bytes):
        return topic.decode("utf-8", errors="replace")
    return str(topic)


def _quiet_not_stored(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """A handler that raised NotStored withheld its PUBACK on purpose: not an error."""
    if isinstance(context.get("exception"), NotStored):
        return
    loop.default_exception_handler(context)


async def run(settings: Settings) -> None:
    """Subscribe, validate, batch, write; on SIGTERM flush, acknowledge and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.set_exception_handler(_quiet_not_stored)
    # Up to two batches of messages are alive at once (a task, a future and a payload
    # each): with the default thresholds the cyclic GC would scan that heap every few
    # hundred allocations (measured: a third of the CPU at 20k msg/s). Nothing here
    # builds reference cycles at that rate; collect rarely, and never the start-up heap.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    max_future = timedelta(seconds=settings.max_future_seconds)
    handling = 0  # handlers running: each holds one unacknowledged message
    idle = asyncio.Event()  # set while no handler runs
    idle.set()
    committed = 0  # handlers that returned (their PUBACK goes out): the progress count
    # min_size 0: start even while the database is down; the batcher retries. Every
    # call is bounded: connecting (timeout), each statement (command_timeout, which
    # also bounds asyncpg's own cancel and reset), and each batch's transaction.
    async with asyncpg.create_pool(
        settings.database_url.get_secret_value(),
        min_size=0,
        max_size=2,
        timeout=settings.db_connect_timeout_s,
        command_timeout=settings.db_write_timeout_s,
    ) as pool:
        writer = Writer(
            pool,
            EdgeCertificates(settings.mqtt_certs_dir / "clients").chargers,
            dead_letter_max_bytes=settings.dead_letter_max_bytes,
            timeout=settings.db_write_timeout_s,
            acquire_timeout=settings.db_connect_timeout_s,
        )
        batcher = Batcher(writer, size=settings.batch_size, age_s=settings.batch_age_ms / 1000)
        budget = DeadLetterBudget(
            rate=settings.dead_letter_rate,
            burst=settings.dead_letter_burst,
            global_rate=settings.dead_letter_global_rate,
            global_burst=settings.dead_letter_global_burst,
        )

        async def on_message(msg: Message) -> None:
            # Only classify and enqueue; returning lets gmqtt send the PUBACK, which must
            # wait for the commit (submit raises NotStored if there will be none).
            nonlocal handling, committed
            handling += 1
            idle.clear()
            try:
                metrics.RECEIVED.inc()
                topic = _topic_text(msg.topic)
                item = validate(
                    topic,
                    msg.payload,
                    now=datetime.now(UTC),
                    max_bytes=settings.max_payload_bytes,
                    max_future=max_future,
                    min_time=settings.min_sampling_time,
                )
                if isinstance(item, Cleared):
                    # Nothing to store: acknowledged on return. Rare (an operator retiring
                    # a device), so each one is logged.
                    metrics.CLEARED.inc()
                    log.info("retained value of %s deleted (zero-length message)", topic)
                    committed += 1
                    return
                if isinstance(item, DeadLetter) and budget.allow(topic) is not None:
                    committed += 1  # acknowledged on return: progress
                    return  # over budget: counted, acknowledged, not stored
                await batcher.submit(item, topic, msg.payload)
                committed += 1
            finally:
                handling -= 1
                if not handling:
                    idle.set()

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
            subscriptions=settings.subscriptions,
            receive_maximum=settings.receive_maximum,
            # Retained values only for a new subscription, not at every reconnect of
            # the persistent session (they would be absorbed as duplicates anyway).
            retain_handling=1,
        )

        # Stuck = messages held (handlers waiting for their commit) and none committed
        # for the liveness window: /healthz turns 503, then the process exits.
        liveness = Liveness(
            "ingest",
            window=settings.liveness_s,
            exit_after=settings.watchdog_exit_s,
            waiting=lambda: handling > 0,
            progress=lambda: committed,
        )

        # Read at every scrape, not only when someone asks /healthz.
        metrics.MQTT_CONNECTED.set_function(lambda: 1 if client.is_connected else 0)
        metrics.DATABASE_OK.set_function(lambda: 1 if batcher.database_ok else 0)
        metrics.PENDING.set_function(lambda: batcher.pending)
        metrics.STALLED.set_function(liveness.stalled_for)
        metrics.watch_certificates(settings.mqtt_certs_dir, settings.mqtt_ca_file)

        def health() -> dict[str, object]:
            # Liveness, not readiness: while the broker or the database is away the
            # process waits for them as designed, and "ok" stays true unless messages
            # have waited without any commit for the whole liveness window.
            problem = liveness.problem()
            return {
                "ok": problem is None,
                "version": __version__,
                "problem": problem,
                "stalled_seconds": round(liveness.stalled_for(), 1),
                "mqtt_connected": client.is_connected,
                "database_ok": batcher.database_ok,
                "pending": batcher.pending,
            }

        server = await http.serve(settings.metrics_host, settings.metrics_port, health)
        async with server, liveness, asyncio.TaskGroup() as tg:
            writing = tg.create_task(batcher.run(), name="batcher")
            pruning = None
            if settings.dead_letter_retention_days:
                pruning = tg.create_task(
                    prune_forever(
                        pool,
                        settings.dead_letter_retention_days,
                        settings.dead_letter_prune_interval_s,
                    ),
                    name="dead-letter retention",
                )
            async with client:
                log.info(
                    "ingest %s up: %s → database; metrics on %s:%d",
                    __version__,
                    " + ".join(settings.subscriptions),
                    settings.metrics_host,
                    settings.metrics_port,
                )
                await stop.wait()
                log.info("stopping: flushing %d messages", batcher.pending)
                batcher.close()  # new messages are not taken: the broker keeps them
                done, _ = await asyncio.wait({writing}, timeout=settings.shutdown_timeout_s)
                if not done:
                    log.warning(
                        "database unavailable: %d messages left unacknowledged "
                        "(the broker redelivers them)",
                        batcher.pending,
                    )
                    writing.cancel()  # a transaction in progress rolls back
                    with contextlib.suppress(asyncio.CancelledError):
                        await writing
                batcher.abandon()
                # Let the handlers of committed messages return: gmqtt sends their PUBACKs
                # before the DISCONNECT.
                try:
                    async with asyncio.timeout(5):
                        await idle.wait()
                    await asyncio.sleep(0)  # gmqtt's done-callbacks write the PUBACKs
                except TimeoutError:
                    log.warning("%d message handlers still running at exit", handling)
            if pruning is not None:
                pruning.cancel()
    log.info("ingest stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: ``chargelift-ingest [run|migrate]``."""
    parser = argparse.ArgumentParser(prog="chargelift-ingest", description=__doc__)
    parser.add_argument("cmd", nargs="?", choices=["run", "migrate"], default="run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("gmqtt").setLevel(logging.ERROR)
    try:
        settings = MigrateSettings() if args.cmd == "migrate" else Settings()
    except ValidationError as exc:
        # Names and reasons only: a value may be a secret.
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        print(f"error: invalid or missing settings: {problems}", file=sys.stderr)
        return 2
    if isinstance(settings, MigrateSettings):
        try:
            applied = asyncio.run(
                migrate(
                    settings.database_url.get_secret_value(),
                    directory=settings.migrations_dir,
                    retention_days=settings.retention_days,
                    role_passwords=settings.role_passwords(),
                )
            )
        except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            print(f"error: migration failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        return 0
    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
