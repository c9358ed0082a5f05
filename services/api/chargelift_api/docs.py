"""The interactive docs, served by the API itself: Swagger UI at ``/docs``, ReDoc at ``/redoc``.

FastAPI's default pages load Swagger UI and ReDoc from a CDN (and a favicon from
FastAPI's site), so on a network without the internet they stay blank. Here the
pages point at files the API serves under :data:`ASSETS`, taken from the
``fastapi-offline`` package, which ships the Swagger UI and ReDoc dist files and is
installed from the hash-pinned locks like every other dependency: nothing is fetched
at run time. ReDoc is told not to load Google Fonts, and Swagger UI's online
validator is off, so neither page asks anything of another host.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
ASSETS_PACKAGE = ("fastapi_offline", "static")
"""(package, folder) of the files: swagger-ui-bundle.js, swagger-ui.css,
redoc.standalone.js, favicon.png."""

# FastAPI's defaults, plus no online validator (it would send the schema to another host).
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def install(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their files (the app must not have its own)."""
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("create the app with docs_url=None, redoc_url=None (CDN pages)")
    app.mount(ASSETS, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")

    def url(request: Request, path: str) -> str:
        # Behind a proxy that mounts the API under a prefix, as FastAPI's own pages do.
        root: str = request.scope.get("root_path", "")
        return root.rstrip("/") + path

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=url(request, app.openapi_url or "/openapi.json"),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=url(request, f"{ASSETS}/swagger-ui-bundle.js"),
            swagger_css_url=url(request, f"{ASSETS}/swagger-ui.css"),
            swagger_favicon_url=url(request, f"{ASSETS}/favicon.png"),
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=url(request, app.openapi_url or "/openapi.json"),
            title=f"{app.title} - ReDoc",
            redoc_js_url=url(request, f"{ASSETS}/redoc.standalone.js"),
            redoc_favicon_url=url(request, f"{ASSETS}/favicon.png"),
            with_google_fonts=False,
        )
