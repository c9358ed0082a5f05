"""``make bench-ingest``: readings through the real broker (mutual TLS) into the real
database, ingest against the naive design, in one run on one machine.

Started as separate processes: Mosquitto (the repository's configuration), PostgreSQL
(default durability settings: fsync and synchronous commit on), and the subscriber
under test; this process is the load generator (one mTLS connection per charger,
publishing QoS 1 with a window of unacknowledged messages per connection).

1. **ingest**: ``python -m chargelift_ingest.main run`` with its defaults (batches of
   5,000 / 200 ms, COPY + ``INSERT … ON CONFLICT DO NOTHING``, PUBACK after commit).
   ``--messages`` (default 300,000) readings over ``--chargers`` chargers × 6 fields.
   Sustained msg/s = messages / (last commit − first publish); p99 lag = 99th
   percentile of ``received_at − SamplingTime`` (SamplingTime = the moment of publishing).
2. **naive**: ``tests/bench/ingest/naive.py`` — per message, acquire a connection, one
   ``INSERT``, autocommit, release (the seed article's design; PUBACK after the insert
   so it loses nothing either). ``--naive-messages`` (default 20,000) readings.

Rows are then checked against what was published: ``lost`` = published keys not
stored, ``duplicated`` = stored rows beyond one per published key. The last line is
``ingest_msgs_per_s=… naive_msgs_per_s=… ratio=… lost=… duplicated=…``.

Certificates are kept in ``.dev/bench-ingest/certs``. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from chargelift_contract import Envelope, encode, field_topic
from chargelift_contract.mqtt import MqttClient, TlsFiles
from chargelift_devstack.mosquitto import REPO, MosquittoServer
from chargelift_devstack.postgres import PostgresServer
from chargelift_devstack.procs import free_port, shared_dir
from chargelift_ingest.migrate import migrate

STATE = REPO / ".dev" / "bench-ingest"
FIELDS = (
    ("PowerOutput", lambda i: float(i % 11000)),
    ("OutputCurrent", lambda i: float(i % 32)),
    ("SessionEnergy", lambda i: float(i)),
    ("OperationState", lambda i: ("idle", "charging")[i % 2]),
    ("ConnectedVehicle", lambda i: i % 3 != 0),
    ("MaximumOutputCurrent", lambda i: 16.0),
)


def charger_id(i: int) -> str:
    return f"bench-{i}"


def ensure_certs(n: int) -> Path:
    from chargelift_certs import pki

    certs = shared_dir(STATE / "certs")
    if not (certs / "ca.crt").exists():
        pki.create_ca(certs)
        pki.issue_server(certs)
        pki.issue_client(certs, "ingest", role="service")
    missing = [
        charger_id(i)
        for i in range(1, n + 1)
        if not (certs / "clients" / f"{charger_id(i)}.crt").exists()
    ]
    if missing:
        print(f"  issuing {len(missing)} charger certificate(s)...", flush=True)
        for identity in missing:
            pki.issue_client(certs, identity, role="charger")
    for path in [certs, certs / "clients"]:
        path.chmod(0o755)
    return certs


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@dataclass
class Published:
    keys: int = 0
    first_at: float = 0.0
    last_acked_at: float = 0.0


async def publish(
    broker: MosquittoServer, certs: Path, chargers: int, total: int, window: int
) -> Published:
    """Publish ``total`` readings over ``chargers`` connections; wait for every PUBACK.

    SamplingTime is the moment of publishing (kept strictly increasing per charger and
    field, so every message is a distinct reading).
    """
    per_charger = total // chargers
    clients = []
    for i in range(1, chargers + 1):
        ident = charger_id(i)
        c = MqttClient(
            host=broker.host,
            port=broker.port,
            client_id=f"load-{ident}",
            tls=TlsFiles.for_identity(certs / "ca.crt", certs, ident),
        )
        await c.__aenter__()
        clients.append((ident, c))
    for _, c in clients:
        async with asyncio.timeout(30):
            await c.wait_connected()
    out = Published(keys=per_charger * chargers)

    async def one(ident: str, client: MqttClient) -> None:
        last = datetime.min.replace(tzinfo=UTC)
        topics = [(field_topic(ident, name), make) for name, make in FIELDS]
        inflight: list[asyncio.Future[None]] = []
        for n in range(per_charger):
            topic, make = topics[n % len(topics)]
            t = datetime.now(UTC)
            if t <= last:
                t = last + timedelta(microseconds=1)
            last = t
            inflight.append(client.publish_nowait(topic, encode(Envelope(t, make(n)))))
            if len(inflight) >= window:
                await asyncio.gather(*inflight)
                inflight.clear()
        await asyncio.gather(*inflight)

    out.first_at = time.monotonic()
    await asyncio.gather(*(one(ident, c) for ident, c in clients))
    out.last_acked_at = time.monotonic()
    for _, c in clients:
        await c.__aexit__(None, None, None)
    return out


@dataclass
class Run:
    name: str
    published: int
    seconds: float
    publish_seconds: float
    stored: int
    lost: int
    duplicated: int
    p50_lag_ms: float
    p99_lag_ms: float
    absorbed: int
    batches: int = 0
    batch_mean: float = 0.0
    write_ms_mean: float = 0.0

    @property
    def rate(self) -> float:
        return self.stored / self.seconds if self.seconds else 0.0


async def rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval("SELECT count(*) FROM readings")
        return n
    finally:
        await conn.close()


async def measure(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    dsn: str,
    broker: MosquittoServer,
    certs: Path,
    *,
    messages: int,
    chargers: int,
    window: int,
    logs: Path,
    timeout: float,
) -> Run:
    with (logs / f"{name}.log").open("wb") as log:
        # Popen only forks: it does not wait for the child.
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=log)  # noqa: ASYNC220
    try:
        port = int(env["INGEST_METRICS_PORT"])
        deadline = time.monotonic() + 30
        while True:  # subscribed before the first message
            try:
                scrape(port)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{name} did not start; see {logs}") from None
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        print(f"  {name}: publishing {messages:,} messages ...", flush=True)
        pub = await publish(broker, certs, chargers, messages, window)
        print(
            f"  {name}: published in {pub.last_acked_at - pub.first_at:.1f} s, "
            "waiting for the rows ...",
            flush=True,
        )
        deadline = time.monotonic() + timeout
        stored = 0
        while time.monotonic() < deadline:
            stored = await rows(dsn)
            if stored >= pub.keys:
                break
            await asyncio.sleep(0.05)
        done_at = time.monotonic()
        await asyncio.sleep(1.0)  # anything more would be a duplicate (it cannot be)
        metrics = scrape(port)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM readings")
        distinct = await conn.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT charger, field, time FROM readings) d"
        )
        p50, p99 = await conn.fetchrow(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),"
            "       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)"
            "  FROM (SELECT extract(epoch FROM received_at - time) * 1000 AS lag"
            "          FROM readings) l"
        )
    finally:
        await conn.close()
    return Run(
        name=name,
        published=pub.keys,
        seconds=done_at - pub.first_at,
        publish_seconds=pub.last_acked_at - pub.first_at,
        stored=stored,
        lost=max(0, pub.keys - distinct),
        duplicated=stored - distinct,
        p50_lag_ms=float(p50 or 0.0),
        p99_lag_ms=float(p99 or 0.0),
        absorbed=int(metrics.get("ingest_duplicates_total", 0.0)),
        batches=int(metrics.get("ingest_batch_size_count", 0.0)),
        batch_mean=metrics.get("ingest_batch_size_sum", 0.0)
        / max(1.0, metrics.get("ingest_batch_size_count", 0.0)),
        write_ms_mean=1000
        * metrics.get("ingest_batch_write_seconds_sum", 0.0)
        / max(1.0, metrics.get("ingest_batch_write_seconds_count", 0.0)),
    )


async def create_db(server: PostgresServer, name: str) -> str:
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = server.dsn.rsplit("/", 1)[0] + f"/{name}"
    await migrate(dsn)
    return dsn


async def main_async(args: argparse.Namespace) -> int:
    certs = ensure_certs(args.chargers)
    work = shared_dir(Path(tempfile.mkdtemp(prefix="bench-ingest-")))
    logs = shared_dir(STATE / "logs")
    broker = MosquittoServer(certs_dir=certs, run_dir=shared_dir(work / "broker"))
    pg = PostgresServer(run_dir=shared_dir(work / "postgres"), settings={"max_connections": "50"})
    broker.start()
    pg.start()
    try:
        conn = await asyncpg.connect(pg.dsn)
        try:
            preload = await conn.fetchval("SELECT current_setting('shared_preload_libraries')")
        finally:
            await conn.close()
        timescale = "timescaledb" in preload
        print(
            f"bench-ingest: {os.cpu_count()} cores, Mosquitto mTLS, PostgreSQL "
            f"{'with TimescaleDB' if timescale else '(plain)'}, {args.chargers} chargers",
            flush=True,
        )
        common = {
            "MQTT_HOST": broker.host,
            "MQTT_PORT": str(broker.port),
            "MQTT_CA_FILE": str(certs / "ca.crt"),
            "MQTT_CERTS_DIR": str(certs),
        }
        ingest_dsn = await create_db(pg, "bench_ingest")
        ingest = await measure(
            "ingest",
            [sys.executable, *args.python_args, "-m", "chargelift_ingest.main", "run"],
            {
                **common,
                "DATABASE_URL": ingest_dsn,
                "INGEST_CLIENT_ID": "bench-ingest",
                "INGEST_METRICS_PORT": str(free_port()),
            },
            ingest_dsn,
            broker,
            certs,
            messages=args.messages,
            chargers=args.chargers,
            window=args.window,
            logs=logs,
            timeout=600,
        )
        naive_dsn = await create_db(pg, "bench_naive")
        naive = await measure(
            "naive",
            [sys.executable, str(Path(__file__).with_name("naive.py"))],
            {
                **common,
                "DATABASE_URL": naive_dsn,
                "INGEST_CLIENT_ID": "bench-naive",
                "INGEST_METRICS_PORT": str(free_port()),
            },
            naive_dsn,
            broker,
            certs,
            messages=args.naive_messages,
            chargers=args.chargers,
            window=args.window,
            logs=logs,
            timeout=900,
        )
    finally:
        broker.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        "| design | messages | stored | s | msg/s | publish s | p50 / p99 lag (ms) | lost | dup |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in (ingest, naive):
        print(
            f"| {r.name} | {r.published:,} | {r.stored:,} | {r.seconds:.1f} | {r.rate:,.0f} "
            f"| {r.publish_seconds:.1f} | {r.p50_lag_ms:,.0f} / {r.p99_lag_ms:,.0f} "
            f"| {r.lost} | {r.duplicated} |"
        )
    print(
        f"ingest: {ingest.batches} batches, {ingest.batch_mean:,.0f} messages and "
        f"{ingest.write_ms_mean:.0f} ms write+commit each on average; "
        f"{ingest.absorbed} redelivered duplicates absorbed"
    )
    ratio = ingest.rate / naive.rate if naive.rate else float("inf")
    print(
        f"ingest_msgs_per_s={ingest.rate:.0f} naive_msgs_per_s={naive.rate:.0f} "
        f"ratio={ratio:.1f} lost={ingest.lost + naive.lost} "
        f"duplicated={ingest.duplicated + naive.duplicated}",
        flush=True,
    )
    return 0 if ingest.lost == 0 and ingest.duplicated == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--naive-messages", type=int, default=20_000)
    parser.add_argument("--chargers", type=int, default=50)
    parser.add_argument(
        "--python-args", type=shlex.split, default=[], help="for ingest, e.g. '-m cProfile -o f'"
    )
    parser.add_argument("--window", type=int, default=500, help="unacknowledged per connection")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
