"""``make bench-ingest``: readings through the real broker (mutual TLS) into the real
database, ingest against the naive design, in one run on one machine.

Started as separate processes: Mosquitto (the repository's configuration), PostgreSQL
(default durability settings: fsync and synchronous commit on), and the subscriber
under test; this process is the load generator (``loadgen.py``: one mTLS connection per
charger identity, QoS 1, a window of unacknowledged messages per connection).

1. **ingest**: ``python -m chargelift_ingest.main run`` with its defaults (batches of
   5,000 / 200 ms, COPY + ``INSERT … ON CONFLICT DO NOTHING``, PUBACK after commit).

   a. *burst*: ``--messages`` (default 300,000) readings over ``--chargers`` chargers
      × 6 fields, as fast as the broker takes them. Sustained msg/s = messages /
      (last row stored − first message published). The publisher outruns ingest, so
      the broker queues and the lag of this phase is the backlog, not ingest's latency.
   b. *paced*: ``--paced-rate`` msg/s (default 10,000, about half the capacity) for
      ``--paced-seconds`` (default 5): the lag of a subscriber that keeps up.

   Lag = ``received_at`` (start of the writing transaction) − SamplingTime, where
   SamplingTime is the moment the load generator built the message; p50/p99 over rows.
2. **naive**: ``tests/bench/ingest/naive.py`` — per message, acquire a connection, one
   ``INSERT``, autocommit, release (the naive design, docs/reference/measured-limits.md;
   PUBACK after the insert so it loses nothing either). ``--naive-messages`` (default
   20,000) readings, burst.

Rows are then checked against what was published: ``lost`` = published keys not
stored, ``duplicated`` = stored rows beyond one per published key (every message has a
distinct key). The last line is
``ingest_msgs_per_s=… naive_msgs_per_s=… ratio=… lost=… duplicated=…``.

Certificates are kept in ``.dev/bench-ingest/certs``. Traffic stays on 127.0.0.1. Every
wait is bounded (``--timeout`` per phase).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from chargelift_contract import Envelope, encode, field_topic
from chargelift_devstack.mosquitto import REPO, MosquittoServer
from chargelift_devstack.postgres import PostgresServer
from chargelift_devstack.procs import free_port, shared_dir
from chargelift_ingest.migrate import migrate
from chargelift_runtime.mqtt import TlsFiles

if TYPE_CHECKING:  # the type checker sees the package; at run time it is a sibling script
    from tests.bench.ingest.loadgen import Connection
else:
    sys.path.insert(0, str(Path(__file__).parent))
    from loadgen import Connection

STATE = REPO / ".dev" / "bench-ingest"
FIELDS: tuple[tuple[str, Callable[[int], object]], ...] = (
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
    # The broker binds a client id to its identity: one identity per ingest process.
    for identity in (*(f"bench-shared-{i}" for i in range(8)), "bench-ingest", "bench-naive"):
        if not (certs / "clients" / f"{identity}.crt").exists():
            pki.issue_client(certs, identity, role="ingest")
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


class Charger:
    """One charger identity's connection and message stream (distinct keys)."""

    def __init__(self, ident: str, conn: Connection) -> None:
        self.ident = ident
        self.conn = conn
        self.topics = [(field_topic(ident, name).encode(), make) for name, make in FIELDS]
        self.n = 0
        self.last = datetime.min.replace(tzinfo=UTC)

    def make(self, count: int) -> list[tuple[bytes, bytes]]:
        """``count`` messages stamped now (strictly increasing per charger)."""
        t = datetime.now(UTC)
        out = []
        for _ in range(count):
            if t <= self.last:
                t = self.last + timedelta(microseconds=1)
            self.last = t
            topic, make = self.topics[self.n % len(self.topics)]
            out.append((topic, encode(Envelope(t, make(self.n)))))  # type: ignore[arg-type]
            self.n += 1
        return out


async def connect(broker: MosquittoServer, certs: Path, chargers: int, tag: str) -> list[Charger]:
    out = []
    for i in range(1, chargers + 1):
        ident = charger_id(i)
        ctx: ssl.SSLContext = TlsFiles.for_identity(certs / "ca.crt", certs, ident).context()
        async with asyncio.timeout(30):
            conn = await Connection.open(broker.host, broker.port, ctx, ident, f"{tag}-{ident}")
        out.append(Charger(ident, conn))
    return out


async def burst(chargers: list[Charger], total: int, window: int) -> tuple[int, float, float]:
    """Publish ``total`` messages as fast as acknowledged; (published, start, end)."""
    per_charger = total // len(chargers)

    async def one(c: Charger) -> None:
        left = per_charger
        while left:
            n = min(window, left)
            c.conn.send(c.make(n))
            await c.conn.wait_acked()
            left -= n

    start = time.monotonic()
    await asyncio.gather(*(one(c) for c in chargers))
    return per_charger * len(chargers), start, time.monotonic()


