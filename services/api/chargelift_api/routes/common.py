"""What the ``/api/v1`` routes share: parameters, the time window, CSV, error docs."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Path, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime

from chargelift_api.config import Settings
from chargelift_api.problems import PROBLEM, Problem, unprocessable
from chargelift_contract.topics import CHARGER_ID_PATTERN

ChargerId = Annotated[
    str,
    Path(pattern=f"^{CHARGER_ID_PATTERN}$", description="charger id", examples=["amtron-1"]),
]
From = Annotated[
    AwareDatetime,
    Query(
        alias="from",
        description="start, inclusive (RFC 3339 with an offset)",
        examples=["2026-11-24T00:00:00+01:00"],
    ),
]
To = Annotated[
    AwareDatetime,
    Query(
        alias="to",
        description="end, exclusive (RFC 3339 with an offset)",
        examples=["2026-11-25T00:00:00+01:00"],
    ),
]
Format = Annotated[
    Literal["json", "csv"] | None,
    Query(description="`csv` or `json`; without it the `Accept` header decides"),
]

# Times far outside what a charger can have sampled are refused up front: they would
# overflow date arithmetic (year 1 minus a week) or PostgreSQL's timestamp range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def problem(description: str) -> dict[str, Any]:
    """OpenAPI: an error answered as ``application/problem+json``."""
    return {
        "description": description,
        "content": {PROBLEM: {"schema": Problem.model_json_schema()}},
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem("missing or invalid token"),
    422: problem("bad parameters: the detail says which and why"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: problem("unknown charger")}


def window(start: datetime, end: datetime, settings: Settings) -> tuple[datetime, datetime]:
    """``from``/``to`` as UTC, or a 422 saying what is wrong with them."""
    for name, t in (("from", start), ("to", end)):
        if not EARLIEST <= t < LATEST:
            raise unprocessable(f"`{name}` must lie between 1970 and 2200")
    if start >= end:
        raise unprocessable("`from` must be before `to`")
    if end - start > timedelta(days=settings.max_window_days):
        raise unprocessable(
            f"window longer than {settings.max_window_days} days (API_MAX_WINDOW_DAYS)"
        )
    return start.astimezone(UTC), end.astimezone(UTC)


def wants_csv(request: Request, fmt: str | None) -> bool:
    """CSV when asked with ``format=csv``, or by ``Accept: text/csv`` without ``format``."""
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


# A spreadsheet runs a cell starting with one of these as a formula (CSV injection);
# chargers choose text such as their Tariff, so text cells starting with them are
# prefixed with a single quote (OWASP). Numbers are never text cells here: they stay
# numbers, negative ones included.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _cell(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, str) and v.startswith(FORMULA_TRIGGERS):
        return "'" + v
    return v


def csv_response(
    header: Sequence[str], rows: Iterable[Sequence[object]], filename: str
) -> Response:
    """A ``text/csv`` attachment (RFC 4180, header row first); text cells that a
    spreadsheet would run as a formula are escaped with a leading ``'``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def csv_content(description: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI: a 200 that may also be ``text/csv``."""
    return {
        200: {"description": description, "content": {"text/csv": {"schema": {"type": "string"}}}}
    }
