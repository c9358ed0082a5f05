"""Who may connect: the OCPP 1.6 security profiles, decided at the HTTP handshake.

:meth:`Authenticator.check` looks at the request (path, headers) and what the TLS layer
established (a verified client certificate's common name, or none) and returns either
:class:`Accepted` or :class:`Refused` with the HTTP status and a reason for the metrics
and the log. A certificate from another CA never gets here: the TLS handshake fails.

- profile 1: HTTP Basic (user = charge point id), on the plain listener only (enabled
  with ``OCPP_ALLOW_PLAIN``), or over TLS;
- profile 2: TLS and HTTP Basic;
- profile 3: TLS and a client certificate whose CN is the charge point id.

Order of the checks (each refusal is counted under its reason): path, id grammar,
subprotocol, registry, transport, credentials. Passwords and Authorization headers are
never logged.

Password checks (scrypt: tens of milliseconds of CPU and 16 MiB each, by design) run on
:class:`PasswordChecks`: a few dedicated threads and a bounded waiting line. When the
line is full the handshake is answered 503 with ``Retry-After`` at once (reason
``busy``); a handshake whose client has gone while it waited is not checked (counted
``abandoned``). A connection storm (every charge point after a gateway restart or a
power cut) thus costs at most the checks the gateway can do, never a check for a
client that is no longer there.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal, Protocol

from chargelift_ocpp.config import SUBPROTOCOL
from chargelift_ocpp.registry import (
    MAX_PASSWORD_BYTES,
    ChargePointEntry,
    Registry,
    RegistryError,
    hash_password,
    valid_charge_point_id,
    verify_password,
)

Reason = Literal[
    "bad_path",
    "invalid_id",
    "subprotocol",
    "unknown_id",
    "plain_not_allowed",
    "no_password",
    "wrong_password",
    "no_certificate",
    "wrong_certificate",
    "too_many_connections",
    "busy",
    "abandoned",
]
#: Every refusal reason (the label values of ``ocpp_handshakes_refused_total``).
REASONS: tuple[Reason, ...] = Reason.__args__  # type: ignore[attr-defined]

# Every refusal about who the client is gets the same 401 and the same body, and an
# unknown id costs the same password check as a known one: a scanner learns nothing about
# which ids are registered or with which profile (the reason is logged and counted).
_STATUS: dict[Reason, HTTPStatus] = {
    "bad_path": HTTPStatus.NOT_FOUND,
    "invalid_id": HTTPStatus.NOT_FOUND,
    "subprotocol": HTTPStatus.BAD_REQUEST,
    "unknown_id": HTTPStatus.UNAUTHORIZED,
    "plain_not_allowed": HTTPStatus.UNAUTHORIZED,
    "no_password": HTTPStatus.UNAUTHORIZED,
    "wrong_password": HTTPStatus.UNAUTHORIZED,
    "no_certificate": HTTPStatus.UNAUTHORIZED,
    "wrong_certificate": HTTPStatus.UNAUTHORIZED,
    "too_many_connections": HTTPStatus.SERVICE_UNAVAILABLE,
    "busy": HTTPStatus.SERVICE_UNAVAILABLE,
    # The client went away while its password check waited: nobody reads the answer.
    "abandoned": HTTPStatus.SERVICE_UNAVAILABLE,
}
#: What a client is told for each status (never the reason: see above).
ANSWER: dict[HTTPStatus, str] = {
    HTTPStatus.NOT_FOUND: "not found\n",
    HTTPStatus.BAD_REQUEST: "the only subprotocol is ocpp1.6\n",
    HTTPStatus.UNAUTHORIZED: "unauthorized\n",
    HTTPStatus.SERVICE_UNAVAILABLE: "busy, retry later\n",
}


@functools.cache
def _dummy_hash() -> str:
    """Checked against an unknown id's password, so that it costs what a known one costs."""
    return hash_password("chargelift-ocpp-no-such-charge-point")


_MAX_ID_CHARS_SHOWN = 64
_SAFE = re.compile(r"[^A-Za-z0-9._~/-]")


