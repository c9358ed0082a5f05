"""The small HTTP/1.1 layer: parsing, keep-alive rules, responses."""

from __future__ import annotations

import asyncio

import pytest

from chargelift_simulator.wire import (
    MAX_BODY,
    BadRequestError,
    Request,
    parse_head,
    read_request,
    response,
)


async def read(data: bytes) -> Request | None:
    reader = asyncio.StreamReader(limit=1024)
    reader.feed_data(data)
    reader.feed_eof()
    return await read_request(reader)


def test_parse_head_splits_path_query_version_and_headers() -> None:
    method, path, query, version, headers = parse_head(
        b"\r\nGET /MHCP/1.0/ChargeData?DevKey=12%2034&DevKey=x&Empty= HTTP/1.1\r\n"
        b"Host: box\r\nAccept:application/json\r\nX-Spaced:  v  "
    )
    assert (method, path, version) == ("GET", "/MHCP/1.0/ChargeData", "HTTP/1.1")
    assert query == {"DevKey": "12 34", "Empty": ""}  # the first value wins
    assert headers == {"host": "box", "accept": "application/json", "x-spaced": "v"}


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /x", 400),
        (b"GET x HTTP/1.1", 400),
        (b"G(T / HTTP/1.1", 400),
        (b"GET / HTTP/2.0", 505),
        (b"GET / HTTP/1.1\r\nNoColon", 400),
        (b"GET / HTTP/1.1\r\n Folded: x", 400),
    ],
)
def test_parse_head_refuses_what_a_simple_server_refuses(head: bytes, status: int) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_head(head)
    assert caught.value.status == status


async def test_read_request_reads_a_content_length_body_and_keep_alive_rules() -> None:
    req = await read(b"POST /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyEXTRA")
    assert req is not None
    assert (req.body, req.keep_alive) == (b"body", True)
    for head, keep_alive in [
        (b"GET /a HTTP/1.1\r\nConnection: Close", False),
        (b"GET /a HTTP/1.1\r\nConnection: keep-alive, Upgrade", True),
        (b"GET /a HTTP/1.0", False),
        (b"GET /a HTTP/1.0\r\nConnection: keep-alive", True),
    ]:
        req = await read(head + b"\r\n\r\n")
        assert req is not None
        assert req.keep_alive is keep_alive, head


async def test_read_request_returns_none_when_the_peer_closes_mid_request() -> None:
    assert await read(b"") is None
    assert await read(b"GET / HTTP/1.1\r\nHost") is None
    assert await read(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort") is None


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (f"POST / HTTP/1.1\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode(), 413),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 2000 + b"\r\n\r\n", 431),
    ],
)
async def test_read_request_refuses_bad_bodies_and_huge_heads(data: bytes, status: int) -> None:
    with pytest.raises(BadRequestError) as caught:
        await read(data)
    assert caught.value.status == status


def test_response_bytes() -> None:
    assert response(200, b"{}") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Connection: keep-alive\r\n\r\n{}"
    )
    closing = response(403, keep_alive=False, content_type="text/plain")
    assert closing.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"Connection: close\r\n" in closing
    assert b"Content-Length: 10\r\n" in response(200, b"abc", content_length=10)
