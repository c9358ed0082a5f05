"""The lifecycle every service follows, and the one shape of its ``/healthz``.

A service class owns its lifecycle: it is built from its settings (nothing starts in
``__init__``), and ``await service.run(stop)`` starts everything it owns, runs until
``stop`` is set, drains (each service says for how long), closes in reverse order and
returns. ``main()`` only parses the command line, loads the settings and calls
:func:`run_until_signal`, which sets ``stop`` on SIGTERM or SIGINT.

``/healthz`` of every service answers :func:`health` — ``{"status": "ok" | "stuck",
"version", "problem", ...}`` — 200 while ``problem`` is None, else 503.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Protocol

import orjson

from chargelift_runtime.http import Response
from chargelift_runtime.settings import SettingsError


class Service(Protocol):
    """What :func:`run_until_signal` runs."""

    async def run(self, stop: asyncio.Event) -> None: ...


async def serve(service: Service) -> None:
    """Run ``service`` until SIGTERM or SIGINT (then it drains and returns)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.run(stop)


def run_until_signal(service: Service) -> None:
    """``asyncio.run`` of :func:`serve`: the last line of a service's ``main()``."""
    asyncio.run(serve(service))


def settings_failed(prog: str, exc: SettingsError) -> int:
    """Report bad settings on stderr the one way every service does; exit status 2."""
    print(f"{prog}: {exc}", file=sys.stderr)
    return 2


def health(problem: str | None, version: str, **details: object) -> Response:
    """The ``/healthz`` answer: 200 and ``"status": "ok"``, or 503 and ``"stuck"``."""
    doc: dict[str, object] = {
        "status": "ok" if problem is None else "stuck",
        "version": version,
        "problem": problem,
    }
    doc.update(details)
    return (200 if problem is None else 503), "application/json", orjson.dumps(doc)