async def paced(chargers: list[Charger], rate: float, seconds: float) -> int:
    """Publish ``rate`` msg/s for ``seconds`` in 10-ms ticks; wait for every PUBACK."""
    start = time.monotonic()
    sent = 0
    turn = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(rate * elapsed) - sent
        # Spread the tick's messages over the connections, a few each.
        while due > 0:
            c = chargers[turn % len(chargers)]
            turn += 1
            n = min(due, 1 + int(rate / 100 / len(chargers)))
            if len(c.conn.outstanding) > 5_000:  # bounded: the broker is stuck
                await c.conn.wait_acked()
            c.conn.send(c.make(n))
            sent += n
            due -= n
        await asyncio.sleep(0.01)
    await asyncio.gather(*(c.conn.wait_acked() for c in chargers))
    return sent


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
    paced_rate: float = 0.0
    paced_p50_ms: float = 0.0
    paced_p99_ms: float = 0.0
    paced_max_ms: float = 0.0
    batches: int = 0
    batch_mean: float = 0.0
    write_ms_mean: float = 0.0

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0


async def rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval("SELECT count(*) FROM readings")
        return n
    finally:
        await conn.close()


async def wait_rows(dsn: str, expected: int, timeout: float) -> float:
    """Wait until ``readings`` has ``expected`` rows; return when (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await rows(dsn) >= expected:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{expected:,} rows not stored within {timeout:.0f} s")


LAG = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag)
  FROM (SELECT extract(epoch FROM received_at - time) * 1000 AS lag
          FROM readings WHERE time >= $1 AND time < $2) l
"""


