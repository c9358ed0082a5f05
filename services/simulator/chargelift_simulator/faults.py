"""Fault injection: what a charger does wrong, switchable at run time.

A :class:`Fault` is a value; each :class:`FaultSlot` (one per simulated charger) holds the
fault in force and counts it down when ``remaining`` is set. Kinds, as a poller meets
them on real networks and real embedded web servers:

========================  ===============================================================
``none``                  answer correctly
``latency``               answer correctly after ``latency_s`` seconds
``timeout``               read the request, never answer; hold the connection until the
                          client gives up (or close it silently after ``latency_s`` if > 0)
``http500``               ``500 Internal Server Error`` (the request is not processed)
``malformed``             ``200`` with a body that is not JSON
``truncated``             ``200``, Content-Length of the whole body, half of it, then close
``extra_fields``          the correct JSON plus unknown keys of every JSON type
``reset``                 read the request, then close with SO_LINGER 0 (TCP RST)
``crafted``               ``200``, the correct ChargeData with the keys of ``raw`` set to
                          their raw JSON text (``{"ActPwr": "NaN", "Price": "1e400"}``):
                          what a broken or hostile firmware may write (issue 14)
``exception``             Modbus: an exception response, code ``raw["code"]`` (default 4,
                          server device failure); MHCP: like ``http500``
========================  ===============================================================

The Modbus TCP servers (:mod:`chargelift_simulator.modbus`) read the same switches:
``malformed`` is a frame that is not Modbus (garbage bytes), ``truncated`` half of the
answer then close, ``http500`` an exception response (code 4) and ``crafted`` the
correct answer with the registers of ``raw`` (decimal address → 0..65535 as text) set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    """The kinds of fault (values are the control endpoint's ``kind`` strings)."""

    NONE = "none"
    LATENCY = "latency"
    TIMEOUT = "timeout"
    HTTP500 = "http500"
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    EXTRA_FIELDS = "extra_fields"
    RESET = "reset"
    CRAFTED = "crafted"
    EXCEPTION = "exception"


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault: its kind, a delay (latency/timeout) and how many requests it hits.

    ``remaining=None`` keeps it until it is replaced; ``remaining=n`` hits the next ``n``
    requests of the charger, then the charger is healthy again.
    """

    kind: FaultKind = FaultKind.NONE
    latency_s: float = 0.0
    remaining: int | None = None
    #: ``crafted``: ChargeData key → the raw JSON text of its value (may be invalid JSON).
    raw: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # Accept the plain strings of the control API as well as the enum.
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if isinstance(self.latency_s, bool) or not isinstance(self.latency_s, int | float):
            raise TypeError(f"latency_s must be a number, not {self.latency_s!r}")
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise ValueError(f"latency_s must be finite and >= 0, not {self.latency_s!r}")
        if self.remaining is not None and (
            isinstance(self.remaining, bool)
            or not isinstance(self.remaining, int)
            or self.remaining < 1
        ):
            raise ValueError(f"remaining must be an integer >= 1 or None, not {self.remaining!r}")
        raw = tuple(dict(self.raw).items())  # also accepts a mapping
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in raw):
            raise TypeError("raw must map ChargeData keys to raw JSON text (strings)")
        object.__setattr__(self, "raw", raw)

    def to_json(self) -> dict[str, Any]:
        """The control endpoint's representation."""
        doc: dict[str, Any] = {
            "kind": self.kind.value,
            "latency_s": self.latency_s,
            "remaining": self.remaining,
        }
        if self.raw:
            doc["raw"] = dict(self.raw)
        return doc


NO_FAULT = Fault()


class FaultSlot:
    """The fault in force on one charger, counted down per request."""

    __slots__ = ("_fault", "_left")

    def __init__(self) -> None:
        self._fault = NO_FAULT
        self._left: int | None = None

    def set(self, fault: Fault) -> None:
        """Replace the fault in force (``Fault()`` / kind ``none`` clears it)."""
        self._fault = fault
        self._left = fault.remaining

    @property
    def current(self) -> Fault:
        """The fault in force, ``remaining`` showing what is left of it."""
        if self._fault.kind is FaultKind.NONE:
            return NO_FAULT
        if self._left is None:
            return self._fault
        return Fault(self._fault.kind, self._fault.latency_s, self._left, self._fault.raw)

    def take(self) -> Fault:
        """The fault for the request now arriving (and count it)."""
        fault = self._fault
        if fault.kind is FaultKind.NONE or self._left is None:
            return fault
        self._left -= 1
        if self._left <= 0:
            self.set(NO_FAULT)
        return fault
