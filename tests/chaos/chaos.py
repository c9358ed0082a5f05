"""Whole-system chaos soak: charger → poller → Mosquitto → ingest → PostgreSQL → API.

``make chaos DURATION=600 CHARGERS=50`` runs the native stack (the same
:class:`chargelift_devstack.main.Stack` as ``make dev``) in a scratch directory on free
loopback ports, with time-accelerated simulated chargers, and on a seeded random
schedule

* SIGKILLs and restarts the poller, Mosquitto, ingest and PostgreSQL, several times each;
* freezes processes with SIGSTOP for a few seconds (SIGCONT after);
* once, holds the broker down long enough to drive the poller's outbox to its bound;
* all along, feeds malformed messages from a separate identity (``chaos-junk``).

Then it lets everything drain and reconciles (docs/reliability.md):

* every sample the poller durably accepted (its outbox, kept whole for the run by a
  replay window longer than the run) is in ``readings`` exactly once, same value and
  SamplingTime; the only gaps are the outbox's counted drops;
* ``latest`` equals the last accepted value of every charger and field;
* session energy per charger from the API equals the simulator's ground truth;
* dead letters equal the malformed messages sent (distinct).

The last line: ``chaos: samples=… stored=… lost=… duplicated=… dead_letters=… kills=…``;
the exit code is non-zero on any unexplained loss, any duplicate or any mismatch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from chargelift_certs import pki
from chargelift_contract import decode
from chargelift_contract.topics import FieldTopic, parse_topic
from chargelift_devstack.main import Ports, Stack
from chargelift_devstack.procs import (
    free_port,
    process_and_children,
    shared_dir,
    signal_all,
    tail,
)
from chargelift_ingest.deadletters import dead_letter_key
from chargelift_runtime.mqtt import MqttClient, MqttError, TlsFiles
from chargelift_runtime.retry import Backoff

log = logging.getLogger("chaos")

JUNK_ID = "chaos-junk"


def free_port_run(count: int) -> int:
    """A base port with ``count`` consecutive free ports on 127.0.0.1."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(30000, 60000 - count)
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no run of free ports")


@dataclass
class Tally:
    kills: Counter[str] = field(default_factory=Counter)
    freezes: Counter[str] = field(default_factory=Counter)
    outages: list[tuple[str, float]] = field(default_factory=list)  # (what, seconds down)
    # (what, seconds to recover, or None: no sample stored within the watch) and,
    # when not recovered, whether data was flowing (samples taken after the fault).
    recoveries: list[tuple[str, float | None]] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)  # no recovery although data flowed
    idle: list[str] = field(default_factory=list)  # no recovery: no sample was taken
    crashes: list[str] = field(default_factory=list)  # exits nobody asked for
    # (what, seconds to recover, seconds of it while data waited): the latter is judged
    waits: list[tuple[str, float, float]] = field(default_factory=list)
    junk_sent: set[tuple[str, bytes]] = field(default_factory=set)


# --- faults -----------------------------------------------------------------------------


