"""``make bench-api``: the read API over 20 chargers x 30 days of 1 Hz data, under wrk.

1. A PostgreSQL of its own in ``.dev/bench-api`` (kept for the next run: loading is
   the slow part), migrated with ingest's migrations (the real schema). The database
   path follows the installation (``PG_BINDIR``): TimescaleDB when it has the extension
   (cluster in ``.dev/bench-api/postgres-timescaledb``), plain PostgreSQL otherwise
   (``.dev/bench-api/postgres``); the output says which. On TimescaleDB the schema's
   background policies are paused in the bench's database: the bench compresses itself.
2. The data set, generated inside PostgreSQL (``INSERT … SELECT``, not through MQTT):
   what the edge publishes when it polls every charger at 1 Hz with change-only
   publishing and a full snapshot every 5 minutes. One charging session per charger
   and day (2 h to 4 h 42 min at 11 kW, starting between 06:00 and 20:59 local time,
   so some cross the 22:00 tariff change and midnight); while charging, PowerOutput
   (measurement jitter), SessionEnergy and SessionDuration change every second and
   OutputCurrent every 10 s; the 12 fields are all republished every 5 minutes;
   tariff T1/T2 (32/21 ct/kWh) switches at 06:00 and 22:00 Europe/Berlin.
   ``VACUUM ANALYZE`` afterwards, as autovacuum would.
3. ``chargelift-api`` (uvicorn, one process) and ``wrk`` (installed with apt-get when
   missing) as the HTTP load generator, with a Lua script that rotates over the
   chargers and days and reports p50/p95/p99. Closed loop: ``--connections`` requests
   in flight; everything shares the machine's 2 cores.
4. ``EXPLAIN (ANALYZE, BUFFERS)`` of the queries that matter, written next to the
   results (``.dev/bench-api/plans-<path>-<state>.txt``).
5. Storage: bytes per reading on disk (table, and with indexes). Plain PostgreSQL: raw
   only (``pg_table_size``/``pg_indexes_size``: its rows are far below the TOAST
   threshold, so nothing of them is compressed). TimescaleDB: raw (uncompressed
   chunks, ``hypertable_detailed_size``), then every chunk compressed with the schema's
   segmenting and ordering (``compress_chunk`` over ``show_chunks``) and measured again,
   and the scenarios run a second time on the compressed chunks (what the compression
   policy makes of data older than 7 days). A kept data set with compressed chunks is
   loaded again, so that "raw" is always the data set as loaded (decompressing would
   leave bloated indexes behind).

Scenarios: ``state`` (GET /chargers/{id}), ``history_24h`` (PowerOutput, 24 h in 1 h
buckets, a random day), ``history_24h_dense`` (the same for SessionEnergy, which changes
every second while charging), ``energy_30d`` (30 days of daily energy and cost),
``sessions_30d`` (a month of sessions), ``energy_365d`` (a year view as the API answers it
today: 365 daily values ending with the data set, whose days are all in it). Traffic stays
on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import asyncpg

from chargelift_api import repository as sql
from chargelift_api.auth import hash_token
from chargelift_api.config import Settings as ApiSettings
from chargelift_devstack.mosquitto import REPO
from chargelift_devstack.postgres import PostgresServer, preload_settings
from chargelift_devstack.procs import free_port, shared_dir
from chargelift_ingest.migrate import has_timescaledb, migrate

if TYPE_CHECKING:  # the type checker sees the package; at run time it is a sibling script
    from tests.bench.api.storage import (
        PLAIN,
        TIMESCALEDB,
        Storage,
        describe_path,
        path_key,
        ratio,
        storage_table,
    )
else:
    sys.path.insert(0, str(Path(__file__).parent))
    from storage import (
        PLAIN,
        TIMESCALEDB,
        Storage,
        describe_path,
        path_key,
        ratio,
        storage_table,
    )

STATE = REPO / ".dev" / "bench-api"
BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 10, 26, tzinfo=BERLIN)  # after the October DST change: UTC+1 throughout
TOKEN = "bench-api-read-token"
PG_SETTINGS = {
    # Disposable bench data: no durability needed while loading.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "2GB",
    "effective_cache_size": "12GB",
    "maintenance_work_mem": "512MB",
    "work_mem": "64MB",
    "max_wal_size": "16GB",
    "checkpoint_timeout": "30min",
    "max_connections": "50",
}
FIELDS = (
    "OperationState",
    "VendorState",
    "ConnectedVehicle",
    "PowerOutput",
    "OutputCurrent",
    "MaximumOutputCurrent",
    "SessionEnergy",
    "SessionDuration",
    "EnergyPrice",
    "Tariff",
    "ErrorCode",
    "FirmwareVersion",
)


def charger_id(c: int) -> str:
    return f"bench-{c:02d}"


# --- the data set ------------------------------------------------------------------

SESSIONS = """
CREATE TABLE bench_sessions AS
SELECT c, format('bench-%s', lpad(c::text, 2, '0')) AS charger, d, st,
       st + make_interval(secs => dur) AS en, dur
  FROM generate_series(1, $1::int) c, generate_series(0, $2::int - 1) d,
       LATERAL (SELECT $3::timestamptz
                       + make_interval(days => d, hours => 6 + (c * 7 + d * 5) % 15,
                                       mins => (c * 13 + d * 17) % 60, secs => 17) AS st,
                       7200 + ((c * 11 + d * 3) % 10) * 1080 AS dur) x