class Headers(Protocol):
    def get_all(self, key: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    charge_point: ChargePointEntry
    #: How it proved its identity: "basic" or "certificate".
    method: Literal["basic", "certificate"]


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    #: The charge point id from the URL, made safe for a log line ("" if none).
    shown_id: str = ""

    @property
    def status(self) -> HTTPStatus:
        return _STATUS[self.reason]


Decision = Accepted | Refused


def printable(text: str) -> str:
    """``text`` cut and stripped of anything but URL-safe characters: for a log line."""
    return _SAFE.sub("?", text[:_MAX_ID_CHARS_SHOWN])


def charge_point_id(path: str, prefix: str) -> str | None:
    """The id in ``<prefix>/<id>`` (query string ignored); None if the path is another."""
    path = path.split("?", 1)[0]
    head = prefix.rstrip("/") + "/"
    if not path.startswith(head):
        return None
    rest = path[len(head) :]
    return rest if rest and "/" not in rest else None


def offers_subprotocol(headers: Headers) -> bool:
    offered = ",".join(headers.get_all("Sec-WebSocket-Protocol"))
    return SUBPROTOCOL in {p.strip() for p in offered.split(",")}


def basic_credentials(headers: Headers) -> tuple[str, bytes] | None:
    """(user, password) of an ``Authorization: Basic`` header, None if absent or bad."""
    values = headers.get_all("Authorization")
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "basic" or len(token) > 4 * (MAX_PASSWORD_BYTES + 64):
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", errors="replace"), password


class ChecksBusyError(Exception):
    """Too many password checks are waiting: the handshake is answered 503."""


class CheckAbandonedError(Exception):
    """The client went away while its password check waited: it was not checked."""


#: Outcomes of a password check (the label values of ``ocpp_password_checks_total``).
CHECK_OUTCOMES = ("checked", "abandoned", "busy")


class PasswordChecks:
    """scrypt checks on ``threads`` dedicated threads, at most ``queue`` waiting.

    :meth:`verify` raises :class:`ChecksBusyError` at once when ``threads + queue``
    checks are already in the line (the caller answers 503 + Retry-After: OCPP charge
    points retry), and :class:`CheckAbandonedError` when, at its turn, ``alive()`` says
    the client has gone. A handshake cancelled while it waits (websockets' open timeout,
    10 s) is taken out of the line and never checked; a check that has started runs to
    its end and holds its thread until then: never more than ``threads`` at once.

    The threads take the next check themselves, without the event loop: a busy loop
    (a connection storm is one) does not leave them idle. So ``alive`` is called on a
    check's thread: it must only read state (:func:`.server.client_alive` does). The
    default thread pool, shared with everything else, is not used; a few dedicated
    threads also bound the memory (glibc keeps a 16-MiB scrypt buffer per arena).
    """

    def __init__(
        self,
        threads: int = 1,
        queue: int = 32,
        *,
        verify: Callable[[bytes, str], bool] | None = None,
    ) -> None:
        if threads < 1 or queue < 0:
            raise ValueError("threads must be >= 1 and queue >= 0")
        self.threads, self.queue = threads, queue
        #: The check itself (tests replace it); None: :func:`.registry.verify_password`.
        self.check = verify
        self._executor: ThreadPoolExecutor | None = None
        #: Checks in the line (waiting or running), as the event loop counts them.
        self.pending = 0
        #: Outcome -> count (``checked``, ``abandoned``, ``busy``).
        self.counts: dict[str, int] = dict.fromkeys(CHECK_OUTCOMES, 0)
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """Checks waiting for a thread now."""
        return max(0, self.pending - self.threads)

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1

    def _run(self, password: bytes, stored: str, alive: Callable[[], bool]) -> bool | None:
        """On a check's thread: None if the client has gone, else the check's result."""
        if not alive():
            self._count("abandoned")
            return None
        self._count("checked")
        check = self.check if self.check is not None else verify_password
        try:
            return check(password, stored)
        except RegistryError:
            return False

    async def verify(
        self, password: bytes, stored: str, alive: Callable[[], bool] = lambda: True
    ) -> bool:
        if self.pending >= self.threads + self.queue:
            self._count("busy")
            raise ChecksBusyError
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="ocpp-password")
        loop = asyncio.get_running_loop()
        # Cancelling this future (the handshake's timeout) takes a waiting check out of
        # the line; a running one cannot be stopped and ends on its thread.
        line = loop.run_in_executor(self._executor, self._run, password, stored, alive)
        self.pending += 1
        line.add_done_callback(self._left)
        result = await line
        if result is None:
            raise CheckAbandonedError
        return result

    def _left(self, _: object) -> None:
        self.pending -= 1

    def close(self) -> None:
        """Stop the threads (a running check finishes first; waiting ones are dropped)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class Authenticator:
    """Decides each handshake against the :class:`Registry`.

    ``tls`` says which listener the request came in on; ``peer_cn`` is the common name
    of the client certificate the TLS layer verified (None: none presented); ``alive``
    says whether the client is still connected (a password check waiting its turn is
    skipped when it is not). Password checks run on ``checks`` (:class:`PasswordChecks`).
    """

    def __init__(
        self, registry: Registry, path_prefix: str, *, checks: PasswordChecks | None = None
    ) -> None:
        self.registry = registry
        self.path_prefix = path_prefix
        self.checks = checks if checks is not None else PasswordChecks()
        self._process_key = secrets.token_bytes(32)
        #: charge point id -> (the registry hash, HMAC of the password it proved)
        self._verified: dict[str, tuple[str, bytes]] = {}

    async def check(
        self,
        path: str,
        headers: Headers,
        *,
        tls: bool,
        peer_cn: str | None,
        alive: Callable[[], bool] = lambda: True,
    ) -> Decision:
        cp_id = charge_point_id(path, self.path_prefix)
        if cp_id is None:
            return Refused("bad_path")
        shown = printable(cp_id)
        try:
            return await self._decide(cp_id, shown, headers, tls, peer_cn, alive)
        except ChecksBusyError:
            return Refused("busy", shown)
        except CheckAbandonedError:
            return Refused("abandoned", shown)

    async def _decide(
        self,
        cp_id: str,
        shown: str,
        headers: Headers,
        tls: bool,
        peer_cn: str | None,
        alive: Callable[[], bool],
    ) -> Decision:
        if not valid_charge_point_id(cp_id):
            return Refused("invalid_id", shown)
        if not offers_subprotocol(headers):
            return Refused("subprotocol", shown)
        entry = self.registry.get(cp_id)
        if entry is None:
            creds = basic_credentials(headers)
            if creds is not None:
                await self.checks.verify(creds[1], _dummy_hash(), alive)
            return Refused("unknown_id", shown)
        if not tls and entry.profile != 1:
            return Refused("plain_not_allowed", shown)
        if entry.profile == 3:
            if peer_cn is None:
                return Refused("no_certificate", shown)
            if peer_cn != cp_id:
                return Refused("wrong_certificate", shown)
            return Accepted(entry, "certificate")
        if peer_cn is not None and peer_cn != cp_id:
            # A certificate for another identity is a wrong certificate, even with Basic.
            return Refused("wrong_certificate", shown)
        creds = basic_credentials(headers)
        if creds is None:
            return Refused("no_password", shown)
        user, password = creds
        if user != cp_id or entry.password_hash is None:
            return Refused("wrong_password", shown)
        if self._verified_before(cp_id, password, entry.password_hash):
            return Accepted(entry, "basic")
        ok = await self.checks.verify(password, entry.password_hash, alive)
        if ok:
            self._remember(cp_id, password, entry.password_hash)
        return Accepted(entry, "basic") if ok else Refused("wrong_password", shown)

    # A charge point on a flaky link reconnects often. scrypt costs tens of milliseconds
    # and 16 MiB per check, by design; so the password a charge point last proved is
    # remembered as an HMAC under a key that lives only in this process, for as long as
    # its registry hash is the same. A wrong password, or a changed registry entry, always
    # takes the full check. (A restarted gateway starts with nothing remembered: every
    # charge point's first connection costs one check; docs/benchmarks.md, "OCPP".)

    def _digest(self, password: bytes) -> bytes:
        return hmac.new(self._process_key, password, hashlib.sha256).digest()

    def _verified_before(self, cp_id: str, password: bytes, password_hash: str) -> bool:
        known = self._verified.get(cp_id)
        return (
            known is not None
            and known[0] == password_hash
            and hmac.compare_digest(known[1], self._digest(password))
        )

    def _remember(self, cp_id: str, password: bytes, password_hash: str) -> None:
        self._verified[cp_id] = (password_hash, self._digest(password))