class Chaos:
    """Applies faults to the running stack (blocking calls run in a thread)."""

    def __init__(
        self,
        stack: Stack,
        rng: random.Random,
        tally: Tally,
        outbox: Path | None = None,
        watch_s: float = 120.0,
    ) -> None:
        self.stack = stack
        self.rng = rng
        self.tally = tally
        self.outbox = outbox
        self.watch_s = watch_s
        self.watchers: set[asyncio.Task[None]] = set()
        self.busy: set[str] = set()  # targets a fault is working on (down on purpose)
        # Every fault's [start, end] (wall clock; end None while it lasts): a recovery is
        # judged without the time other faults kept the pipeline down meanwhile.
        self.faults: list[list[float | None]] = []

    def _fault_begins(self) -> int:
        self.faults.append([time.time(), None])
        return len(self.faults) - 1

    def _fault_ends(self, index: int) -> None:
        self.faults[index][1] = time.time()

    def _other_faults_within(self, index: int, begin: float, end: float) -> float:
        """Seconds of [begin, end] during which another fault was in progress."""
        spans = []
        for j, (s, e) in enumerate(self.faults):
            if j == index or s is None:
                continue
            lo, hi = max(begin, s), min(end, end if e is None else e)
            if hi > lo:
                spans.append((lo, hi))
        total, reach = 0.0, begin
        for lo, hi in sorted(spans):
            lo = max(lo, reach)
            if hi > lo:
                total += hi - lo
                reach = hi
        return total

    def watch_recovery(self, what: str, fault: int = -1) -> None:
        """Measure, in the background, how long until a sample taken after the fault
        ended is stored: the end-to-end recovery time."""
        task = asyncio.create_task(self._recovery(what, datetime.now(UTC), fault))
        self.watchers.add(task)
        task.add_done_callback(self.watchers.discard)

    async def _recovery(self, what: str, since: datetime, fault: int = -1) -> None:
        assert self.stack.postgres is not None
        started = time.monotonic()
        while time.monotonic() - started < self.watch_s:
            try:
                conn = await asyncpg.connect(self.stack.postgres.dsn, timeout=2)
                try:
                    found = await conn.fetchval(
                        "SELECT 1 FROM readings WHERE time > $1 AND field <> 'Availability' "
                        "LIMIT 1",
                        since,
                    )
                finally:
                    await conn.close()
            except (OSError, TimeoutError, asyncpg.PostgresError):
                found = None
            if found:
                self.tally.recoveries.append((what, time.monotonic() - started))
                # The pipeline's part: from the first sample taken after the fault (or
                # the fault's end, if one was waiting already) to its storage. Late in a
                # calm run no value changes for a minute: that is no data, not slowness.
                first = first_sample_since(self.outbox, since) if self.outbox else None
                begin = max(since.timestamp(), first if first is not None else 0.0)
                now = time.time()
                waited = max(0.0, now - begin - self._other_faults_within(fault, begin, now))
                self.tally.waits.append((what, time.monotonic() - started, waited))
                return
            await asyncio.sleep(0.2)
        self.tally.recoveries.append((what, None))
        # Not recovered: was there anything to store? Samples taken after the fault
        # (the outbox has them) that never reached the database mean a stuck pipeline;
        # none taken means no data was flowing (nothing to judge by).
        taken = samples_since(self.outbox, since) if self.outbox is not None else -1
        if taken == 0:
            self.tally.idle.append(what)
            log.warning("%s: no sample stored within %.0f s, none was taken", what, self.watch_s)
        else:
            self.tally.stuck.append(what)
            log.error(
                "%s: STUCK: %d samples taken since the fault ended, none stored in %.0f s",
                what,
                taken,
                self.watch_s,
            )

    async def kill_restart(self, target: str) -> None:
        down = self.rng.uniform(1.0, 5.0)
        started = time.monotonic()
        log.info("SIGKILL %s, restart in %.1fs", target, down)
        self.busy.add(target)
        fault = self._fault_begins()
        try:
            await self._kill_restart(target, down)
        finally:
            self.busy.discard(target)
            self._fault_ends(fault)
        self.tally.kills[target] += 1
        self.tally.outages.append((f"kill {target}", time.monotonic() - started))
        self.watch_recovery(f"kill {target}", fault)

    async def _kill_restart(self, target: str, down: float) -> None:
        stack = self.stack
        if target == "mosquitto":
            assert stack.broker is not None
            stack.broker.kill()
            await asyncio.sleep(down)
            await asyncio.to_thread(stack.broker.start)
        elif target == "postgres":
            assert stack.postgres is not None
            stack.postgres.kill()
            await asyncio.sleep(down)
            await asyncio.to_thread(stack.postgres.start)
        else:
            svc = stack.service(target)
            svc.kill()
            await asyncio.sleep(down)
            svc.start()

    async def freeze(self, target: str) -> None:
        stack = self.stack
        seconds = self.rng.uniform(1.0, 6.0)
        log.info("SIGSTOP %s for %.1fs", target, seconds)
        fault = self._fault_begins()
        if target in ("mosquitto", "postgres"):
            server = stack.broker if target == "mosquitto" else stack.postgres
            assert server is not None
            assert server.proc is not None
            # The server and its children: PostgreSQL's backends each call setsid(), so
            # they are not in the postmaster's process group; all of them freeze.
            pids = process_and_children(server.proc.pid)
            signal_all(pids, signal.SIGSTOP)
            await asyncio.sleep(seconds)
            signal_all(pids, signal.SIGCONT)
        else:
            svc = stack.service(target)
            svc.signal(signal.SIGSTOP)
            await asyncio.sleep(seconds)
            svc.signal(signal.SIGCONT)
        self._fault_ends(fault)
        self.tally.freezes[target] += 1
        self.watch_recovery(f"freeze {target}", fault)

    async def hold_broker_down(self, seconds: float) -> None:
        """Keep the broker down long enough for the outbox to reach its bound."""
        assert self.stack.broker is not None
        log.info("broker down for %.0fs (outbox bound)", seconds)
        self.busy.add("mosquitto")
        fault = self._fault_begins()
        try:
            self.stack.broker.stop()
            await asyncio.sleep(seconds)
            await asyncio.to_thread(self.stack.broker.start)
        finally:
            self.busy.discard("mosquitto")
            self._fault_ends(fault)
        self.tally.outages.append(("broker held down", seconds))
        self.watch_recovery("broker held down", fault)

    async def supervise(self, stop: asyncio.Event) -> None:
        """Like a restart policy: a process that exited when no fault was working on it
        crashed (or its watchdog ended it): report it with its log's tail, count it
        (the run fails) and start it again, so that one crash does not hide the rest."""
        stack = self.stack
        while not stop.is_set():
            await asyncio.sleep(0.5)
            for name, proc, log_path in self._processes():
                if name in self.busy or proc is None or proc.poll() is None:
                    continue
                if name in self.busy or stop.is_set():
                    continue
                code = proc.returncode
                self.tally.crashes.append(f"{name} exited with {code}")
                log.error(
                    "%s exited on its own (code %s); restarting it. Log tail:\n%s",
                    name,
                    code,
                    tail(log_path, 40),
                )
                self.busy.add(name)
                try:
                    if name == "mosquitto":
                        assert stack.broker is not None
                        stack.broker.proc = None
                        await asyncio.to_thread(stack.broker.start)
                    elif name == "postgres":
                        assert stack.postgres is not None
                        stack.postgres.proc = None
                        await asyncio.to_thread(stack.postgres.start)
                    else:
                        stack.service(name).start()
                finally:
                    self.busy.discard(name)

    def _processes(self) -> list[tuple[str, Any, Path]]:
        stack = self.stack
        out: list[tuple[str, Any, Path]] = [(s.name, s.proc, s.log) for s in stack.services]
        if stack.broker is not None:
            out.append(("mosquitto", stack.broker.proc, stack.broker.log_path))
        if stack.postgres is not None:
            out.append(("postgres", stack.postgres.proc, stack.postgres.log_path))
        return out


