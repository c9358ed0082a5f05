"""The HTTP surface without a database: auth, problem details, parameter checks, CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from chargelift_api import __version__, models
from chargelift_api.app import create_app
from chargelift_api.auth import TokenStore, hash_token, parse_tokens
from chargelift_api.billing import Billing
from chargelift_api.config import Settings
from chargelift_api.deps import Context
from chargelift_api.main import main
from chargelift_api.metrics import ApiMetrics
from chargelift_api.repository import ChargerRow

READ, ADMIN = "read-token-1234", "admin-token-5678"
TOKENS = f"grafana:read:{hash_token(READ)},ops:admin:{hash_token(ADMIN)}"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


class FakeRepo:
    """Knows one charger, with no readings."""

    async def charger(self, charger: str) -> ChargerRow | None:
        if charger != "amtron-1":
            return None
        return ChargerRow("amtron-1", NOW - timedelta(days=1), NOW, "online", "idle", 0.0)

    async def chargers(self) -> list[ChargerRow]:
        row = await self.charger("amtron-1")
        assert row is not None
        return [row]

    async def latest(self, charger: str) -> list[Any]:
        return []

    def for_request(self, max_rows: int) -> FakeRepo:
        return self


def settings(**extra: Any) -> Settings:
    return Settings(DATABASE_URL="postgresql://u:secret@127.0.0.1:1/db", tokens=TOKENS, **extra)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    s = settings()
    app = create_app(s)
    repo: Any = FakeRepo()
    app.state.ctx = Context(
        s,
        repo,
        Billing(repo, timedelta(days=7)),
        TokenStore(s.token_entries()),
        app.state.metrics,
    )
    transport = httpx.ASGITransport(app=app)  # no lifespan: no pool, no database
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


def auth(token: str = READ) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {READ}"}, auth("")],
)
async def test_401_without_a_valid_bearer_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await client.get("/api/v1/chargers", headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["status"] == 401
    assert READ not in r.text


async def test_read_and_admin_tokens_may_read(client: httpx.AsyncClient) -> None:
    for token in (READ, ADMIN):
        r = await client.get("/api/v1/chargers", headers=auth(token))
        assert r.status_code == 200, r.text
        assert r.json()[0]["id"] == "amtron-1"


async def test_unknown_charger_is_a_404_problem(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/chargers/nope", headers=auth())
    assert (r.status_code, r.json()["title"]) == (404, "Not Found")
    assert r.headers["content-type"] == "application/problem+json"


Q = "/api/v1/chargers/amtron-1/readings?field=PowerOutput&from=2026-11-24T00:00:00Z"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (Q + "&to=2026-11-23T00:00:00Z", "`from` must be before `to`"),
        (Q + "&to=2026-11-24T00:00:00Z", "`from` must be before `to`"),
        (Q.replace("PowerOutput", "Nope") + "&to=2026-11-25T00:00:00Z", "unknown field"),
        (Q + "&to=2026-11-25T00:00:00Z&bucket=10", "bucket must be at least 60 s"),
        (Q + "&to=2027-11-25T00:00:00Z&bucket=60", "more than 10000 buckets"),
        (Q + "&to=2029-11-25T00:00:00Z", "window longer than 400 days"),
        (Q + "&to=2026-11-25T00:00:00", "timezone"),  # no offset
        (Q + "&to=banana", "datetime"),
        (Q + "&to=9999-12-31T23:59:59Z", "between 1970 and 2200"),
        (
            Q.replace("2026-11-24T00:00:00Z", "0001-01-01T00:00:00Z") + "&to=2026-01-01T00:00:00Z",
            "between",
        ),
        (Q + "&to=2026-11-25T00:00:00Z&bucket=-5", "greater than 0"),
        (Q + "&to=2026-11-25T00:00:00Z&format=xml", "json"),
        (
            Q.replace("PowerOutput", "Tariff") + "&to=2026-11-25T00:00:00Z&bucket=3600",
            "buckets need",
        ),
        (
            "/api/v1/chargers/amtron-1/energy?from=2026-11-24T00:00:00Z&to=2026-11-25T00:00:00Z&period=year",
            "day",
        ),
        ("/api/v1/chargers/amtron-1/sessions?from=2026-11-24T00:00:00Z", "to"),
    ],
)
async def test_bad_parameters_are_422_problems_that_say_why(
    client: httpx.AsyncClient, url: str, says: str
) -> None:
    r = await client.get(url, headers=auth())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 422
    assert says in body["detail"] or says in str(body.get("errors"))


async def test_invalid_charger_id_is_422(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/chargers/UPPER", headers=auth())
    assert r.status_code == 422


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v2/nothing", headers=auth())
    assert (r.status_code, r.headers["content-type"]) == (404, "application/problem+json")
    r = await client.post("/api/v1/chargers", headers=auth())
    assert (r.status_code, r.json()["title"]) == (405, "Method Not Allowed")


async def test_healthz_needs_no_token_and_names_the_version(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    # The installed package's version: after an upgrade it says which code answers.
    assert (r.status_code, r.json()) == (200, {"status": "ok", "version": __version__})
    assert __version__ == version("chargelift-api") != "0+unknown"


async def test_openapi_has_examples_and_bearer_auth(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    paths = set(doc["paths"])
    assert {
        "/api/v1/chargers",
        "/api/v1/chargers/{charger}",
        "/api/v1/chargers/{charger}/readings",
        "/api/v1/chargers/{charger}/sessions",
        "/api/v1/chargers/{charger}/energy",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= paths
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    assert doc["components"]["schemas"]["Sessions"]["examples"]
    params = {
        p["name"] for p in doc["paths"]["/api/v1/chargers/{charger}/readings"]["get"]["parameters"]
    }
    assert {"field", "from", "to", "bucket", "format"} <= params


MODELS = [
    m
    for m in vars(models).values()
    if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == models.__name__
]


def examples_of(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The ``examples`` a model shows in the OpenAPI schema."""
    extra: Any = model.model_config.get("json_schema_extra")
    return list(extra["examples"]) if isinstance(extra, dict) else []


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_openapi_example_is_a_valid_answer(model: type[BaseModel]) -> None:
    # The examples in /docs are documentation: each must be what the API could answer
    # (a new required field, e.g. a session's id_tag, must appear in them too).
    for example in examples_of(model):
        answer = model.model_validate(example).model_dump(by_alias=True, mode="json")
        assert set(example) <= set(answer)