"""

# energy after k seconds at 11,040 W, floored to Wh like MHCP's ChgNrg
_E = "floor(k * 11040 / 3600.0)"

# The 1 Hz changes of one charger's sessions (k = seconds since the session began).
CHARGING = f"""
INSERT INTO readings (time, charger, field, value_num)
SELECT s.st + make_interval(secs => k), s.charger, f.field, f.v
  FROM bench_sessions s, generate_series(0, s.dur) k,
       LATERAL (VALUES
         ('PowerOutput', CASE WHEN k < s.dur THEN 11020 + ((k * 37 + s.c * 11) % 41) ELSE 0 END),
         ('SessionEnergy', {_E}),
         ('SessionDuration', k),
         ('OutputCurrent', CASE WHEN k % 10 <> 0 AND k < s.dur THEN NULL
                                WHEN k < s.dur THEN 16 + ((k / 10) % 3) * 0.1 ELSE 0 END)
       ) AS f(field, v)
 WHERE s.charger = $1 AND f.v IS NOT NULL
 ORDER BY f.field, 1
ON CONFLICT DO NOTHING
"""

EVENTS = """
INSERT INTO readings (time, charger, field, value_text, value_bool)
SELECT e.t, s.charger, e.field, e.txt, e.flag
  FROM bench_sessions s,
       LATERAL (VALUES
         (s.st, 'OperationState', 'charging', NULL::boolean),
         (s.en, 'OperationState', 'idle', NULL),
         (s.st, 'VendorState', 'Charging', NULL),
         (s.en, 'VendorState', 'Idle', NULL),
         (s.st - interval '290 s', 'ConnectedVehicle', NULL, true),
         (s.en + interval '1200 s', 'ConnectedVehicle', NULL, false)
       ) AS e(t, field, txt, flag)
ON CONFLICT DO NOTHING
"""

TARIFFS = """
INSERT INTO readings (time, charger, field, value_num, value_text)
SELECT t, charger, field, num, txt
  FROM generate_series(1, $1::int) c,
       LATERAL (SELECT format('bench-%s', lpad(c::text, 2, '0')) AS charger) ch,
       generate_series(0, $2::int - 1) d,
       LATERAL (SELECT $3::timestamptz + make_interval(days => d, hours => 6) AS six,
                       $3::timestamptz + make_interval(days => d, hours => 22) AS ten_pm) h,
       LATERAL (VALUES
         (six, 'Tariff', NULL, 'T1'),
         (six, 'EnergyPrice', 32.0, NULL),
         (six, 'MaximumOutputCurrent', 10.0, NULL),
         (ten_pm, 'Tariff', NULL, 'T2'),
         (ten_pm, 'EnergyPrice', 21.0, NULL),
         (ten_pm, 'MaximumOutputCurrent', 16.0, NULL)
       ) AS v(t, field, num, txt)