async def measure(
    name: str,
    cmd: list[str],
    envs: list[dict[str, str]],
    dsn: str,
    broker: MosquittoServer,
    certs: Path,
    args: argparse.Namespace,
    *,
    messages: int,
    paced_phase: bool,
    logs: Path,
) -> Run:
    """Start one subscriber process per ``envs`` entry and measure them together."""
    procs = []
    for i, env in enumerate(envs):
        suffix = f"-{i + 1}" if len(envs) > 1 else ""
        with (logs / f"{name}{suffix}.log").open("wb") as log:
            # Popen only forks: it does not wait for the child.
            proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=log)  # noqa: ASYNC220
        procs.append(proc)
    ports = [int(env["INGEST_METRICS_PORT"]) for env in envs]
    chargers: list[Charger] = []
    paced_from = paced_to = datetime.now(UTC)
    try:
        deadline = time.monotonic() + 30
        for port, proc in zip(ports, procs, strict=True):
            while True:  # subscribed before the first message
                try:
                    if scrape(port).get("ingest_mqtt_connected", 1.0) == 1.0:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{name} did not start; see {logs}")
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        chargers = await connect(broker, certs, args.chargers, f"load-{name}")
        print(f"  {name}: publishing {messages:,} messages (burst) ...", flush=True)
        burst_from = datetime.now(UTC)
        published, first_at, acked_at = await burst(chargers, messages, args.window)
        burst_to = datetime.now(UTC)
        print(
            f"  {name}: published in {acked_at - first_at:.1f} s, waiting for the rows ...",
            flush=True,
        )
        done_at = await wait_rows(dsn, published, args.timeout)
        run = Run(
            name=name,
            published=published,
            seconds=done_at - first_at,
            publish_seconds=acked_at - first_at,
            stored=0,
            lost=0,
            duplicated=0,
            p50_lag_ms=0.0,
            p99_lag_ms=0.0,
            absorbed=0,
        )
        total = published
        if paced_phase:
            print(
                f"  {name}: paced, {args.paced_rate:,.0f} msg/s for {args.paced_seconds:.0f} s ...",
                flush=True,
            )
            paced_from = datetime.now(UTC)
            sent = await paced(chargers, args.paced_rate, args.paced_seconds)
            paced_to = datetime.now(UTC)
            total += sent
            await wait_rows(dsn, total, args.timeout)
            run.paced_rate = sent / args.paced_seconds
        await asyncio.sleep(1.0)  # anything more would be a duplicate (it cannot be)
        metrics: dict[str, float] = {}
        for port in ports:
            for key, value in scrape(port).items():
                metrics[key] = metrics.get(key, 0.0) + value
    finally:
        for c in chargers:
            await c.conn.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    conn = await asyncpg.connect(dsn)
    try:
        run.stored = await conn.fetchval("SELECT count(*) FROM readings")
        distinct = await conn.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT charger, field, time FROM readings) d"
        )
        p50, p99, _ = await conn.fetchrow(LAG, burst_from, burst_to)
        if paced_phase:
            pp50, pp99, pmax = await conn.fetchrow(LAG, paced_from, paced_to)
            run.paced_p50_ms, run.paced_p99_ms = float(pp50 or 0), float(pp99 or 0)
            run.paced_max_ms = float(pmax or 0)
    finally:
        await conn.close()
    run.lost = max(0, total - distinct)
    run.duplicated = run.stored - distinct
    run.p50_lag_ms, run.p99_lag_ms = float(p50 or 0.0), float(p99 or 0.0)
    run.absorbed = int(metrics.get("ingest_duplicates_total", 0.0))
    run.batches = int(metrics.get("ingest_batch_size_count", 0.0))
    run.batch_mean = metrics.get("ingest_batch_size_sum", 0.0) / max(1.0, run.batches)
    run.write_ms_mean = (
        1000
        * metrics.get("ingest_batch_write_seconds_sum", 0.0)
        / max(1.0, metrics.get("ingest_batch_write_seconds_count", 0.0))
    )
    return run


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
        ingest_cmd = [sys.executable, *args.python_args, "-m", "chargelift_ingest.main", "run"]
        ingest = await measure(
            "ingest",
            ingest_cmd,
            [
                {
                    **common,
                    "DATABASE_URL": ingest_dsn,
                    "MQTT_IDENTITY": "bench-ingest",
                    "INGEST_METRICS_PORT": str(free_port()),
                }
            ],
            ingest_dsn,
            broker,
            certs,
            args,
            messages=args.messages,
            paced_phase=args.paced_seconds > 0,
            logs=logs,
        )
        runs = [ingest]
        if args.scale_out > 1:
            shared_dsn = await create_db(pg, "bench_shared")
            runs.append(
                await measure(
                    f"ingest x{args.scale_out} $share",
                    ingest_cmd,
                    [
                        {
                            **common,
                            "DATABASE_URL": shared_dsn,
                            "MQTT_IDENTITY": f"bench-shared-{i}",
                            "INGEST_SHARE_GROUP": "bench",
                            "INGEST_METRICS_PORT": str(free_port()),
                        }
                        for i in range(args.scale_out)
                    ],
                    shared_dsn,
                    broker,
                    certs,
                    args,
                    messages=args.messages,
                    paced_phase=False,
                    logs=logs,
                )
            )
        naive_dsn = await create_db(pg, "bench_naive")
        naive = await measure(
            "naive",
            [sys.executable, str(Path(__file__).with_name("naive.py"))],
            [
                {
                    **common,
                    "DATABASE_URL": naive_dsn,
                    "MQTT_IDENTITY": "bench-naive",
                    "INGEST_METRICS_PORT": str(free_port()),
                }
            ],
            naive_dsn,
            broker,
            certs,
            args,
            messages=args.naive_messages,
            paced_phase=False,
            logs=logs,
        )
    finally:
        broker.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        "| design | messages | stored | s | msg/s | publisher done (s) "
        "| burst p50 / p99 lag (ms) | lost | dup |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in (*runs, naive):
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
    if ingest.paced_rate:
        print(
            f"ingest paced at {ingest.paced_rate:,.0f} msg/s: lag p50 "
            f"{ingest.paced_p50_ms:.0f} ms, p99 {ingest.paced_p99_ms:.0f} ms, "
            f"max {ingest.paced_max_ms:.0f} ms"
        )
    ratio = ingest.rate / naive.rate if naive.rate else float("inf")
    p99 = ingest.paced_p99_ms if ingest.paced_rate else ingest.p99_lag_ms
    print(f"ingest_sustained_msgs_per_s={ingest.rate:.0f} ingest_p99_lag_ms={p99:.0f}")
    print(
        f"ingest_msgs_per_s={ingest.rate:.0f} naive_msgs_per_s={naive.rate:.0f} "
        f"ratio={ratio:.1f} lost={ingest.lost + naive.lost} "
        f"duplicated={ingest.duplicated + naive.duplicated}",
        flush=True,
    )
    ok = not any(r.lost or r.duplicated for r in (*runs, naive))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--naive-messages", type=int, default=20_000)
    parser.add_argument("--chargers", type=int, default=50)
    parser.add_argument("--window", type=int, default=500, help="unacknowledged per connection")
    parser.add_argument("--paced-rate", type=float, default=10_000.0)
    parser.add_argument("--paced-seconds", type=float, default=5.0, help="0: no paced phase")
    parser.add_argument("--timeout", type=float, default=600.0, help="per phase, seconds")
    parser.add_argument(
        "--scale-out",
        type=int,
        default=0,
        help="also measure N ingest processes on one $share subscription (N >= 2)",
    )
    parser.add_argument(
        "--python-args", type=shlex.split, default=[], help="for ingest, e.g. '-m cProfile -o f'"
    )
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