def test_the_session_example_shows_the_transaction() -> None:
    [example] = examples_of(models.Sessions)
    [session] = example["sessions"]
    assert (session["id_tag"], session["transaction_id"]) == ("04A2B3C4D5", "1042")


def test_tokens_are_parsed_and_checked_by_hash() -> None:
    store = TokenStore(parse_tokens(TOKENS))
    entry = store.check(READ)
    assert entry is not None
    assert (entry.name, entry.grants("read"), entry.grants("admin")) == ("grafana", True, False)
    admin = store.check(ADMIN)
    assert admin is not None
    assert admin.grants("admin")
    assert admin.grants("read")
    assert store.check("other") is None
    assert READ not in repr(entry)
    assert hash_token(READ) not in repr(entry)


@pytest.mark.parametrize("bad", ["", "x", "a:write:" + "0" * 64, "a:read:abc", ",,"])
def test_bad_token_configuration_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        Settings(DATABASE_URL="postgresql://x@h/db", tokens=bad)


def test_settings_refuse_an_unknown_time_zone() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        settings(timezone="Mars/Olympus")


def test_settings_keep_the_database_password_secret() -> None:
    assert "secret" not in repr(settings())


def test_main_refuses_to_start_without_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("API_TOKENS", raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "DATABASE_URL" in err
    assert "API_TOKENS" in err


def test_main_refuses_to_serve_with_no_token_and_says_how_to_make_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What compose passes while API_TOKENS in .env is still empty (docker-compose.yml
    # does not require it, so that the first token can be made with the api service).
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1/db")
    monkeypatch.setenv("API_TOKENS", "")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "API_TOKENS" in err
    assert "docker compose run --rm --no-deps api hash-token <name>" in err


def test_hash_token_prints_a_token_and_its_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash-token", "grafana"]) == 0
    lines = capsys.readouterr().out.splitlines()
    token = lines[0].rsplit(" ", 1)[1]
    entry = lines[1].rsplit(" ", 1)[1]
    assert entry == f"grafana:read:{hash_token(token)}"
    assert parse_tokens(entry)[0].scope == "read"


def test_main_never_prints_a_rejected_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@127.0.0.1/db")
    monkeypatch.setenv("API_TOKENS", "hunter3")
    monkeypatch.setenv("API_TIMEZONE", "Mars/Olympus")  # named in the error: not a secret
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "API_TOKENS" in err
    assert "API_TIMEZONE" in err
    assert "hunter" not in err


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"]),
        ("/redoc", ["redoc.standalone.js", "favicon.png"]),
    ],
)
async def test_the_docs_pages_load_their_files_from_the_api(
    client: httpx.AsyncClient, page: str, assets: list[str]
) -> None:
    # Issue 12: FastAPI's pages load Swagger UI and ReDoc from a CDN (blank offline).
    html = (await client.get(page)).text
    assert "://" not in html  # no other host: no CDN, no Google Fonts, no favicon site
    for asset in assets:
        assert f'"/docs-assets/{asset}"' in html
        r = await client.get(f"/docs-assets/{asset}")
        assert r.status_code == 200
        assert len(r.content) > 1000


async def test_requests_are_counted_in_the_apps_own_metrics(client: httpx.AsyncClient) -> None:
    await client.get("/api/v1/chargers", headers=auth())
    await client.get("/nowhere")
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    metrics: ApiMetrics = transport.app.state.metrics  # type: ignore[attr-defined]
    sample = metrics.registry.get_sample_value
    labels = {"route": "/api/v1/chargers", "method": "GET", "status": "200"}
    assert sample("api_requests_total", labels) == 1
    assert sample("api_requests_total", {**labels, "route": "unmatched", "status": "404"}) == 1
    # Another app (another test) counts on a registry of its own.
    assert create_app(settings()).state.metrics.registry is not metrics.registry