ON CONFLICT DO NOTHING
"""

# The full snapshot every 5 minutes: every field with the value in force.
SNAPSHOTS = f"""
INSERT INTO readings (time, charger, field, value_num, value_text, value_bool)
SELECT g.t, $1, f.field, f.num, f.txt, f.flag
  FROM generate_series($2::timestamptz, $3::timestamptz - interval '1 s', interval '300 s') g(t)
       LEFT JOIN LATERAL (SELECT * FROM bench_sessions s WHERE s.charger = $1 AND s.st <= g.t
                           ORDER BY s.st DESC LIMIT 1) ls ON true,
       LATERAL (SELECT ls.st IS NOT NULL AND g.t < ls.en AS charging,
                       floor(extract(epoch FROM g.t - ls.st))::int AS k,
                       EXISTS (SELECT 1 FROM bench_sessions n WHERE n.charger = $1
                                AND g.t >= n.st - interval '290 s'
                                AND g.t < n.en + interval '1200 s') AS plugged,
                       extract(hour FROM g.t AT TIME ZONE 'Europe/Berlin')
                         BETWEEN 6 AND 21 AS t1) x,
       LATERAL (VALUES
         ('OperationState', NULL, CASE WHEN charging THEN 'charging' ELSE 'idle' END,
          NULL::boolean),
         ('VendorState', NULL, CASE WHEN charging THEN 'Charging' ELSE 'Idle' END, NULL),
         ('ConnectedVehicle', NULL, NULL, plugged),
         ('PowerOutput', CASE WHEN charging THEN 11020 + ((k * 37 + $4::int * 11) % 41) ELSE 0 END,
          NULL, NULL),
         ('OutputCurrent', CASE WHEN charging THEN 16 + ((k / 10) % 3) * 0.1 ELSE 0 END,
          NULL, NULL),
         ('MaximumOutputCurrent', CASE WHEN t1 THEN 10.0 ELSE 16.0 END, NULL, NULL),
         ('SessionEnergy', CASE WHEN ls.st IS NULL THEN 12000
                                WHEN charging THEN {_E}
                                ELSE floor(ls.dur * 11040 / 3600.0) END, NULL, NULL),
         ('SessionDuration', CASE WHEN ls.st IS NULL THEN 3600 WHEN charging THEN k
                                  ELSE ls.dur END, NULL, NULL),
         ('EnergyPrice', CASE WHEN t1 THEN 32.0 ELSE 21.0 END, NULL, NULL),
         ('Tariff', NULL, CASE WHEN t1 THEN 'T1' ELSE 'T2' END, NULL),
         ('ErrorCode', 0, NULL, NULL),
         ('FirmwareVersion', NULL, '5.22', NULL)
       ) AS f(field, num, txt, flag)
ON CONFLICT DO NOTHING
"""

FINISH = """
INSERT INTO readings (time, charger, field, value_text)
SELECT $2::timestamptz - interval '1 s', format('bench-%s', lpad(c::text, 2, '0')),
       'Availability', 'online'
  FROM generate_series(1, $1::int) c ON CONFLICT DO NOTHING;
INSERT INTO latest (charger, field, time, value_num, value_text, value_bool)
SELECT ch, f, r.time, r.value_num, r.value_text, r.value_bool
  FROM (SELECT DISTINCT charger AS ch FROM bench_sessions) c,
       unnest($3::text[]) f,
       LATERAL (SELECT * FROM readings WHERE charger = ch AND field = f
                 ORDER BY time DESC LIMIT 1) r
ON CONFLICT (charger, field) DO UPDATE SET time = excluded.time,
   value_num = excluded.value_num, value_text = excluded.value_text,
   value_bool = excluded.value_bool;
INSERT INTO chargers (charger, first_seen, last_seen, availability, availability_changed_at)
SELECT charger, min(time), max(time), 'online', $2::timestamptz - interval '1 s'
  FROM latest GROUP BY charger
ON CONFLICT (charger) DO UPDATE SET first_seen = excluded.first_seen,
   last_seen = excluded.last_seen, availability = excluded.availability;
