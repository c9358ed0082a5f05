"""Every endpoint against real PostgreSQL, over data stored by the real ingest writer.

The scenario and the arithmetic behind every expected figure: ``scenario.py``.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from chargelift_api import __version__
from tests.integration.api.conftest import ADMIN_TOKEN, MAX_POINTS, LiveApi
from tests.integration.api.scenario import END, LIVE_SESSION_START, NOW, START, local

pytestmark = pytest.mark.integration

AMTRON = "/api/v1/chargers/amtron-1"
TWO_DAYS = {"from": "2026-11-20T00:00:00+01:00", "to": "2026-11-22T00:00:00+01:00"}


async def get(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    r = await client.get(url, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _iso(t: datetime) -> str:
    return t.isoformat()


# --- state -------------------------------------------------------------------------


async def test_chargers_lists_every_charger_with_state_and_power(client: httpx.AsyncClient) -> None:
    body = await get(client, "/api/v1/chargers")
    by_id = {c["id"]: c for c in body}
    assert set(by_id) == {"amtron-1", "live-1", "meter-1"}
    amtron = by_id["amtron-1"]
    assert at(amtron["first_seen"]) == START
    assert at(amtron["last_seen"]) == END
    assert (amtron["availability"], amtron["operation_state"], amtron["power_w"]) == (
        "online",
        "charging",
        12000.0,
    )
    assert by_id["meter-1"]["availability"] is None  # it never published one


async def test_charger_detail_has_every_field_with_time_and_age(client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    body = await get(client, AMTRON)
    fields = {f["field"]: f for f in body["fields"]}
    assert set(fields) == {
        "OperationState",
        "ConnectedVehicle",
        "PowerOutput",
        "SessionEnergy",
        "Tariff",
        "EnergyPrice",
        "FirmwareVersion",
    }
    assert fields["SessionEnergy"]["value"] == 6000.0
    assert fields["SessionEnergy"]["unit"] == "Wh"
    assert fields["ConnectedVehicle"]["value"] is True
    assert fields["FirmwareVersion"]["value"] == "5.22"
    # Unchanged since Friday 20:00, but every snapshot (5 minutes) republishes it.
    assert END - timedelta(minutes=5) < at(fields["FirmwareVersion"]["sampling_time"]) <= END
    power = fields["PowerOutput"]
    expected_age = (before - at(power["sampling_time"])).total_seconds()
    assert power["age_s"] == pytest.approx(expected_age, abs=5)


async def test_unknown_charger_is_404_on_every_charger_endpoint(client: httpx.AsyncClient) -> None:
    for suffix, params in [
        ("", {}),
        ("/readings", {"field": "PowerOutput", **TWO_DAYS}),
        ("/sessions", TWO_DAYS),
        ("/energy", TWO_DAYS),
    ]:
        r = await client.get(f"/api/v1/chargers/nobody{suffix}", params=params)
        assert r.status_code == 404, (suffix, r.text)
        assert r.headers["content-type"] == "application/problem+json"


# --- history -----------------------------------------------------------------------


async def test_raw_readings_carry_the_value_in(client: httpx.AsyncClient) -> None:
    body = await get(
        client,
        f"{AMTRON}/readings",
        field="OperationState",
        **{"from": "2026-11-20T22:30:00+01:00", "to": "2026-11-20T23:30:00+01:00"},
    )
    assert body["initial"]["value"] == "charging"
    assert at(body["initial"]["time"]) < local(20, 22, 30)
    changes = [(at(p["time"]), p["value"]) for p in body["points"]]
    assert (local(20, 23, 0), "idle") in changes
    assert (local(20, 23, 10), "charging") in changes
    assert all(local(20, 22, 30) <= t < local(20, 23, 30) for t, _ in changes)


async def test_availability_history_is_readable(client: httpx.AsyncClient) -> None:
    body = await get(client, f"{AMTRON}/readings", field="Availability", **TWO_DAYS)
    assert [(at(p["time"]), p["value"]) for p in body["points"]] == [
        (local(20, 19, 59, 30), "online"),
        (local(21, 14, 30, 30), "offline"),
        (local(21, 15, 30), "online"),
    ]
    assert body["initial"] is None


async def test_hourly_buckets_of_power_with_carry_forward(client: httpx.AsyncClient) -> None:
    body = await get(
        client,
        f"{AMTRON}/readings",
        field="PowerOutput",
        bucket=3600,
        **{"from": "2026-11-20T20:00:00+01:00", "to": "2026-11-21T02:00:00+01:00"},
    )
    b = {at(x["start"]): x for x in body["buckets"]}
    assert len(body["buckets"]) == 6
    nine_pm, eleven_pm, half_past_midnight = (
        b[local(20, 21)],
        b[local(20, 23)],
        b[local(21, 0)],
    )
    # 21:00-22:00: 0 W for 30 min, 12 kW for 30 min.
    assert nine_pm["avg"] == pytest.approx(6000.0)
    assert (nine_pm["min"], nine_pm["max"], nine_pm["last"]) == (0.0, 12000.0, 12000.0)
    # 23:00-24:00: paused for 10 minutes.
    assert eleven_pm["avg"] == pytest.approx(12000.0 * 50 / 60)
    # 00:00-01:00: a one-minute spike of 12.5 kW.
    assert half_past_midnight["max"] == 12500.0
    assert half_past_midnight["avg"] == pytest.approx(12000.0 + 500.0 / 60)
    # 01:00-02:00: charging stops at 01:10; the 0 W is carried to the end.
    last = b[local(21, 1)]
    assert (last["last"], last["min"]) == (0.0, 0.0)


async def test_a_short_last_bucket_has_its_last_value(client: httpx.AsyncClient) -> None:
    body = await get(
        client,
        f"{AMTRON}/readings",
        field="PowerOutput",
        bucket=3600,
        **{"from": "2026-11-20T21:00:00+01:00", "to": "2026-11-20T23:30:00+01:00"},
    )
    last = body["buckets"][-1]
    assert at(last["start"]) == local(20, 23)
    assert (last["last"], last["min"], last["max"]) == (12000.0, 0.0, 12000.0)
    assert last["avg"] == pytest.approx(12000.0 * 20 / 30)


async def test_empty_buckets_take_the_last_value(client: httpx.AsyncClient) -> None:
    # The edge was cut off 14:30:30-15:30: the 15:00 bucket has no readings.
    body = await get(
        client,
        f"{AMTRON}/readings",
        field="SessionEnergy",
        bucket=900,
        **{"from": "2026-11-21T14:30:00+01:00", "to": "2026-11-21T15:30:00+01:00"},
    )
    empty = [x for x in body["buckets"] if x["count"] == 0]
    assert len(empty) == 3  # 14:45, 15:00, 15:15
    assert all(x["last"] == x["min"] == x["max"] == x["avg"] == 6000.0 for x in empty)


async def test_time_in_state_per_bucket(client: httpx.AsyncClient) -> None:
    body = await get(
        client,
        f"{AMTRON}/readings",
        field="OperationState",
        bucket=3600,
        **{"from": "2026-11-20T21:00:00+01:00", "to": "2026-11-21T00:00:00+01:00"},
    )
    seconds = [s["seconds"] for s in body["states"]]
    assert seconds == [
        {"idle": 1800.0, "charging": 1800.0},
        {"charging": 3600.0},
        {"idle": 600.0, "charging": 3000.0},
    ]


# Issue 12: buckets after "now" showed the last value, and `states` left out the buckets
# before the first reading where numbers showed nulls.


def _live_window(before_min: int, hours: int) -> dict[str, str]:
    start = NOW - timedelta(minutes=before_min)
    return {"from": _iso(start), "to": _iso(start + timedelta(hours=hours))}


async def test_buckets_after_the_latest_reading_are_null(client: httpx.AsyncClient) -> None:
    # live-1: 0 W until NOW - 40 min, then 12 kW; its latest reading is at NOW.
    url = "/api/v1/chargers/live-1/readings"
    window = _live_window(50, 4)
    body = await get(client, url, field="PowerOutput", bucket=3600, **window)
    current, *future = body["buckets"]
    # Averaged over what is known (10 min at 0 W, 40 at 12 kW), not up to NOW + 10 min.
    assert current["avg"] == pytest.approx(12000.0 * 40 / 50)
    assert (current["last"], current["max"]) == (12000.0, 12000.0)
    assert len(future) == 3
    assert all(
        (b["min"], b["avg"], b["max"], b["last"], b["count"]) == (None, None, None, None, 0)
        for b in future
    )
    body = await get(client, url, field="OperationState", bucket=3600, **window)
    assert [s["seconds"] for s in body["states"]] == [
        {"idle": 600.0, "charging": 2400.0},
        {},
        {},
        {},
    ]
    r = await client.get(
        url, params={"field": "OperationState", "bucket": 3600, "format": "csv", **window}
    )
    rows = list(csv.reader(io.StringIO(r.text)))
    assert [row[1:] for row in rows[1:]] == [
        ["idle", "600.0"],
        ["charging", "2400.0"],
        ["", ""],
        ["", ""],
        ["", ""],
    ]


async def test_before_the_first_reading_numbers_and_states_are_alike(
    client: httpx.AsyncClient,
) -> None:
    # amtron-1's first reading is at 20:00 Friday: 18:00 and 19:00 are before it.
    window = {"from": "2026-11-20T18:00:00+01:00", "to": "2026-11-20T21:00:00+01:00"}
    nums = await get(client, f"{AMTRON}/readings", field="PowerOutput", bucket=3600, **window)
    states = await get(client, f"{AMTRON}/readings", field="OperationState", bucket=3600, **window)
    starts = [at(b["start"]) for b in nums["buckets"]]
    assert starts == [at(b["start"]) for b in states["states"]]
    assert starts == [local(20, 18), local(20, 19), local(20, 20)]
    assert [b["avg"] for b in nums["buckets"]] == [None, None, 0.0]
    assert [b["seconds"] for b in states["states"]] == [{}, {}, {"idle": 3600.0}]


async def test_readings_as_csv(client: httpx.AsyncClient) -> None:
    r = await client.get(
        f"{AMTRON}/readings",
        params={"field": "PowerOutput", "bucket": 3600, "format": "csv", **TWO_DAYS},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["start", "min", "avg", "max", "last", "count"]
    assert len(rows) == 1 + 48
    r = await client.get(
        f"{AMTRON}/readings",
        params={"field": "Tariff", **TWO_DAYS},
        headers={"Accept": "text/csv"},
    )
    assert r.text.splitlines()[0] == "time,Tariff"


async def test_more_points_than_the_cap_is_a_clear_422(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{AMTRON}/readings", params={"field": "SessionEnergy", **TWO_DAYS})
    assert r.status_code == 422
    assert f"more than {MAX_POINTS} points" in r.json()["detail"]
    r = await client.get(
        f"{AMTRON}/readings", params={"field": "SessionEnergy", "bucket": 60, **TWO_DAYS}
    )
    assert r.status_code == 422
    assert f"more than {MAX_POINTS} buckets" in r.json()["detail"]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"field": "PowerOutput", "from": TWO_DAYS["to"], "to": TWO_DAYS["from"]}, "before"),
        ({"field": "Voltage", **TWO_DAYS}, "unknown field"),
        ({"field": "PowerOutput", "bucket": 5, **TWO_DAYS}, "at least"),
    ],
)
async def test_bad_parameters_are_422_not_500(
    client: httpx.AsyncClient, params: dict[str, Any], says: str
) -> None:
    r = await client.get(f"{AMTRON}/readings", params=params)
    assert r.status_code == 422
    assert says in r.json()["detail"]


# --- sessions ----------------------------------------------------------------------


async def sessions(client: httpx.AsyncClient, **window: str) -> list[dict[str, Any]]:
    body = await get(client, f"{AMTRON}/sessions", **(window or TWO_DAYS))
    result: list[dict[str, Any]] = body["sessions"]
    return result


async def test_session_across_a_tariff_change_and_midnight(client: httpx.AsyncClient) -> None:
    a = (await sessions(client))[0]
    assert (at(a["start"]), at(a["end"])) == (local(20, 21, 30), local(21, 1, 20))
    assert a["open"] is False
    assert a["duration_s"] == 230 * 60
    assert a["charging_s"] == 210 * 60  # the 10-minute pause is inside the session
    assert a["energy_wh"] == pytest.approx(42000.0)
    assert a["peak_power_w"] == 12500.0
    assert a["cost"] == pytest.approx(9.48)
    lines = [(t["tariff"], t["price_ct_per_kwh"], t["energy_wh"], t["cost"]) for t in a["tariffs"]]
    assert lines == [("T1", 32.0, 6000.0, 1.92), ("T2", 21.0, 36000.0, 7.56)]
    assert at(a["tariffs"][1]["from"]) == local(20, 22, 0)


async def test_a_register_reset_inside_a_session_is_counted(client: httpx.AsyncClient) -> None:
    b = (await sessions(client))[1]
    assert (at(b["start"]), at(b["end"])) == (local(21, 10), local(21, 12, 5))
    assert b["energy_wh"] == pytest.approx(24000.0)  # not 12,000 (last - first)
    assert b["cost"] == pytest.approx(7.68)


async def test_a_charger_offline_mid_session(client: httpx.AsyncClient) -> None:
    c = (await sessions(client))[2]
    assert c["offline_during_session"] is True
    assert (at(c["start"]), at(c["end"])) == (local(21, 14), local(21, 16, 30))
    # The 12 kWh charged while it was offline are counted when the data comes back.
    assert c["energy_wh"] == pytest.approx(24000.0)
    assert c["cost"] == pytest.approx(7.68)


async def test_a_session_still_charging_is_open(client: httpx.AsyncClient) -> None:
    d = (await sessions(client))[3]
    assert (d["end"], d["open"]) == (None, True)
    assert d["duration_s"] == 30 * 60  # up to the latest reading
    assert d["energy_wh"] == pytest.approx(6000.0)
    assert d["cost"] == pytest.approx(1.26)


async def test_a_session_is_reported_in_the_window_it_starts_in_only(
    client: httpx.AsyncClient,
) -> None:
    # Session A starts on Friday: it is Friday's, whole, even though it ends on Saturday.
    friday = await sessions(
        client, **{"from": "2026-11-20T00:00+01:00", "to": "2026-11-21T00:00+01:00"}
    )
    saturday = await sessions(
        client, **{"from": "2026-11-21T00:00+01:00", "to": "2026-11-22T00:00+01:00"}
    )
    assert [s["energy_wh"] for s in friday] == [42000.0]
    assert [at(s["start"]) for s in saturday] == [local(21, 10), local(21, 14), local(21, 23)]
    # A window starting during the pause of A does not see a new session at 23:10.
    late = await sessions(
        client, **{"from": "2026-11-20T23:05+01:00", "to": "2026-11-21T02:00+01:00"}
    )
    assert late == []


async def test_sessions_csv_for_billing(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{AMTRON}/sessions", params={"format": "csv", **TWO_DAYS})
    assert r.status_code == 200
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 5  # A has two tariff lines; B, C and D one each
    assert sum(float(row["cost"]) for row in rows) == pytest.approx(9.48 + 7.68 + 7.68 + 1.26)
    assert {row["currency"] for row in rows} == {"EUR"}
    assert rows[0]["tariff"] == "T1"
    assert rows[0]["session_end"] == "2026-11-21T01:20:00+01:00"


# An open session in three shapes: the only one in the window, open across the window's
# start (it is listed in the window it started in, so not here), and none at all -- on
# amtron-1 (session D, open at the end of its data) and live-1 (charging right now).
OPEN_WINDOWS = {
    "only-open": ("amtron-1", "2026-11-21T22:00:00+01:00", "2026-11-22T00:00:00+01:00"),
    "open-across-start": ("amtron-1", "2026-11-21T23:15:00+01:00", "2026-11-22T00:00:00+01:00"),
    "none": ("amtron-1", "2026-11-21T17:00:00+01:00", "2026-11-21T22:00:00+01:00"),
    "none-no-data": ("amtron-1", "2026-11-19T00:00:00+01:00", "2026-11-20T00:00:00+01:00"),
    "now-only-open": ("live-1", _iso(NOW - timedelta(hours=1)), _iso(NOW + timedelta(hours=1))),
    "now-open-across-start": (
        "live-1",
        _iso(NOW - timedelta(minutes=30)),
        _iso(NOW + timedelta(days=1)),
    ),
    "now-none": ("live-1", _iso(NOW - timedelta(hours=3)), _iso(NOW - timedelta(hours=1))),
}
# The open session each window lists: (start, duration_s, energy_wh, cost).
OPEN_EXPECTED = {
    "only-open": (local(21, 23), 30 * 60.0, 6000.0, 1.26),
    "now-only-open": (LIVE_SESSION_START, 40 * 60.0, 8000.0, 2.56),
}


@pytest.mark.parametrize("shape", list(OPEN_WINDOWS))
async def test_open_sessions_on_every_session_endpoint_and_format(
    client: httpx.AsyncClient, shape: str
) -> None:
    charger, a, b = OPEN_WINDOWS[shape]
    url = f"/api/v1/chargers/{charger}"
    window = {"from": a, "to": b}
    expected = OPEN_EXPECTED.get(shape)
    # JSON
    body = await get(client, f"{url}/sessions", **window)
    if expected is None:
        assert body["sessions"] == []
        assert (body["total_energy_wh"], body["total_cost"]) == (0.0, 0.0)
    else:
        [s] = body["sessions"]
        start, duration, energy, cost = expected
        assert (at(s["start"]), s["end"], s["open"]) == (start, None, True)
        assert s["duration_s"] == duration
        assert (s["energy_wh"], s["cost"]) == (pytest.approx(energy), pytest.approx(cost))
        assert s["peak_power_w"] == 12000.0
        assert body["total_energy_wh"] == pytest.approx(energy)
    # CSV, by `format` and by `Accept`: an open session has an empty session_end
    for params, headers in [({"format": "csv"}, {}), ({}, {"Accept": "text/csv"})]:
        r = await client.get(f"{url}/sessions", params={**window, **params}, headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        if expected is None:
            assert rows == []
        else:
            assert [row["session_end"] for row in rows] == [""]
            assert at(rows[0]["session_start"]) == expected[0]
            assert float(rows[0]["session_energy_wh"]) == pytest.approx(expected[2])
    # energy, per period
    for period in ("day", "week", "month"):
        body = await get(client, f"{url}/energy", period=period, **window)
        assert body["total_energy_wh"] >= 0.0
        if expected is not None:
            assert body["total_energy_wh"] == pytest.approx(expected[2])


# --- energy ------------------------------------------------------------------------


async def test_energy_per_local_day_and_tariff(client: httpx.AsyncClient) -> None:
    body = await get(client, f"{AMTRON}/energy", period="day", **TWO_DAYS)
    assert body["timezone"] == "Europe/Berlin"
    friday, saturday = body["periods"]
    assert friday["start"] == "2026-11-20T00:00:00+01:00"
    assert friday["energy_wh"] == pytest.approx(28000.0)  # A until midnight
    assert friday["cost"] == pytest.approx(1.92 + 22 * 0.21)
    assert saturday["energy_wh"] == pytest.approx(14000 + 24000 + 24000 + 6000)
    by_tariff = {t["tariff"]: t["energy_wh"] for t in saturday["tariffs"]}
    assert by_tariff == {"T1": 48000.0, "T2": 20000.0}
    assert body["total_energy_wh"] == pytest.approx(96000.0)
    assert body["total_cost"] == pytest.approx(9.48 + 7.68 + 7.68 + 1.26)


async def test_energy_per_week_and_month_add_up(client: httpx.AsyncClient) -> None:
    week = await get(client, f"{AMTRON}/energy", period="week", **TWO_DAYS)
    month = await get(
        client,
        f"{AMTRON}/energy",
        period="month",
        **{"from": "2026-11-01T00:00:00+01:00", "to": "2026-12-01T00:00:00+01:00"},
    )
    assert [p["energy_wh"] for p in week["periods"]] == [pytest.approx(96000.0)]
    assert [p["energy_wh"] for p in month["periods"]] == [pytest.approx(96000.0)]


async def test_a_lifetime_meter_is_never_billed_from_zero(client: httpx.AsyncClient) -> None:
    body = await get(
        client,
        "/api/v1/chargers/meter-1/energy",
        period="month",
        **{"from": "2026-11-01T00:00:00+01:00", "to": "2026-12-01T00:00:00+01:00"},
    )
    assert body["energy_register"] == "TotalEnergyConsumption"
    assert body["total_energy_wh"] == pytest.approx(12000.0)  # not 1,012,000
    [s] = (
        await get(
            client,
            "/api/v1/chargers/meter-1/sessions",
            **{"from": "2026-11-21T00:00:00+01:00", "to": "2026-11-22T00:00:00+01:00"},
        )
    )["sessions"]
    assert s["energy_wh"] == pytest.approx(12000.0)


async def test_windows_that_split_a_delta_add_up(client: httpx.AsyncClient) -> None:
    # 14:30 -> 15:30 is one delta of 12 kWh (the outage); split at 15:00 pro rata.
    def window(a: str, b: str) -> dict[str, str]:
        return {"from": f"2026-11-21T{a}:00+01:00", "to": f"2026-11-21T{b}:00+01:00"}

    whole = await get(client, f"{AMTRON}/energy", **window("14:00", "16:00"))
    first = await get(client, f"{AMTRON}/energy", **window("14:00", "15:00"))
    second = await get(client, f"{AMTRON}/energy", **window("15:00", "16:00"))
    assert whole["total_energy_wh"] == pytest.approx(24000.0)
    assert first["total_energy_wh"] + second["total_energy_wh"] == pytest.approx(24000.0)
    assert first["total_energy_wh"] == pytest.approx(6000.0 + 6000.0)


# --- operations --------------------------------------------------------------------


async def test_health_ready_and_metrics(client: httpx.AsyncClient, live_api: LiveApi) -> None:
    async with httpx.AsyncClient(base_url=live_api.url, trust_env=False) as anon:
        assert (await anon.get("/healthz")).json() == {"status": "ok", "version": __version__}
        assert (await anon.get("/readyz")).json()["status"] == "ready"
        await client.get(AMTRON)
        await client.get("/api/v1/chargers/nobody")
        text = (await anon.get("/metrics")).text
    assert (
        'api_requests_total{method="GET",route="/api/v1/chargers/{charger}",status="200"}' in text
        or 'api_requests_total{route="/api/v1/chargers/{charger}",method="GET",status="200"}'
        in text
    )
    assert 'status="404"' in text
    assert "api_request_duration_seconds_bucket" in text
    assert "api_db_pool_size" in text
    assert "amtron-1" not in text  # route templates, never ids


async def test_tokens(live_api: LiveApi) -> None:
    async with httpx.AsyncClient(base_url=live_api.url, trust_env=False) as anon:
        assert (await anon.get("/api/v1/chargers")).status_code == 401
        bad = await anon.get("/api/v1/chargers", headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401
        admin = await anon.get(
            "/api/v1/chargers", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert admin.status_code == 200
    assert ADMIN_TOKEN not in live_api.log.read_text()
