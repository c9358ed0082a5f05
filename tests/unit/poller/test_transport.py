"""The lean device transport under httpx, against a scripted local HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from chargelift_poller.transport import DeviceTransport

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """Answers each request with the next scripted reply (the last one repeats)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
                if not await reply(reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


def send(raw: bytes, *, keep: bool = True) -> Reply:
    async def reply(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(raw)
        await w.drain()
        return keep

    return reply


def ok(body: bytes = b'{"ChgState": "Idle"}', *, keep: bool = True) -> Reply:
    extra = b"" if keep else b"Connection: close\r\n"
    return send(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
        keep=keep,
    )  # fmt: skip


def hang() -> Reply:
    async def reply(_r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(3600)
        return False

    return reply


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server() as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=DeviceTransport(), timeout=1.0, trust_env=False) as c:
        yield c


def url(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}/MHCP/1.0/ChargeData?DevKey=1234"


async def test_keep_alive_reuses_one_connection(server: Server, http: httpx.AsyncClient) -> None:
    server.replies = [ok()]
    for _ in range(5):
        r = await http.get(url(server), headers={"Accept": "application/json"})
        assert r.status_code == 200
        assert r.json() == {"ChgState": "Idle"}
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"GET /MHCP/1.0/ChargeData?DevKey=1234 HTTP/1.1\r\n")
    assert b"accept: application/json" in first.lower()
    assert b"host: 127.0.0.1" in first.lower()


async def test_chunked_and_status_codes(server: Server, http: httpx.AsyncClient) -> None:
    server.replies = [
        send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"),
    ]
    assert (await http.get(url(server))).content == b"hello"
    assert (await http.get(url(server))).status_code == 403


async def test_connection_close_opens_a_new_connection(
    server: Server, http: httpx.AsyncClient
) -> None:
    server.replies = [ok(keep=False)]
    for _ in range(3):
        assert (await http.get(url(server))).status_code == 200
    assert server.connections == 3


async def test_body_delimited_by_close(server: Server, http: httpx.AsyncClient) -> None:
    server.replies = [send(b"HTTP/1.0 200 OK\r\n\r\n{}", keep=False)]
    assert (await http.get(url(server))).content == b"{}"


async def test_a_device_that_closed_the_idle_connection_is_retried_once(
    server: Server, http: httpx.AsyncClient
) -> None:
    async def close_without_answer(_r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> bool:
        return False

    server.replies = [ok(), close_without_answer, ok()]
    assert (await http.get(url(server))).status_code == 200
    assert (await http.get(url(server))).status_code == 200
    assert server.connections == 2


async def test_a_fresh_connection_closed_without_answer_is_an_error(
    server: Server, http: httpx.AsyncClient
) -> None:
    async def close_without_answer(_r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> bool:
        return False

    server.replies = [close_without_answer]
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(url(server))


async def test_truncated_body_is_a_protocol_error(server: Server, http: httpx.AsyncClient) -> None:
    server.replies = [send(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"Chg', keep=False)]
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(url(server))


async def test_garbage_is_a_protocol_error(server: Server, http: httpx.AsyncClient) -> None:
    server.replies = [send(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", keep=False)]
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(url(server))


async def test_read_timeout_then_recovery(server: Server) -> None:
    server.replies = [hang(), ok()]
    async with httpx.AsyncClient(transport=DeviceTransport(), timeout=0.1) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(url(server))
        assert (await http.get(url(server))).status_code == 200  # on a new connection
    assert server.connections == 2


async def test_cancellation_closes_the_connection(server: Server, http: httpx.AsyncClient) -> None:
    server.replies = [hang(), ok()]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await http.get(url(server))
    assert (await http.get(url(server))).status_code == 200
    assert server.connections == 2


async def test_connection_refused(http: httpx.AsyncClient) -> None:
    async with Server() as s:
        port = s.port
    with pytest.raises(httpx.ConnectError):
        await http.get(f"http://127.0.0.1:{port}/x")


async def test_body_size_is_capped(server: Server) -> None:
    server.replies = [ok(b"x" * 2000)]
    async with httpx.AsyncClient(transport=DeviceTransport(max_body=1000)) as http:
        with pytest.raises(httpx.RemoteProtocolError, match="over 1000 bytes"):
            await http.get(url(server))


async def test_unsupported_scheme(http: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await DeviceTransport().handle_async_request(httpx.Request("GET", "ftp://x/"))
