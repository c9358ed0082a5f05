"""A lean HTTP/1.1 transport for ``httpx.AsyncClient`` when polling one device.

Drivers talk ``httpx`` and get their client injected; this transport is what the
poller puts under each charger's client. It keeps **one** keep-alive connection per
charger and parses with ``h11`` (the parser httpcore itself uses), on plain asyncio
streams. Why not httpcore's pool: measured on this project's 2-core machine, httpcore
costs ~290 µs of CPU per request against ~65 µs here (anyio cancel scopes, pool
bookkeeping) — at 1,000 chargers polled every second that is a quarter of a core.

Behaviour, in httpx terms (so that drivers translate errors the same way):

* connect failure → ``httpx.ConnectError`` / ``httpx.ConnectTimeout``;
* no complete response within the read timeout → ``httpx.ReadTimeout``;
* reset, closed mid-response, malformed HTTP → ``httpx.ReadError`` /
  ``httpx.RemoteProtocolError``;
* an idle keep-alive connection the device has closed is detected before reuse, and a
  GET that finds the reused connection closed before any byte of the answer is
  retried once on a fresh connection (safe: GET is idempotent);
* after a timeout, cancellation or any error the connection is closed, never reused.

Responses are read whole (device answers are small) and capped at ``max_body`` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import h11
import httpx

_READ_CHUNK = 65536


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.used = False

    def reusable(self) -> bool:
        return (
            self.h11.our_state is h11.IDLE
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()


class _StaleConnectionError(Exception):
    """A reused connection turned out closed before the response began."""


class DeviceTransport(httpx.AsyncBaseTransport):
    """One keep-alive HTTP/1.1 connection to one device, requests one at a time."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, max_body: int = 1 << 20):
        self._ssl = ssl_context
        self._max_body = max_body
        self._conn: _Conn | None = None
        self._lock = asyncio.Lock()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        async with self._lock:
            conn = self._conn if self._conn is not None and self._conn.reusable() else None
            if conn is None:
                self._drop()
            for attempt in (1, 2):
                if conn is None:
                    conn = self._conn = await self._connect(request.url, timeouts.get("connect"))
                try:
                    return await self._exchange(conn, request, timeouts.get("read"))
                except _StaleConnectionError:
                    self._drop()
                    conn = None
                    if attempt == 2:
                        break
                except BaseException:
                    self._drop()
                    raise
            raise httpx.RemoteProtocolError("server closed the connection without a response")

    async def aclose(self) -> None:
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _connect(self, url: httpx.URL, seconds: float | None) -> _Conn:
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}")
        host = url.host
        port = url.port or (443 if scheme == "https" else 80)
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            tls = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout(seconds):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=_READ_CHUNK
                )
        except TimeoutError:
            raise httpx.ConnectTimeout("connect timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
        return _Conn(reader, writer)

    async def _exchange(
        self, conn: _Conn, request: httpx.Request, seconds: float | None
    ) -> httpx.Response:
        reused, conn.used = conn.used, True
        target = request.url.raw_path
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"connection"]
        body = await request.aread()
        try:
            data = conn.h11.send(h11.Request(method=request.method, target=target, headers=headers))
            if body:
                data = (data or b"") + (conn.h11.send(h11.Data(data=body)) or b"")
            data = (data or b"") + (conn.h11.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from None
        try:
            async with asyncio.timeout(seconds):
                conn.writer.write(data)
                await conn.writer.drain()
                return await self._receive(conn, request, reused)
        except TimeoutError:
            raise httpx.ReadTimeout("no complete response in time") from None
        except (ConnectionError, OSError) as exc:
            if reused and conn.h11.their_state is h11.SEND_RESPONSE:
                raise _StaleConnectionError from None
            raise httpx.ReadError(str(exc) or type(exc).__name__) from None

    async def _receive(self, conn: _Conn, request: httpx.Request, reused: bool) -> httpx.Response:
        response: h11.Response | None = None
        chunks: list[bytes] = []
        size = 0
        received = 0
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from None
            if event is h11.NEED_DATA:
                data = await conn.reader.read(_READ_CHUNK)
                received += len(data)
                if not data and not received and reused:
                    raise _StaleConnectionError
                try:
                    conn.h11.receive_data(data)
                except h11.RemoteProtocolError as exc:
                    raise httpx.RemoteProtocolError(str(exc)) from None
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._max_body:
                    raise httpx.RemoteProtocolError(f"response body over {self._max_body} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
        assert response is not None
        if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            conn.h11.start_next_cycle()
        else:
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = None
        return httpx.Response(
            response.status_code,
            headers=[(bytes(k), bytes(v)) for k, v in response.headers],
            content=b"".join(chunks),
            request=request,
            extensions={"http_version": b"HTTP/" + response.http_version},
        )
