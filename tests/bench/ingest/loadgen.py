"""A lean MQTT 5 QoS 1 load generator for ``bench_ingest.py``: one mutual-TLS connection
per charger identity, PUBLISH packets built by hand and written a window at a time.

Why not ``chargelift_runtime.mqtt.MqttClient``: it sends every PUBLISH as its own TLS
record and ``send()`` (≈ 15 µs of CPU each). On a 2-core machine shared by broker,
database, ingest and load generator, a heavy load generator takes CPU from the system
under test and the benchmark measures the load generator. Here a window of messages is
one write (one TLS record stream, one syscall), so the generator costs a fraction of a
core. The broker sees ordinary QoS 1 publishes; a message counts as published only when
its PUBACK arrives with a success code (a refused publish raises).

Only what the benchmark needs: CONNECT (clean start, no properties), CONNACK, PUBLISH
QoS 1 (not retained), PUBACK. Packet ids cycle through 1..65535; the window is far
smaller, so an id is never reused while in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from dataclasses import dataclass, field


class LoadgenError(Exception):
    """The broker refused the connection or a publish, or closed the connection."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id: str, keepalive: int = 60) -> bytes:
    # Protocol name, version 5, flags: clean start; keep-alive; properties: none.
    variable = _string("MQTT") + bytes([5, 0x02]) + struct.pack("!H", keepalive) + b"\x00"
    body = variable + _string(client_id)
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: bytes, packet_id: int, payload: bytes) -> bytes:
    """QoS 1, not retained, no properties."""
    body = struct.pack("!H", len(topic)) + topic + struct.pack("!H", packet_id) + b"\x00" + payload
    return b"\x32" + _varint(len(body)) + body


@dataclass
class Connection:
    """One publishing connection; :meth:`send` writes many messages at once."""

    identity: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    outstanding: set[int] = field(default_factory=set)
    acked: int = 0
    _next_id: int = 0
    _drained: asyncio.Event = field(default_factory=asyncio.Event)
    _failed: BaseException | None = None
    _task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, ctx: ssl.SSLContext, identity: str, client_id: str
    ) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        writer.write(connect_packet(client_id))
        kind, body = await _read_packet(reader)
        if kind != 0x20 or len(body) < 2 or body[1] != 0:
            writer.close()
            raise LoadgenError(f"{identity}: connection refused ({kind:#04x} {body.hex()})")
        conn = cls(identity, reader, writer)
        conn._drained.set()
        conn._task = asyncio.create_task(conn._read_acks(), name=f"acks:{identity}")
        return conn

    def send(self, messages: list[tuple[bytes, bytes]]) -> None:
        """Write ``(topic, payload)`` messages as QoS 1 publishes in one write."""
        if self._failed is not None:
            raise LoadgenError(f"{self.identity}: {self._failed}")
        packets = []
        for topic, payload in messages:
            self._next_id = self._next_id % 65535 + 1
            self.outstanding.add(self._next_id)
            packets.append(publish_packet(topic, self._next_id, payload))
        if packets:
            self._drained.clear()
            self.writer.write(b"".join(packets))

    async def wait_acked(self) -> None:
        """Wait until every message sent so far is acknowledged."""
        await self._drained.wait()
        if self._failed is not None:
            raise LoadgenError(f"{self.identity}: {self._failed}")

    async def _read_acks(self) -> None:
        try:
            while True:
                kind, body = await _read_packet(self.reader)
                if kind != 0x40:
                    raise LoadgenError(f"unexpected packet type {kind:#04x}")
                (pid,) = struct.unpack("!H", body[:2])
                if len(body) > 2 and body[2] >= 0x80:
                    raise LoadgenError(f"publish refused: reason code {body[2]:#04x}")
                self.outstanding.discard(pid)
                self.acked += 1
                if not self.outstanding:
                    self._drained.set()
        except (OSError, asyncio.IncompleteReadError, LoadgenError) as exc:
            self._failed = exc
            self._drained.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self.writer.write(b"\xe0\x00")  # DISCONNECT, normal
            self.writer.close()
            async with asyncio.timeout(2):
                await self.writer.wait_closed()


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first & 0xF0, await reader.readexactly(length)