def _samples_after(outbox: Path, since: datetime, what: str) -> object | None:
    """``what`` (an aggregate) over the samples (not availability) the poller took after
    ``since``, read from its outbox; None when the outbox cannot be read."""
    try:
        db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute(
                f"SELECT {what} FROM outbox WHERE sampled_at > ? "
                "AND topic NOT LIKE '%/availability'",
                (since.timestamp(),),
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return None if row is None else row[0]


def samples_since(outbox: Path, since: datetime) -> int:
    """Samples (not availability) the poller took after ``since`` (-1: unknown)."""
    n = _samples_after(outbox, since, "count(*)")
    return -1 if n is None else int(str(n))


def first_sample_since(outbox: Path, since: datetime) -> float | None:
    """When the poller took its first sample after ``since`` (unix s), if it did."""
    at = _samples_after(outbox, since, "min(sampled_at)")
    return None if at is None else float(str(at))


def schedule(rng: random.Random, duration: float, kills_each: int) -> list[tuple[float, str, str]]:
    """(at seconds, action, target), sorted; the last 15 % of the run is calm."""
    events: list[tuple[float, str, str]] = []
    active = duration * 0.85
    for target in ("poller", "mosquitto", "ingest", "postgres"):
        events += [(rng.uniform(5, active), "kill", target) for _ in range(kills_each)]
    for target in ("poller", "ingest", "mosquitto", "postgres"):
        events.append((rng.uniform(5, active), "freeze", target))
    # While every charger has a car (plugged in the first quarter, unplugged after 40 %):
    # charging chargers change values every poll, so the outbox reaches its bound.
    events.append((duration * 0.27, "bound", "mosquitto"))
    return sorted(events)


# --- junk from a separate identity ------------------------------------------------------


def junk_messages(rng: random.Random, n: int) -> tuple[str, bytes]:
    """One malformed message, unique by ``n`` (each kind of the contract's rejections)."""
    now = datetime.now(UTC)
    base = f"chargers/{JUNK_ID}"
    kind = n % 7
    stamp = (now + timedelta(microseconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if kind == 0:
        return f"{base}/PowerOutput", b'{"SamplingTime": "%s", "Value": ' % stamp.encode()
    if kind == 1:
        return f"{base}/NoSuchField{n}", orjson.dumps({"SamplingTime": stamp, "Value": 1})
    if kind == 2:
        return f"{base}/PowerOutput", orjson.dumps({"SamplingTime": stamp, "Value": f"x{n}"})
    if kind == 3:
        return f"{base}/PowerOutput", b'{"SamplingTime": "%s", "Value": NaN}' % stamp.encode()
    if kind == 4:
        return f"{base}/bad topic {n}", b"{}"
    if kind == 5:
        far = (now + timedelta(days=3650, microseconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"{base}/PowerOutput", orjson.dumps({"SamplingTime": far, "Value": 1})
    big = {"SamplingTime": stamp, "Value": "x" * 20_000, "n": n}
    return f"{base}/Tariff", orjson.dumps(big)


async def junk_publisher(
    stack: Stack,
    certs_dir: Path,
    tally: Tally,
    stop: asyncio.Event,
    rng: random.Random,
    replay_s: float = 60.0,
) -> None:
    """Publish junk at ~5/s; after every reconnect re-send what the last ``replay_s``
    seconds sent (a SIGKILLed Mosquitto forgets what it acknowledged since its last
    save — the same reason the poller replays)."""
    tls = TlsFiles.for_identity(certs_dir / "ca.crt", certs_dir, JUNK_ID)
    sent: list[tuple[float, str, bytes]] = []
    n = 0
    async with MqttClient(
        host="127.0.0.1",
        port=stack.ports.mqtt,
        client_id=JUNK_ID,
        tls=tls,
        backoff=Backoff(initial=0.2, maximum=2.0),
    ) as client:
        seen_connections = 0
        while not stop.is_set():
            try:
                async with asyncio.timeout(1.0):
                    await client.wait_connected()
            except TimeoutError:
                continue
            try:
                if client.connections != seen_connections:
                    seen_connections = client.connections
                    horizon = time.monotonic() - replay_s
                    for _, topic, payload in [s for s in sent if s[0] >= horizon]:
                        await client.publish(topic, payload)
                topic, payload = junk_messages(rng, n)
                await client.publish(topic, payload)
            except MqttError:
                continue
            sent.append((time.monotonic(), topic, payload))
            tally.junk_sent.add((topic, payload))
            n += 1
            await asyncio.sleep(0.2)


async def traffic(stack: Stack, rng: random.Random, duration: float, stop: asyncio.Event) -> None:
    """Every charger gets a car early and loses it before the end, some twice."""
    url = stack.env_values["SIMULATOR_CONTROL_URL"]
    plan: list[tuple[float, str, str]] = []
    for i in range(1, stack.chargers + 1):
        cid = f"amtron-{i}"
        a = rng.uniform(2, duration * 0.25)
        b = rng.uniform(duration * 0.4, duration * 0.55)
        plan += [(a, "plug", cid), (b, "unplug", cid)]
        if rng.random() < 0.5:
            plan += [
                (rng.uniform(duration * 0.6, duration * 0.65), "plug", cid),
                (rng.uniform(duration * 0.7, duration * 0.8), "unplug", cid),
            ]
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        for at, action, cid in sorted(plan):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            if stop.is_set():
                return
            try:
                (await http.post(f"/chargers/{cid}/{action}")).raise_for_status()
            except httpx.HTTPError as exc:
                log.warning("simulator control %s %s failed: %s", action, cid, exc)


# --- reconciliation ---------------------------------------------------------------------


@dataclass
class Result:
    samples: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0
    dropped: int = 0
    lost_dropped: int = 0
    phantom: int = 0
    latest_wrong: int = 0
    dead_letters: int = 0
    junk_sent: int = 0
    junk_missing: int = 0
    energy_wrong: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.crashes
            or self.stuck
            or self.slow
            or self.lost > self.dropped
            or self.duplicated
            or self.mismatched
            or self.phantom
            or self.latest_wrong
            or self.junk_missing
            or self.energy_wrong
        )


Key = tuple[str, str, datetime]


def _key(topic: str, payload: bytes) -> tuple[Key, Any] | None:
    parsed = parse_topic(topic)
    if not isinstance(parsed, FieldTopic):
        return None  # availability: not a sample
    env = decode(payload)
    return (parsed.charger, parsed.field, env.sampling_time), env.value


def ledger(outbox: Path) -> tuple[dict[Key, Any], int, set[Key]]:
    """Accepted samples (the outbox, kept whole by the replay window): key -> value;
    conflicting duplicates in it; the keys the drop policy deleted (recorded)."""
    db = sqlite3.connect(outbox)
    try:
        rows = db.execute("SELECT topic, payload FROM outbox ORDER BY seq").fetchall()
        dropped_rows = db.execute("SELECT topic, payload FROM dropped").fetchall()
    finally:
        db.close()
    out: dict[Key, Any] = {}
    dups = 0
    for topic, payload in rows:
        kv = _key(topic, payload)
        if kv is None:
            continue
        key, value = kv
        if key in out and out[key] != value:
            dups += 1
        out[key] = value
    dropped = {kv[0] for t, p in dropped_rows if (kv := _key(t, p)) is not None}
    return out, dups, dropped


async def reconcile(
    stack: Stack, tally: Tally, outbox: Path, truth_log: Path, run_start: datetime
) -> Result:
    res = Result()
    accepted, outbox_dups, dropped = ledger(outbox)
    res.samples, res.dropped = len(accepted) + len(dropped), len(dropped)
    assert stack.postgres is not None
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        rows = await conn.fetch(
            "SELECT charger, field, time, value_num, value_text, value_bool, count(*) OVER "
            "(PARTITION BY charger, field, time) AS n FROM readings WHERE charger <> $1",
            JUNK_ID,
        )
        stored: dict[tuple[str, str, datetime], Any] = {}
        for r in rows:
            value = next(
                (r[c] for c in ("value_num", "value_bool", "value_text") if r[c] is not None), None
            )
            stored[(r["charger"], r["field"], r["time"])] = value
            if r["n"] > 1:
                res.duplicated += 1
        res.duplicated += outbox_dups
        for key in dropped:
            if key not in stored:
                res.lost += 1  # explained: counted by the outbox's drop policy
                res.lost_dropped += 1
        for key, value in accepted.items():
            if key not in stored:
                res.lost += 1
            elif not _same(stored[key], value):
                res.mismatched += 1
        res.stored = sum(1 for k in accepted if k in stored)
        res.phantom = sum(
            1
            for k in stored
            if k not in accepted and k not in dropped and k[1] in _fields(accepted)
        )
        last: dict[tuple[str, str], tuple[datetime, Any]] = {}
        for (charger, fld, t), value in accepted.items():
            if (charger, fld) not in last or t > last[(charger, fld)][0]:
                last[(charger, fld)] = (t, value)
        for r in await conn.fetch(
            "SELECT charger, field, time, value_num, value_text, "
            "value_bool FROM latest WHERE charger <> $1",
            JUNK_ID,
        ):
            want = last.get((r["charger"], r["field"]))
            value = next(
                (r[c] for c in ("value_num", "value_bool", "value_text") if r[c] is not None), None
            )
            if want is None or want[0] != r["time"] or not _same(value, want[1]):
                res.latest_wrong += 1
        res.latest_wrong += len(
            {k for k in last}
            - {
                (r["charger"], r["field"])
                for r in await conn.fetch("SELECT charger, field FROM latest")
            }
        )
        # One row per distinct message (its key: sha256 of topic and payload as sent;
        # the stored payload is cut to INGEST_DEAD_LETTER_MAX_BYTES).
        dead = await conn.fetch("SELECT key FROM dead_letters")
        res.dead_letters = len(dead)
        got = {bytes(r["key"]) for r in dead}
        res.junk_sent = len(tally.junk_sent)
        missing = {j for j in tally.junk_sent if dead_letter_key(*j) not in got}
        res.junk_missing = len(missing)
        res.notes += [f"junk missing: {t} {p[:60]!r}" for t, p in sorted(missing)[:10]]
    finally:
        await conn.close()
    gappy = {
        k[0] for k in dropped if k[1] in ("SessionEnergy", "ConnectedVehicle", "OperationState")
    }
    for line in await check_energy(stack, truth_log, run_start):
        charger = line.split(":", 1)[0]
        if charger in gappy:
            res.notes.append(f"energy differs where the outbox dropped samples: {line}")
        else:
            res.energy_wrong.append(line)
    return res


def _fields(accepted: dict[tuple[str, str, datetime], Any]) -> set[str]:
    return {k[1] for k in accepted}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) < 1e-9
    return bool(a == b)


async def check_energy(stack: Stack, truth_log: Path, run_start: datetime) -> list[str]:
    """Energy of the sessions the simulator finished, against the API's sessions."""
    truth: dict[str, list[dict[str, Any]]] = {}
    text = await asyncio.to_thread(truth_log.read_text)
    for line in text.splitlines():
        rec = json.loads(line)
        if rec.get("event") == "session_end":
            truth.setdefault(rec["charger"], []).append(rec)
    if not truth:
        return ["no session ended in the run: the energy check compared nothing"]
    env = stack.env_values
    wrong = []
    headers = {"Authorization": f"Bearer {env['API_TOKEN']}"}
    async with httpx.AsyncClient(base_url=env["API_URL"], headers=headers, timeout=60) as http:
        for charger, ends in sorted(truth.items()):
            # The truth log's times are simulated (accelerated); the readings carry real
            # SamplingTimes: ask for the whole run.
            start = run_start - timedelta(minutes=1)
            end = datetime.now(UTC) + timedelta(minutes=1)
            resp = await http.get(
                f"/api/v1/chargers/{charger}/sessions",
                params={"from": start.isoformat(), "to": end.isoformat()},
            )
            if resp.status_code != 200:
                wrong.append(f"{charger}: HTTP {resp.status_code}")
                continue
            api_wh = sum(s["energy_wh"] for s in resp.json()["sessions"] if s["end"])
            true_wh = sum(float(e["energy_wh"]) for e in ends)
            # The API sees the register at the poller's sampling instants: a session's
            # last increment may fall after the sample that saw the unplug (≤ one poll).
            log.info(
                "%s: %d sessions, api %.0f Wh, truth %.0f Wh", charger, len(ends), api_wh, true_wh
            )
            if abs(api_wh - true_wh) > max(1.0, 0.01 * true_wh):
                wrong.append(f"{charger}: api {api_wh:.0f} Wh vs truth {true_wh:.0f} Wh")
    return wrong


# --- the run ----------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    work = shared_dir(Path(tempfile.mkdtemp(prefix="chargelift-chaos-")))
    certs = shared_dir(work / "certs")
    pki.dev_set(certs)
    for i in range(1, args.chargers + 1):
        if not (certs / "clients" / f"amtron-{i}.crt").exists():
            pki.issue_client(certs, f"amtron-{i}")
    pki.issue_client(certs, JUNK_ID)
    ports = Ports(
        mqtt=free_port(),
        postgres=free_port(),
        api=free_port(),
        simulator=free_port_run(args.chargers),
        simulator_control=free_port(),
        poller_metrics=free_port(),
        ingest_metrics=free_port(),
        bridge_metrics=free_port(),
    )
    outbox = work / "outbox.sqlite"
    stack = Stack(
        certs_dir=certs,
        chargers=args.chargers,
        speed=args.speed,
        run_dir=work,
        ports=ports,
        seed=args.seed,
        env={
            # Every distinct junk message must become a dead letter: a budget above the
            # junk publisher's 5/s and its replays after a reconnect.
            "ingest": {
                "INGEST_DEAD_LETTER_RATE": "100",
                "INGEST_DEAD_LETTER_BURST": "10000",
                "INGEST_DEAD_LETTER_GLOBAL_RATE": "100",
                "INGEST_DEAD_LETTER_GLOBAL_BURST": "10000",
            },
            "poller": {
                "POLLER_OUTBOX": str(outbox),
                # The ledger: every acknowledged row is kept for the whole run, but only
                # the last two minutes are re-published after a reconnect (Mosquitto
                # forgets at most its last autosave_interval, 10 s): replaying the whole
                # run after every broker kill made recovery a minute late.
                "POLLER_REPLAY_WINDOW": "120",
                "POLLER_OUTBOX_KEEP_ACKED": str(args.duration * 3 + 600),
                "POLLER_OUTBOX_MAX_ROWS": str(args.outbox_max_rows),
            },
        },
        pg_settings={"fsync": "on"},
        # Cars come and go on the soak's own schedule, so that sessions end inside the run.
        simulator_args=["--no-random-traffic"],
    )
    tally = Tally()
    stop = asyncio.Event()
    started = time.monotonic()
    run_start = datetime.now(UTC)
    try:
        await asyncio.to_thread(stack.up)
        # Junk is not retained: sent before ingest's first subscription it would reach
        # nobody (and count as missing), so wait for it (connected = subscribed).
        await ingest_subscribed(stack)
        chaos = Chaos(stack, rng, tally, outbox=outbox)
        supervising = asyncio.Event()  # set: stop supervising (the drain stops the poller)
        supervisor = asyncio.create_task(chaos.supervise(supervising))
        junk = asyncio.create_task(junk_publisher(stack, certs, tally, stop, random.Random(7)))
        cars = asyncio.create_task(traffic(stack, rng, args.duration, stop))
        for at, action, target in schedule(rng, args.duration, args.kills):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            if action == "kill":
                await chaos.kill_restart(target)
            elif action == "freeze":
                await chaos.freeze(target)
            else:
                await chaos.hold_broker_down(args.bound_seconds)
        await asyncio.sleep(max(0.0, started + args.duration - time.monotonic()))
        stop.set()
        await junk
        await cars
        await asyncio.gather(*chaos.watchers)
        supervising.set()
        await supervisor
        log.info("faults done; letting the pipeline drain")
        # Stop sampling so the ledger is final: the poller flushes on SIGTERM; anything
        # still unsent is sent by a restarted poller (bounded attempts).
        poller = stack.service("poller")
        for _ in range(3):
            await drain(outbox, timeout=args.drain_timeout)
            await asyncio.to_thread(poller.stop)
            if unacked(outbox) == 0:
                break
            poller.start()
        await settle(stack, timeout=args.drain_timeout)
        res = await reconcile(stack, tally, outbox, work / "truth.jsonl", run_start)
    except BaseException:
        stop.set()
        stack.down()
        print_log_tails(stack, work)  # the harness itself failed: keep the evidence
        raise
    finally:
        stop.set()
        stack.down()
    res.crashes = list(tally.crashes)
    res.stuck = list(tally.stuck)
    res.slow = [
        f"{what}: {waited:.1f}s while data waited"
        for what, _, waited in tally.waits
        if waited > args.recovery_limit
    ]
    report(res, tally, work)
    if not res.ok:
        # A failing run keeps its evidence, --keep or not: each log's tail, here.
        print_log_tails(stack, work)
    elif not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if res.ok else 1


def print_log_tails(stack: Stack, work: Path, lines: int = 25) -> None:
    logs = [svc.log for svc in stack.services]
    if stack.broker is not None:
        logs.append(stack.broker.log_path)
    if stack.postgres is not None:
        logs.append(stack.postgres.log_path)
    for path in logs:
        print(f"--- tail of {path} ---")
        print(tail(path, lines))
    print(f"the run failed: its work directory is kept: {work}")


async def ingest_subscribed(stack: Stack, timeout: float = 120.0) -> None:
    url = stack.env_values["INGEST_METRICS_URL"].replace("/metrics", "/healthz")
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(url)).json().get("mqtt_connected"):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"ingest not subscribed after {timeout:.0f} s")


def unacked(outbox: Path) -> int:
    db = sqlite3.connect(outbox)
    try:
        return int(db.execute("SELECT count(*) FROM outbox WHERE acked_at IS NULL").fetchone()[0])
    finally:
        db.close()


async def drain(outbox: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if unacked(outbox) == 0:
            return
        await asyncio.sleep(1)
    log.warning("outbox not drained after %.0fs", timeout)


async def settle(stack: Stack, timeout: float) -> None:
    """Wait until ingest has nothing pending and the readings count stays still for 5 s."""
    assert stack.postgres is not None
    url = stack.env_values["INGEST_METRICS_URL"].replace("/metrics", "/healthz")
    deadline = time.monotonic() + timeout
    last, still_since = -1, time.monotonic()
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                pending = (await http.get(url)).json().get("pending", 1)
                conn = await asyncpg.connect(stack.postgres.dsn)
                try:
                    count = await conn.fetchval("SELECT count(*) FROM readings")
                finally:
                    await conn.close()
            except (httpx.HTTPError, OSError, asyncpg.PostgresError, ValueError):
                pending, count = 1, -1
            if count != last or pending:
                last, still_since = count, time.monotonic()
            elif time.monotonic() - still_since >= 5:
                return
            await asyncio.sleep(0.5)
    log.warning("pipeline did not settle within %.0fs", timeout)


def report(res: Result, tally: Tally, work: Path) -> None:
    print(f"kills: {dict(tally.kills)}  freezes: {dict(tally.freezes)}")
    for what, seconds in tally.outages:
        print(f"  {what}: {seconds:.1f}s")
    print("recovery (fault over -> a new sample stored):")
    for what, rec, waited in tally.waits:
        note = "" if waited >= rec - 0.5 else f" (data waiting only {waited:.1f}s of it)"
        print(f"  {what}: {rec:.1f}s{note}")
    for what in tally.idle:
        print(f"  {what}: none stored, but no data was flowing (no sample taken)")
    for what in tally.stuck:
        print(f"  {what}: STUCK: samples taken, none stored within the watch")
    for line in res.slow:
        print(f"recovered too slowly: {line}")
    for line in res.crashes:
        print(f"unexpected exit: {line}")
    print(
        f"outbox drops (recorded, the only allowed gaps): {res.dropped}, "
        f"of which missing downstream: {res.lost_dropped}"
    )
    print(
        f"mismatched values: {res.mismatched}  phantom rows: {res.phantom}  "
        f"latest wrong: {res.latest_wrong}"
    )
    print(f"junk sent: {res.junk_sent}  missing from dead letters: {res.junk_missing}")
    for line in res.energy_wrong:
        print(f"energy mismatch: {line}")
    for line in res.notes:
        print(line)
    print(f"work dir: {work}")
    print(
        f"chaos: samples={res.samples} stored={res.stored} lost={res.lost} "
        f"duplicated={res.duplicated} dead_letters={res.dead_letters} "
        f"kills={sum(tally.kills.values())}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--chargers", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed", type=float, default=30.0)
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs per component")
    parser.add_argument(
        "--recovery-limit",
        type=float,
        default=30.0,
        help="seconds a fault may take to recover (while data flows) before the run fails",
    )
    parser.add_argument("--outbox-max-rows", type=int, default=2_000)
    parser.add_argument("--bound-seconds", type=float, default=40)
    parser.add_argument("--drain-timeout", type=float, default=180)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "gmqtt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return asyncio.run(run(args))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