UPDATE chargers SET first_seen = $2::timestamptz;
"""


def marker(chargers: int, days: int) -> str:
    return f"v3 chargers={chargers} days={days} t0={T0.isoformat()}"


async def load(dsn: str, chargers: int, days: int) -> dict[str, float]:
    """Create and fill the data set (skipped when the marker says it is there)."""
    conn = await asyncpg.connect(dsn)
    try:
        done = await conn.fetchval(
            "SELECT obj_description('readings'::regclass, 'pg_class') LIKE $1 || '%'",
            "bench " + marker(chargers, days),
        )
        if done:
            print("  data set already loaded", flush=True)
            return await stats(conn)
        t_start = time.monotonic()
        await conn.execute("SET TimeZone = 'Europe/Berlin'")
        await conn.execute(
            "TRUNCATE readings, latest, chargers; DROP TABLE IF EXISTS bench_sessions"
        )
        await conn.execute(SESSIONS, chargers, days, T0)
        await conn.execute("CREATE INDEX ON bench_sessions (charger, st)")
        end = T0 + timedelta(days=days)
    finally:
        await conn.close()

    async def per_charger(c: int) -> None:
        one = await asyncpg.connect(dsn)
        try:
            await one.execute("SET TimeZone = 'Europe/Berlin'")
            await one.execute(CHARGING, charger_id(c))
            await one.execute(SNAPSHOTS, charger_id(c), T0, end, c)
        finally:
            await one.close()

    # Two connections: the machine has two cores.
    queue = list(range(1, chargers + 1))

    async def worker() -> None:
        while queue:
            c = queue.pop(0)
            await per_charger(c)
            print(f"  {charger_id(c)} loaded ({time.monotonic() - t_start:.0f} s)", flush=True)

    await asyncio.gather(worker(), worker())
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET TimeZone = 'Europe/Berlin'")
        await conn.execute(EVENTS)
        await conn.execute(TARIFFS, chargers, days, T0)
        await conn.execute(
            FINISH.replace("$1::int", str(int(chargers)))
            .replace("$2::timestamptz", f"'{T0.isoformat()}'::timestamptz")
            .replace("$3::text[]", "ARRAY[" + ",".join(f"'{f}'" for f in FIELDS) + "]")
        )
        print(f"  rows in {time.monotonic() - t_start:.0f} s; VACUUM ANALYZE...", flush=True)
        await conn.execute("VACUUM ANALYZE readings, latest, chargers")
        elapsed = time.monotonic() - t_start
        await conn.execute(
            f"COMMENT ON TABLE readings IS 'bench {marker(chargers, days)} load_s={elapsed:.0f}'"
        )
        print(f"  loaded in {elapsed:.0f} s", flush=True)
        return await stats(conn)
    finally:
        await conn.close()


async def stats(conn: asyncpg.Connection) -> dict[str, float]:
    comment = await conn.fetchval("SELECT obj_description('readings'::regclass, 'pg_class')")
    m = re.search(r"load_s=(\d+)", comment or "")
    return {
        "rows": float(await conn.fetchval("SELECT count(*) FROM readings")),
        "load_s": float(m.group(1)) if m else float("nan"),
    }


# --- the database path and storage --------------------------------------------------


async def database_path(dsn: str) -> tuple[str, str]:
    """(``plain`` or ``timescaledb``, the path in words) of the migrated database."""
    conn = await asyncpg.connect(dsn)
    try:
        version = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        )
        server = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return path_key(version), describe_path(server, version)


async def pause_policies(dsn: str) -> None:
    """TimescaleDB: no background job may compress, refresh or drop during the bench."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
            " WHERE hypertable_schema = 'public'"
        )
    finally:
        await conn.close()


