"""The provisioned Grafana dashboard's SQL, run against the real schema on PostgreSQL.

Grafana is not run here (no image registry); its SQL macros are expanded the way its
PostgreSQL data source expands them, and every panel's query runs against a migrated
database holding two known charging sessions. The figures are worked out by hand below.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from chargelift_devstack.postgres import PostgresServer
from tests.support.db import fresh_database

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "chargelift.json").read_text())
FROM = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
TO = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def _t(day: int, hh: int, mm: int) -> datetime:
    return datetime(2026, 11, day, hh, mm, tzinfo=UTC)


# (time, charger, field, value): amtron-1 charges 11 kWh on the 1st (5.5 kWh at
# 30 ct/kWh, then the tariff drops to 20 ct/kWh, 5.5 kWh more) and 2 kWh on the 2nd.
# amtron-2 is idle and must not leak into amtron-1's panels.
READINGS: list[tuple[datetime, str, str, Any]] = [
    (_t(1, 9, 0), "amtron-1", "OperationState", "idle"),
    (_t(1, 9, 0), "amtron-1", "PowerOutput", 0.0),
    (_t(1, 9, 0), "amtron-1", "ConnectedVehicle", False),
    (_t(1, 9, 0), "amtron-1", "SessionEnergy", 5000.0),  # the previous session's
    (_t(1, 9, 0), "amtron-1", "EnergyPrice", 30.0),
    (_t(1, 10, 5), "amtron-1", "ConnectedVehicle", True),
    (_t(1, 10, 5), "amtron-1", "OperationState", "charging"),
    (_t(1, 10, 5), "amtron-1", "PowerOutput", 11000.0),
    (_t(1, 10, 5), "amtron-1", "SessionEnergy", 0.0),
    (_t(1, 10, 35), "amtron-1", "SessionEnergy", 5500.0),
    (_t(1, 11, 0), "amtron-1", "EnergyPrice", 20.0),
    (_t(1, 11, 5), "amtron-1", "SessionEnergy", 11000.0),
    (_t(1, 11, 5), "amtron-1", "PowerOutput", 0.0),
    (_t(1, 11, 5), "amtron-1", "OperationState", "idle"),
    (_t(1, 11, 10), "amtron-1", "ConnectedVehicle", False),
    (_t(2, 8, 0), "amtron-1", "ConnectedVehicle", True),
    (_t(2, 8, 0), "amtron-1", "SessionEnergy", 0.0),
    (_t(2, 8, 30), "amtron-1", "SessionEnergy", 2000.0),
    (_t(2, 8, 40), "amtron-1", "ConnectedVehicle", False),
    (_t(1, 9, 0), "amtron-2", "OperationState", "idle"),
    (_t(1, 9, 0), "amtron-2", "PowerOutput", 7.0),
]


def _columns(value: Any) -> tuple[float | None, str | None, bool | None]:
    if isinstance(value, bool):
        return None, None, value
    if isinstance(value, str):
        return None, value, None
    return float(value), None, None


def _call_args(sql: str, start: int) -> tuple[str, int]:
    """The text between the parenthesis at ``start`` and its partner, and the end index."""
    depth = 0
    for i in range(start, len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[i], 0)
        if depth == 0:
            return sql[start + 1 : i], i + 1
    raise ValueError(f"unbalanced macro call in {sql!r}")


def expand(sql: str, chargers: list[str]) -> str:
    """Expand the Grafana PostgreSQL macros this dashboard uses (as Grafana 11 does)."""
    lo, hi = f"'{FROM.isoformat()}'", f"'{TO.isoformat()}'"
    out, i = [], 0
    while (j := sql.find("$__", i)) >= 0:
        out.append(sql[i:j])
        name = re.match(r"\$__(\w+)", sql[j:])
        assert name, sql[j:]
        args, i = _call_args(sql, j + len(name.group(0)))
        match name.group(1):
            case "timeFilter":
                out.append(f"{args} BETWEEN {lo} AND {hi}")
            case "timeFrom":
                out.append(lo)
            case "timeTo":
                out.append(hi)
            case "timeGroupAlias":
                column, interval = (a.strip() for a in args.split(","))
                seconds = {"1d": 86400, "1h": 3600}[interval]
                out.append(f'floor(extract(epoch from {column})/{seconds})*{seconds} AS "time"')
            case other:
                raise AssertionError(f"macro $__{other} is not expanded by this test")
    out.append(sql[i:])
    text = "".join(out).replace("$charger", ", ".join(f"'{c}'" for c in chargers))
    assert "$" not in text, text
    return text


def panel(title: str) -> dict[str, Any]:
    [found] = [p for p in DASHBOARD["panels"] if p["title"] == title]
    assert isinstance(found, dict)
    return found


@pytest.fixture(scope="module")
def dsn(postgres: PostgresServer) -> str:
    async def load() -> str:
        dsn = await fresh_database(postgres, prefix="grafana")
        conn = await asyncpg.connect(dsn)
        try:
            await conn.executemany(
                "INSERT INTO readings (time, charger, field, value_num, value_text, value_bool)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                [(t, c, f, *_columns(v)) for t, c, f, v in READINGS],
            )
            await conn.execute(
                "INSERT INTO chargers (charger, first_seen, last_seen, availability)"
                " SELECT charger, min(time), max(time), 'online' FROM readings GROUP BY 1"
            )
            await conn.execute(
                "INSERT INTO latest (charger, field, time, value_num, value_text, value_bool)"
                " SELECT DISTINCT ON (charger, field) charger, field, time, value_num,"
                " value_text, value_bool FROM readings ORDER BY charger, field, time DESC"
            )
        finally:
            await conn.close()
        return dsn

    return asyncio.run(load())


def query(dsn: str, title: str, chargers: list[str]) -> list[asyncpg.Record]:
    sql = expand(panel(title)["targets"][0]["rawSql"], chargers)

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def test_every_panel_query_runs_for_one_and_for_all_chargers(dsn: str) -> None:
    for p in DASHBOARD["panels"]:
        for chargers in (["amtron-1"], ["amtron-1", "amtron-2"]):
            query(dsn, p["title"], chargers)  # raises on any SQL error
    variable = DASHBOARD["templating"]["list"][0]

    async def options() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            return [r[0] for r in await conn.fetch(variable["query"])]
        finally:
            await conn.close()

    assert asyncio.run(options()) == ["amtron-1", "amtron-2"]


def test_power_starts_with_the_value_in_force_and_follows_every_change(dsn: str) -> None:
    rows = query(dsn, "Power", ["amtron-1"])
    assert [(r["time"], r["metric"], r["value"]) for r in rows] == [
        (FROM, "amtron-1", 0.0),
        (_t(1, 10, 5), "amtron-1", 11000.0),
        (_t(1, 11, 5), "amtron-1", 0.0),
    ]


def test_state_timeline_shows_the_states_in_order(dsn: str) -> None:
    rows = query(dsn, "Operation state", ["amtron-1", "amtron-2"])
    one = [(r["time"], r["value"]) for r in rows if r["metric"] == "amtron-1"]
    assert one == [(FROM, "idle"), (_t(1, 10, 5), "charging"), (_t(1, 11, 5), "idle")]
    assert [(r["time"], r["value"]) for r in rows if r["metric"] == "amtron-2"] == [(FROM, "idle")]


def test_sessions_have_their_energy_and_the_cost_at_the_price_in_force(dsn: str) -> None:
    rows = query(dsn, "Charging sessions", ["amtron-1"])
    got = [
        (r["plugged in"], r["unplugged"], float(r["energy (kWh)"]), float(r["cost"])) for r in rows
    ]
    assert got == [
        (_t(2, 8, 0), _t(2, 8, 40), 2.0, 0.40),
        (_t(1, 10, 5), _t(1, 11, 10), 11.0, 2.75),  # 5.5 × 0.30 + 5.5 × 0.20
    ]


def test_energy_and_cost_per_day(dsn: str) -> None:
    rows = query(dsn, "Energy and cost per day", ["amtron-1", "amtron-2"])
    got = [
        (
            datetime.fromtimestamp(float(r["time"]), UTC).date().isoformat(),
            r["energy (kWh)"],
            round(r["cost"], 6),
        )
        for r in rows
    ]
    assert got == [("2026-11-01", 11.0, 2.75), ("2026-11-02", 2.0, 0.4)]


def test_status_table_lists_each_charger_with_its_state(dsn: str) -> None:
    rows = query(dsn, "Chargers now", ["amtron-1", "amtron-2"])
    assert [(r["charger"], r["availability"], r["state"]) for r in rows] == [
        ("amtron-1", "online", "idle"),
        ("amtron-2", "online", "idle"),
    ]


def test_provisioning_points_at_the_dashboard_and_the_reader_role() -> None:
    [ds] = yaml.safe_load((GRAFANA / "provisioning/datasources/chargelift.yml").read_text())[
        "datasources"
    ]
    uids = {t["datasource"]["uid"] for p in DASHBOARD["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]}
    assert ds["user"] == "$GRAFANA_DB_USER"
    assert ds["secureJsonData"]["password"] == "$GRAFANA_DB_PASSWORD"
    [provider] = yaml.safe_load((GRAFANA / "provisioning/dashboards/chargelift.yml").read_text())[
        "providers"
    ]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in compose["volumes"]
    assert compose["environment"]["GRAFANA_DB_USER"] == "chargelift_reader"
