"""The HTTP endpoint for metrics and health."""

from __future__ import annotations

import httpx

from chargelift_runtime.http import HttpEndpoint


async def test_routes_404_and_405() -> None:
    routes = {
        "/healthz": lambda: (200, "application/json", b'{"status": "ok"}'),
        "/readyz": lambda: (503, "text/plain", b"not yet\n"),
    }
    async with HttpEndpoint("127.0.0.1", 0, routes) as endpoint:
        base = f"http://127.0.0.1:{endpoint.port}"
        async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
            r = await http.get("/healthz?verbose=1")
            assert (r.status_code, r.json()) == (200, {"status": "ok"})
            assert r.headers["content-type"] == "application/json"
            assert (await http.get("/readyz")).status_code == 503
            assert (await http.get("/nope")).status_code == 404
            assert (await http.post("/healthz")).status_code == 405
