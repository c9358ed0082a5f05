"""A small HTTP/1.1 server on asyncio streams, with byte-level control of every answer.

Why not a framework: fault injection needs to send half a body, never answer, or reset
the socket, and a thousand servers in one process need per-request work to stay tiny.
This is what an embedded box's web server does and no more: request line, headers,
a ``Content-Length`` body (no chunked uploads), keep-alive by default on HTTP/1.1,
``Connection: close`` honoured, idle keep-alive connections closed after a while.

A handler gets each :class:`Request` with the :class:`Connection` and writes the answer
itself (usually ``await conn.send(response(...))``); it returns whether the connection
stays open for the next request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

log = logging.getLogger(__name__)

#: Longest request head (request line + headers) and body accepted.
MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}

#: SO_LINGER on, timeout 0: close() then sends RST instead of FIN.
_LINGER_RST = struct.pack("ii", 1, 0)


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request. Header names are lower-case; the first query value wins."""

    method: str
    path: str
    query: dict[str, str]
    version: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class BadRequestError(Exception):
    """The bytes are not a request this server takes: answer ``status`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def response(
    status: int,
    body: bytes = b"",
    *,
    content_type: str = "application/json",
    keep_alive: bool = True,
    content_length: int | None = None,
    extra_headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A complete response; ``content_length`` may lie (the truncated fault needs it)."""
    length = len(body) if content_length is None else content_length
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    lines += [f"{name}: {value}" for name, value in extra_headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_head(head: bytes) -> tuple[str, str, dict[str, str], str, dict[str, str]]:
    """Request line and headers → (method, path, query, version, headers).

    Raises :class:`BadRequestError` for anything a simple server would refuse.
    """
    text = head.decode("latin-1").lstrip("\r\n")  # RFC 9112: ignore leading empty lines
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith("/"):
        raise BadRequestError(400, "bad request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequestError(505, "only HTTP/1.0 and HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequestError(400, "bad header line")
        headers[name.lower()] = value.strip()
    path, _, query_string = target.partition("?")
    query: dict[str, str] = {}
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        query.setdefault(key, value)
    return method, path, query, version, headers


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request, or None when the peer closed (also in the middle of one)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise BadRequestError(431, "request head too large") from None
    method, path, query, version, headers = parse_head(head[:-4])
    if "transfer-encoding" in headers:
        # A simple embedded server: bodies come with Content-Length or not at all.
        raise BadRequestError(501, "Transfer-Encoding is not supported")
    raw_length = headers.get("content-length", "0")
    if not raw_length.isdigit():
        raise BadRequestError(400, "bad Content-Length")
    length = int(raw_length)
    if length > MAX_BODY:
        raise BadRequestError(413, "body too large")
    try:
        body = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        return None
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    # HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 only when asked.
    keep_alive = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens
    return Request(method, path, query, version, headers, body, keep_alive)


class Connection:
    """One client connection, with the means to misbehave on it."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        """Write bytes and wait until the transport has taken them."""
        self.writer.write(data)
        await self.writer.drain()

    def peer_gone(self) -> bool:
        """True when the client has closed or reset the connection already."""
        return self.reader.at_eof() or self.writer.is_closing()

    def reset(self) -> None:
        """Close abruptly: SO_LINGER 0 makes the kernel send RST, not FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        self.writer.transport.abort()

    async def hold(self, limit: float | None) -> None:
        """Answer nothing until the client closes (or ``limit`` seconds have passed)."""
        try:
            async with asyncio.timeout(limit):
                while await self.reader.read(4096):
                    pass  # whatever else the client sends is ignored, like the request
        except TimeoutError:
            return


Handler = Callable[[Request, Connection], Awaitable[bool]]


class HttpServer:
    """Serves one port with one handler. ``start`` binds; ``close`` ends every connection."""

    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        idle_timeout: float = 30.0,
        name: str = "http",
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.name = name
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and listen; ``port`` becomes the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self.port, limit=MAX_HEAD, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and end the open connections (their handlers are cancelled)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # The tasks log their own errors; here they can only end or be cancelled.
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    @property
    def listening(self) -> bool:
        """True between ``start`` and ``close``."""
        return self._server is not None

    @property
    def connections(self) -> int:
        """Open client connections now."""
        return len(self._tasks)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(Connection(reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client reset or vanished mid-answer: nothing left to do
        except asyncio.CancelledError:
            # Only close() (or asyncio.run's final clean-up) cancels a connection task, and
            # the task must then end *normally*: CPython 3.11's StreamReaderProtocol calls
            # task.exception() in a done-callback, which raises for a cancelled task and
            # logs "Exception in callback ... CancelledError" once per open connection.
            pass
        except Exception:
            # The boundary of a connection task: a bug in a handler must be seen (with
            # its traceback) but must not take the other chargers' connections down.
            log.exception("%s: error while serving a connection", self.name)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, conn: Connection) -> None:
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    request = await read_request(conn.reader)
            except TimeoutError:
                return  # idle keep-alive connection
            except BadRequestError as e:
                answer = response(
                    e.status, e.message.encode(), content_type="text/plain", keep_alive=False
                )
                await conn.send(answer)
                return
            if request is None or not await self.handler(request, conn):
                return
