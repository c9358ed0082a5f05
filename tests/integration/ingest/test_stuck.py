"""Issue 13: a database that dies or freezes mid-write never stops ingest for good.

* The cause seen in the 20-kill chaos soak, reproduced deterministically: a backend
  reports FATAL (PostgreSQL killed) and its socket is not closed yet; asyncpg then
  raises InternalClientError on the next statement. That error used to kill the
  batcher task, hence ingest, and nothing restarted it.
* PostgreSQL frozen (SIGSTOP) mid-stream: every call is bounded, so ingest recovers and
  stores everything once it thaws.
* A database call made to hang past the liveness window: /healthz turns 503, then the
  process's own watchdog ends it (exit 70) so its supervisor restarts it; the restarted
  ingest stores everything (nothing acknowledged was uncommitted).
* ingest itself frozen longer than the window: /healthz does not answer, and on SIGCONT
  the watchdog ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_devstack.postgres import PostgresServer
from chargelift_devstack.procs import process_and_children, signal_all
from tests.integration.ingest.conftest import (
    IngestProcess,
    Publisher,
    count_rows,
    ingest_env,
    messages,
    wait_rows,
)
from tests.support.certs import TestCerts
from tests.support.db import fresh_database

pytestmark = pytest.mark.integration

EXIT_STUCK = 70


def _fatal(message: str, code: str = "57P01") -> bytes:
    """A PostgreSQL ErrorResponse (severity FATAL), as a backend sends before it exits."""
    fields = b"".join(
        kind + text.encode() + b"\0"
        for kind, text in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


class PgProxy:
    """A TCP proxy in front of PostgreSQL that can make the backends 'die' badly:
    :meth:`fatal_and_linger` sends each client a FATAL error and closes the server side,
    but keeps the client's socket open and silent (its close is never seen)."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter, list[bool]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> PgProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for client, upstream, _ in self._pairs:
            client.close()
            upstream.close()
        for task in list(self._tasks):
            task.cancel()

    def dsn(self, dsn: str) -> str:
        host_port = f"{self.upstream[0]}:{self.upstream[1]}"
        return dsn.replace(host_port, f"127.0.0.1:{self.port}")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        alive = [True]
        self._pairs.append((writer, up_writer, alive))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if not alive[0]:
                        return
                    dst.write(data)
                    await dst.drain()
            if alive[0]:
                dst.close()

        for task in (
            asyncio.create_task(pump(reader, up_writer)),
            asyncio.create_task(pump(up_reader, writer)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def fatal_and_linger(self) -> int:
        """Every open connection: FATAL to the client, server side closed, client kept."""
        n = 0
        for client, upstream, alive in self._pairs:
            if alive[0] and not client.is_closing():
                alive[0] = False
                client.write(_fatal("terminating connection due to unexpected postmaster exit"))
                upstream.close()
                n += 1
        return n


@pytest.fixture
async def proxy(postgres: PostgresServer) -> AsyncIterator[PgProxy]:
    async with PgProxy(postgres.host, postgres.port) as p:
        yield p


async def _health(proc: IngestProcess) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient(timeout=2) as http:
        r = await http.get(proc.metrics_url.replace("/metrics", "/healthz"))
        return r.status_code, r.json()


async def test_a_backend_that_dies_mid_session_does_not_stop_ingest(
    own_broker: MosquittoServer,
    certs: TestCerts,
    publisher: Publisher,
    db: str,
    proxy: PgProxy,
    tmp_path: Path,
) -> None:
    proc = IngestProcess(ingest_env(own_broker, certs, proxy.dsn(db)), tmp_path / "ingest.log")
    proc.start()
    await proc.ready()
    try:
        msgs = messages(20)  # 600 messages
        first, rest = msgs[:300], msgs[300:]
        await publisher.publish(first)
        await wait_rows(db, len(first))
        # The pooled connection's backend "dies": FATAL arrives, the close does not.
        assert proxy.fatal_and_linger() >= 1
        await publisher.publish(rest)
        # Before the fix the next statement raised InternalClientError ("cannot switch
        # to state 15; another operation (2) is in progress"), the batcher task died
        # and took the process with it: these rows never came.
        assert await wait_rows(db, len(msgs), timeout=30) == len(msgs)
        assert proc.proc is not None
        assert proc.proc.poll() is None, (tmp_path / "ingest.log").read_text()[-3000:]
        assert (await _health(proc))[0] == 200
    finally:
        proc.kill()


def _cluster_pids(server: PostgresServer) -> list[int]:
    """The postmaster and all its children (backends call setsid: not one group)."""
    assert server.proc is not None
    return process_and_children(server.proc.pid)


@pytest.mark.slow
async def test_a_frozen_database_mid_stream_is_survived_and_everything_stored(
    own_postgres: PostgresServer,
    own_broker: MosquittoServer,
    certs: TestCerts,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    db = await fresh_database(own_postgres)
    env = ingest_env(
        own_broker,
        certs,
        db,
        INGEST_DB_WRITE_TIMEOUT_S="3",
        INGEST_DB_CONNECT_TIMEOUT_S="3",
        INGEST_LIVENESS_S="60",
    )
    proc = IngestProcess(env, tmp_path / "ingest.log")
    proc.start()
    await proc.ready()
    try:
        msgs = messages(200)  # 6,000 messages
        sending = asyncio.create_task(publisher.publish(msgs))
        while await count_rows(db) < 1000:
            await asyncio.sleep(0.05)
        pids = _cluster_pids(own_postgres)
        signal_all(pids, signal.SIGSTOP)  # frozen mid-write: nothing answers
        try:
            await asyncio.sleep(10)  # > the write timeout: ingest gives up and retries
            assert (await _health(proc))[0] == 200  # waiting, within the window: alive
        finally:
            signal_all(pids, signal.SIGCONT)
        await sending
        assert await wait_rows(db, len(msgs), timeout=60) == len(msgs)
        assert proc.proc is not None
        assert proc.proc.poll() is None
    finally:
        proc.kill()


@pytest.mark.slow
async def test_a_hung_database_call_turns_healthz_bad_and_the_watchdog_exits(
    own_postgres: PostgresServer,
    own_broker: MosquittoServer,
    certs: TestCerts,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    db = await fresh_database(own_postgres)
    # Time bounds far beyond the window: only the watchdog can notice the hang.
    env = ingest_env(
        own_broker,
        certs,
        db,
        INGEST_DB_WRITE_TIMEOUT_S="600",
        INGEST_DB_CONNECT_TIMEOUT_S="600",
        INGEST_LIVENESS_S="4",
        INGEST_WATCHDOG_EXIT_S="4",
    )
    proc = IngestProcess(env, tmp_path / "ingest.log")
    proc.start()
    await proc.ready()
    msgs = messages(20)
    first, rest = msgs[:300], msgs[300:]
    pids: list[int] = []
    try:
        await publisher.publish(first)
        await wait_rows(db, len(first))
        pids = _cluster_pids(own_postgres)
        signal_all(pids, signal.SIGSTOP)
        await publisher.publish(rest)  # held by ingest, its write hangs
        loop = asyncio.get_running_loop()
        frozen_at = loop.time()
        status: int = 200
        doc: dict[str, object] = {}
        while loop.time() - frozen_at < 20 and status == 200:
            await asyncio.sleep(0.5)
            status, doc = await _health(proc)
        assert status == 503, doc
        assert "without progress" in str(doc["problem"])
        unhealthy_after = loop.time() - frozen_at
        assert proc.proc is not None
        code = await asyncio.to_thread(proc.proc.wait, 30)
        exited_after = loop.time() - frozen_at
        print(f"healthz 503 after {unhealthy_after:.1f} s, exit {code} after {exited_after:.1f} s")
        assert code == EXIT_STUCK
        assert "is stuck" in (tmp_path / "ingest.log").read_text()
    finally:
        signal_all(pids, signal.SIGCONT)
    # The supervisor's restart: everything held unacknowledged is redelivered and stored.
    proc.start()
    try:
        await proc.ready()
        assert await wait_rows(db, len(msgs), timeout=60) == len(msgs)
    finally:
        proc.kill()


async def test_ingest_frozen_longer_than_the_window_is_unhealthy_then_exits(
    own_broker: MosquittoServer,
    certs: TestCerts,
    db: str,
    tmp_path: Path,
) -> None:
    env = ingest_env(own_broker, certs, db, INGEST_LIVENESS_S="3", INGEST_WATCHDOG_EXIT_S="3")
    proc = IngestProcess(env, tmp_path / "ingest.log")
    proc.start()
    await proc.ready()
    assert proc.proc is not None
    try:
        proc.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(5)
        with pytest.raises(httpx.TimeoutException):  # a frozen process does not answer
            await _health(proc)
        proc.proc.send_signal(signal.SIGCONT)
        code = await asyncio.to_thread(proc.proc.wait, 15)
        assert code == EXIT_STUCK
        assert "frozen for" in (tmp_path / "ingest.log").read_text()
    finally:
        proc.kill()