async def measure_storage(dsn: str, state: str) -> Storage:
    """The readings' size on disk now: heap + TOAST, and indexes."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = int(await conn.fetchval("SELECT count(*) FROM readings"))
        if await has_timescaledb(conn):
            # The parent of a hypertable is empty (pg_table_size 0): sum over its chunks,
            # compressed chunks' internal tables included.
            r = await conn.fetchrow(
                "SELECT coalesce(table_bytes, 0) + coalesce(toast_bytes, 0) AS t,"
                " coalesce(index_bytes, 0) AS i FROM hypertable_detailed_size('readings')"
            )
            assert r is not None
            table, index = int(r["t"]), int(r["i"])
        else:
            table = int(await conn.fetchval("SELECT pg_table_size('readings')"))
            index = int(await conn.fetchval("SELECT pg_indexes_size('readings')"))
        return Storage(state, rows, table, index)
    finally:
        await conn.close()


async def compressed_chunks(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM timescaledb_information.chunks"
                " WHERE hypertable_name = 'readings' AND is_compressed"
            )
        )
    finally:
        await conn.close()


async def compress_all(dsn: str) -> tuple[int, float]:
    """(Chunks compressed, seconds): every chunk, with the schema's settings; then ANALYZE."""
    conn = await asyncpg.connect(dsn)
    try:
        t = time.monotonic()
        n = await conn.fetchval(
            "SELECT count(compress_chunk(c, if_not_compressed => true))"
            " FROM show_chunks('readings') c"
        )
        await conn.execute("VACUUM ANALYZE readings")
        return int(n or 0), time.monotonic() - t
    finally:
        await conn.close()


async def compression_stats(dsn: str) -> dict[str, int]:
    """TimescaleDB's own before/after totals of the compressed chunks."""
    conn = await asyncpg.connect(dsn)
    try:
        r = await conn.fetchrow(
            "SELECT number_compressed_chunks AS chunks,"
            " before_compression_total_bytes AS before,"
            " after_compression_total_bytes AS after"
            " FROM hypertable_compression_stats('readings')"
        )
        return {k: int(v or 0) for k, v in (r or {}).items()}
    finally:
        await conn.close()


# --- the load generator ------------------------------------------------------------

LUA = """
local paths = {%(paths)s}
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i], {["Authorization"] = "Bearer %(token)s"})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"errors\\": %%d, \\"non2xx\\": %%d, " ..
    "\\"p50_us\\": %%d, \\"p95_us\\": %%d, \\"p99_us\\": %%d, \\"max_us\\": %%d}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing: apt-get install wrk (as root)")
    print("  installing wrk (apt-get)...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or "wrk"


@dataclass
class Result:
    scenario: str
    connections: int
    requests: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non2xx: int


def scenario_paths(name: str, chargers: int, days: int) -> list[str]:
    def iso(t: datetime) -> str:
        return t.isoformat().replace("+", "%2B")

    end = T0 + timedelta(days=days)
    out: list[str] = []
    for c in range(1, chargers + 1):
        base = f"/api/v1/chargers/{charger_id(c)}"
        if name == "state":
            out.append(base)
        elif name.startswith("history_24h"):
            field = "SessionEnergy" if name.endswith("dense") else "PowerOutput"
            for d in range(days):
                a = T0 + timedelta(days=(d * 7 + c) % days)
                out.append(
                    f"{base}/readings?field={field}&from={iso(a)}&to={iso(a + timedelta(days=1))}"
                    "&bucket=3600"
                )
        elif name == "energy_30d":
            out.append(f"{base}/energy?from={iso(T0)}&to={iso(end)}&period=day")
        elif name == "energy_365d":
            # A year before the data set's end (wall-clock arithmetic: a local midnight).
            start = end - timedelta(days=365)
            out.append(f"{base}/energy?from={iso(start)}&to={iso(end)}&period=day")
        elif name == "sessions_30d":
            out.append(f"{base}/sessions?from={iso(T0)}&to={iso(end)}")
    # Interleave the chargers so consecutive requests hit different ones.
    return sorted(out, key=lambda p: (hash(p) % 9973, p))


def run_wrk(
    wrk: str, url: str, name: str, paths: list[str], connections: int, duration: float
) -> Result:
    script = STATE / f"{name}.lua"
    script.write_text(LUA % {"paths": ",".join(json.dumps(p) for p in paths), "token": TOKEN})
    out = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{duration:.0f}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    return Result(
        scenario=name,
        connections=connections,
        requests=r["requests"],
        rps=r["requests"] / (r["duration_us"] / 1e6),
        p50_ms=r["p50_us"] / 1000,
        p95_ms=r["p95_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        max_ms=r["max_us"] / 1000,
        errors=r["errors"],
        non2xx=r["non2xx"],
    )


# --- query plans -------------------------------------------------------------------


async def plans(dsn: str) -> str:
    conn = await asyncpg.connect(dsn, server_settings={"jit": "off"})
    c = charger_id(7)
    day = T0 + timedelta(days=12)
    month = T0 + timedelta(days=30)
    # the cuts the energy endpoint passes: local midnights and tariff changes
    cuts = sorted(
        {T0 + timedelta(days=d) for d in range(31)}
        | {T0 + timedelta(days=d, hours=h) for d in range(30) for h in (6, 22)}
    )
    # The row budget + 1, as the API passes it (API_MAX_ROWS at its default).
    limit = ApiSettings.model_fields["max_rows"].default + 1
    queries: list[tuple[str, str, list[object]]] = [
        ("state: the charger, its state and power", sql.CHARGERS + " WHERE c.charger = $1", [c]),
        ("state: latest value of every field", sql.LATEST, [c]),
        (
            "history: 24 h of PowerOutput in 1 h buckets",
            sql.NUMERIC_BUCKETS.format(num=sql.column_of("PowerOutput")),
            [c, "PowerOutput", day, day + timedelta(days=1), 3600.0, 86400.0],
        ),
        (
            "history: 24 h of SessionEnergy (dense) in 1 h buckets",
            sql.NUMERIC_BUCKETS.format(num=sql.column_of("SessionEnergy")),
            [c, "SessionEnergy", day, day + timedelta(days=1), 3600.0, 86400.0],
        ),
        (
            "energy/sessions: OperationState changes over 30 days (+7 days either side)",
            sql.CHANGES.format(col="value_text"),
            [c, "OperationState", T0 - timedelta(days=7), month + timedelta(days=7), limit],
        ),
        (
            "energy: register deltas over 30 days, merged between cuts",
            sql.ENERGY_DELTAS.format(
                num=sql.plausible("SessionEnergy"), context=sql.GLITCH_CONTEXT
            ),
            [c, "SessionEnergy", T0, month, cuts, True, limit],
        ),
    ]
    out = []
    try:
        for title, query, args in queries:
            await conn.fetch(query, *args)  # warm
            rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + query, *args)
            out.append(f"### {title}\n\n```\n" + "\n".join(r[0] for r in rows) + "\n```\n")
    finally:
        await conn.close()
    return "\n".join(out)


# --- main --------------------------------------------------------------------------


def start_api(dsn: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "API_TOKENS": f"bench:read:{hash_token(TOKEN)}",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "API_POOL_MIN": "4",
        "API_POOL_MAX": "8",
    }
    log = (STATE / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chargelift_api.main"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the API did not start: see {STATE / 'api.log'}")


def run_scenarios(wrk: str, url: str, args: argparse.Namespace, label: str) -> list[Result]:
    results: list[Result] = []
    for conns in [int(x) for x in args.connections.split(",")]:
        for name in args.scenarios.split(","):
            paths = scenario_paths(name, args.chargers, args.days)
            run_wrk(wrk, url, name, paths[:50], conns, 3)  # warm-up
            r = run_wrk(wrk, url, name, paths, conns, args.duration)
            results.append(r)
            print(
                f"  [{label}] {name:<18} c={conns}  {r.rps:7.1f} req/s  p50 {r.p50_ms:7.1f} ms  "
                f"p95 {r.p95_ms:7.1f} ms  p99 {r.p99_ms:7.1f} ms  "
                f"errors {r.errors} non-2xx {r.non2xx}",
                flush=True,
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chargers", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per scenario")
    parser.add_argument("--connections", default="1,4", help="comma-separated wrk -c values")
    parser.add_argument(
        "--scenarios",
        default="state,history_24h,history_24h_dense,energy_30d,sessions_30d,energy_365d",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--reload", action="store_true", help="drop and load the data again")
    args = parser.parse_args()

    wrk = ensure_wrk()
    shared_dir(STATE)
    # The installation decides the path: the launcher preloads TimescaleDB when it has it.
    expected = TIMESCALEDB if preload_settings() else PLAIN
    run_dir = STATE / ("postgres" if expected == PLAIN else "postgres-timescaledb")
    server = PostgresServer(run_dir=run_dir, settings=PG_SETTINGS)
    print(f"PostgreSQL in {server.run_dir}", flush=True)
    server.start()
    api: subprocess.Popen[bytes] | None = None
    try:
        dsn = server.dsn
        asyncio.run(migrate(dsn))
        path, words = asyncio.run(database_path(dsn))
        print(f"database path: {words}", flush=True)
        if path != expected:
            raise SystemExit(f"expected the {expected} path, the schema is on {path}")
        if path == TIMESCALEDB:
            asyncio.run(pause_policies(dsn))
        states = ["raw"]
        if path == TIMESCALEDB:
            states.append("compressed")
            if not args.reload and asyncio.run(compressed_chunks(dsn)):
                print("  the kept data set is compressed: loading it again", flush=True)
                args.reload = True
        if args.reload:
            asyncio.run(_uncomment(dsn))
        data = asyncio.run(load(dsn, args.chargers, args.days))
        print(f"data: {data['rows']:,.0f} readings, loaded in {data['load_s']:.0f} s", flush=True)
        port = free_port()
        api = start_api(dsn, port)
        url = f"http://127.0.0.1:{port}"
        results: dict[str, list[Result]] = {}
        storage: list[Storage] = []
        for state in states:
            if state == "compressed":
                n, secs = asyncio.run(compress_all(dsn))
                print(f"  {n} chunks compressed, then VACUUM ANALYZE, in {secs:.0f} s", flush=True)
            storage.append(asyncio.run(measure_storage(dsn, state)))
            s = storage[-1]
            print(
                f"storage ({state}): table {s.table_bytes / 1e6:,.1f} MB, indexes "
                f"{s.index_bytes / 1e6:,.1f} MB: {s.table_per_reading:.1f} bytes per reading "
                f"(table), {s.total_per_reading:.1f} with indexes",
                flush=True,
            )
            label = f"{path} {state}"
            results[label] = run_scenarios(wrk, url, args, label)
            text = asyncio.run(plans(dsn))
            plan_file = STATE / f"plans-{path}-{state}.txt"
            plan_file.write_text(text)
            print(f"query plans: {plan_file}", flush=True)
        compression: dict[str, int] = {}
        if path == TIMESCALEDB:
            compression = asyncio.run(compression_stats(dsn))
            print(
                f"compression: {ratio(storage[0], storage[1]):.1f}x smaller (with indexes); "
                f"TimescaleDB's own stats: {compression}",
                flush=True,
            )
        print()
        print(f"database path: {words}")
        print()
        print("| path | scenario | connections | req/s | p50 ms | p95 ms | p99 ms | errors |")
        print("|---|---|---|---|---|---|---|---|")
        for label, rs in results.items():
            for r in rs:
                print(
                    f"| {label} | {r.scenario} | {r.connections} | {r.rps:.1f} | "
                    f"{r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.p99_ms:.1f} | {r.errors + r.non2xx} |"
                )
        print()
        print(storage_table(path, storage))
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "path": path,
                        "database": words,
                        "data": data,
                        "storage": [
                            {
                                **asdict(s),
                                "table_per_reading": s.table_per_reading,
                                "total_per_reading": s.total_per_reading,
                            }
                            for s in storage
                        ],
                        "compression_stats": compression,
                        "results": {k: [asdict(r) for r in v] for k, v in results.items()},
                    },
                    indent=2,
                )
            )
        failed = any(r.errors or r.non2xx for rs in results.values() for r in rs)
        return 1 if failed else 0
    finally:
        if api is not None:
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(10)
            except subprocess.TimeoutExpired:
                api.kill()
        server.stop()


async def _uncomment(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("COMMENT ON TABLE readings IS NULL")
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
