"""The bridge's logic: one incoming message → the messages to publish (no I/O).

:class:`Bridge` is fed every message the bridge's MQTT session receives and answers
with :class:`Out` messages; :mod:`chargelift_bridge.service` only moves them. Kept pure
so that the guarantees are unit-tested on their own:

* a field's sample is republished on ``chargelift/ha/{c}/{Field}`` only when its
  SamplingTime is newer than the last one there (:mod:`.watermark`); the retained output
  topics, read back on start, seed the watermarks;
* the derived evcc values follow the same rule (their SamplingTime: the newest of the
  samples they are derived from);
* a charger's discovery documents are published the first time it is seen, again when
  its device fields change and when Home Assistant says ``online`` on
  ``homeassistant/status``, and removed (zero-length retained) when the charger is
  retired: its retained availability is deleted (docs/security.md, "Retiring a device").

Untrusted input: a payload over :data:`MAX_PAYLOAD_BYTES`, not an envelope, or a value
the field catalogue refuses is dropped and counted, affecting only itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from chargelift_bridge import derive
from chargelift_bridge.discovery import DEVICE_FIELDS, Device, documents
from chargelift_bridge.topics import (
    output_prefix,
    output_topic,
    parse_discovery_topic,
    parse_output_topic,
)
from chargelift_bridge.watermark import Watermarks
from chargelift_contract.envelope import Envelope, EnvelopeError, decode, encode
from chargelift_contract.errors import ContractError
from chargelift_contract.fields import field_spec
from chargelift_contract.topics import (
    AVAILABILITY,
    BRIDGE_ROOT,
    EDGES_ROOT,
    HA_STATUS,
    OFFLINE,
    ONLINE,
    ROOT,
    EdgeAvailabilityTopic,
    decode_edge_chargers,
    parse_edge_topic,
    validate_charger_id,
)

#: Larger payloads are dropped unread (a field's envelope is far smaller; ingest's
#: default limit is the same).
MAX_PAYLOAD_BYTES = 4096
HA_ONLINE = b"online"
#: An edge's charger list may fill a packet (docs/contract.md).
MAX_EDGE_LIST_BYTES = 65_536
#: The output leaf of a charger's availability through its edges (online/offline).
EDGE_LEAF = "edge"


class Dropped(StrEnum):
    """Why an incoming message was not republished (the metric's label)."""

    STALE = "stale"  # not newer than what the output topic has: the guarantee at work
    INVALID = "invalid"  # too large, not an envelope, a value the catalogue refuses
    TOO_MANY_CHARGERS = "too_many_chargers"


@dataclass(frozen=True, slots=True)
class Out:
    topic: str
    payload: bytes
    retain: bool = True


@dataclass
class _Charger:
    #: field → (SamplingTime, Value) of the newest sample seen (for the derivations).
    values: dict[str, tuple[datetime, Any]] = field(default_factory=dict)
    device: Device = field(default_factory=Device)
    #: discovery topics of this charger on the broker (found retained or published).
    documents: set[str] = field(default_factory=set)
    announced: bool = False
    #: What ``chargelift/ha/{c}/edge`` says (None: not published yet).
    reachable: bool | None = None
    #: The derived values last published (leaf → value).
    derived: dict[str, Any] = field(default_factory=dict)


class Bridge:
    def __init__(
        self,
        *,
        version: str,
        control: bool,
        min_current: float = 6.0,
        max_current: float = 32.0,
        max_chargers: int = 10_000,
        on_drop: Callable[[Dropped], None] | None = None,
    ) -> None:
        self.version = version
        self.control = control
        self.min_current = min_current
        self.max_current = max_current
        self.max_chargers = max_chargers
        self.watermarks = Watermarks()
        self.chargers: dict[str, _Charger] = {}
        #: edge → the chargers it lists; edge → online (None: not said yet).
        self.edge_chargers: dict[str, frozenset[str]] = {}
        self.edge_online: dict[str, bool] = {}
        self._on_drop = on_drop or (lambda _reason: None)

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> list[Out]:
        """The messages to publish in answer to one incoming message (in order)."""
        if topic.startswith(EDGES_ROOT + "/"):
            return self._edge(topic, payload)
        if len(payload) > MAX_PAYLOAD_BYTES:
            self._on_drop(Dropped.INVALID)
            return []
        if topic == HA_STATUS:
            return self.announce_all() if payload.strip().lower() == HA_ONLINE else []
        if topic.startswith(BRIDGE_ROOT + "/"):
            self._seed(topic, payload)
            return []
        charger = parse_discovery_topic(topic)
        if charger is not None:
            self._note_document(charger, topic, payload)
            return []
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != ROOT:
            return []  # commands, results, anything deeper: not ours
        _, charger, leaf = parts
        try:
            validate_charger_id(charger)
        except ContractError:
            self._on_drop(Dropped.INVALID)
            return []
        if leaf == AVAILABILITY:
            return self._availability(charger, payload)
        return self._sample(charger, leaf, payload)

    # -- edges (one connection for the chargers of a site) ------------------------------

    def _edge(self, topic: str, payload: bytes) -> list[Out]:
        """An edge's charger list or availability: a charger listed only by edges that
        are offline is offline (docs/contract.md, "Availability and the last will")."""
        affected = self._note_edge(topic, payload)
        if affected is None:
            self._on_drop(Dropped.INVALID)
            return []
        out: list[Out] = []
        for charger in sorted(affected):
            state = self.chargers.get(charger)
            if state is not None and state.announced:
                out += self._edge_availability(charger, state)
        return out

    def _note_edge(self, topic: str, payload: bytes) -> frozenset[str] | None:
        """Note an edge message; the chargers it may affect (None: invalid)."""
        if len(payload) > MAX_EDGE_LIST_BYTES:
            return None
        try:
            parsed = parse_edge_topic(topic)
            listed = (
                None
                if isinstance(parsed, EdgeAvailabilityTopic)
                else frozenset(decode_edge_chargers(payload) if payload else ())
            )
        except ContractError:
            return None
        before = self.edge_chargers.get(parsed.edge, frozenset())
        if listed is not None:
            self.edge_chargers[parsed.edge] = listed
            return before | listed
        word = payload.strip().lower()
        if word not in (ONLINE, OFFLINE, b""):
            return None
        if word:
            self.edge_online[parsed.edge] = word == ONLINE
        else:
            self.edge_online.pop(parsed.edge, None)
        return before

    def reachable(self, charger: str) -> bool:
        """Not listed by any edge, or listed by one that is not known to be offline."""
        edges = [e for e, listed in self.edge_chargers.items() if charger in listed]
        return not edges or any(self.edge_online.get(e, True) for e in edges)

    def _edge_availability(
        self, charger: str, state: _Charger, *, force: bool = False
    ) -> list[Out]:
        now = self.reachable(charger)
        if not force and state.reachable == now:
            return []
        state.reachable = now
        return [Out(output_topic(charger, EDGE_LEAF), ONLINE if now else OFFLINE)]

    def _seed(self, topic: str, payload: bytes) -> None:
        """An output topic read back (retained on start, or our own publish echoed)."""
        if parse_output_topic(topic) is None or not payload:
            return
        try:
            env = decode(payload)
        except EnvelopeError:
            return
        self.watermarks.seen(topic, env.sampling_time)

    def _note_document(self, charger: str, topic: str, payload: bytes) -> None:
        state = self.chargers.get(charger)
        if payload:
            if state is None:
                if len(self.chargers) >= self.max_chargers:
                    return
                state = self.chargers[charger] = _Charger()
            state.documents.add(topic)
        elif state is not None:
            state.documents.discard(topic)

    # -- chargers ------------------------------------------------------------------------

    def _charger(self, charger: str) -> _Charger | None:
        state = self.chargers.get(charger)
        if state is None:
            if len(self.chargers) >= self.max_chargers:
                self._on_drop(Dropped.TOO_MANY_CHARGERS)
                return None
            state = self.chargers[charger] = _Charger()
        return state

    def _availability(self, charger: str, payload: bytes) -> list[Out]:
        if not payload:
            return self.retire(charger)
        state = self._charger(charger)
        if state is None:
            return []
        return [] if state.announced else self.announce(charger)

    def _sample(self, charger: str, field_name: str, payload: bytes) -> list[Out]:
        if not payload:
            return []  # a deletion (retiring): the availability's deletion retires
        try:
            spec = field_spec(field_name)
            env = decode(payload)
            value = spec.check(env.value)
        except ContractError:
            self._on_drop(Dropped.INVALID)
            return []
        if (isinstance(value, int | float) and not spec.in_bounds(value)) or (
            isinstance(value, str) and "\x00" in value
        ):  # what ingest refuses too (out_of_range, wrong_type)
            self._on_drop(Dropped.INVALID)
            return []
        state = self._charger(charger)
        if state is None:
            return []
        out: list[Out] = [] if state.announced else self.announce(charger)
        topic = output_topic(charger, field_name)
        if not self.watermarks.admit(topic, env.sampling_time):
            self._on_drop(Dropped.STALE)
            return out
        out.append(Out(topic, encode(Envelope(env.sampling_time, value))))
        state.values[field_name] = (env.sampling_time, value)
        if field_name in DEVICE_FIELDS:
            device = Device.from_fields({k: v for k, (_, v) in state.values.items()})
            if device != state.device:
                state.device = device
                out += self.announce(charger)
        out += self._derived(charger, state)
        return out

    def _derived(self, charger: str, state: _Charger) -> list[Out]:
        v = state.values

        def value(name: str) -> Any:
            return v[name][1] if name in v else None

        def newest(*names: str) -> datetime | None:
            times = [v[n][0] for n in names if n in v]
            return max(times) if times else None

        derived: list[tuple[str, Any, datetime | None]] = [
            ("status", derive.evcc_status(value("ConnectedVehicle"), value("OperationState")),
             newest("ConnectedVehicle", "OperationState")),
            ("enabled", derive.enabled(value("OperationState"), value("VendorState"),
                                       value("CurrentLimit")),
             newest("OperationState", "VendorState", "CurrentLimit")),
            ("power", value("PowerOutput"), newest("PowerOutput")),
            ("energy", derive.energy_kwh(value("TotalEnergyConsumption")),
             newest("TotalEnergyConsumption")),
        ]  # fmt: skip
        out: list[Out] = []
        for leaf, result, at in derived:
            if result is None or at is None:
                continue
            topic = output_topic(charger, leaf)
            # The fields of one reading share a SamplingTime and arrive one by one: a
            # derived value computed from part of them may be corrected at the same
            # time (never with an older one).
            changed = state.derived.get(leaf) != result
            if self.watermarks.admit(topic, at, same_time=changed):
                state.derived[leaf] = result
                out.append(Out(topic, encode(Envelope(at, result))))
        return out

    # -- discovery -----------------------------------------------------------------------

    def documents_of(self, charger: str) -> dict[str, dict[str, Any]]:
        state = self.chargers.get(charger) or _Charger()
        return documents(
            charger,
            state.device,
            version=self.version,
            control=self.control,
            min_current=self.min_current,
            max_current=self.max_current,
        )

    def announce(self, charger: str) -> list[Out]:
        """Publish ``charger``'s discovery documents; remove ones of ours it no longer has
        (control switched off since)."""
        state = self.chargers[charger]
        docs = self.documents_of(charger)
        out = [Out(t, b"") for t in sorted(state.documents - docs.keys())]
        out += [Out(t, orjson.dumps(doc)) for t, doc in docs.items()]
        state.documents = set(docs)
        state.announced = True
        return out + self._edge_availability(charger, state, force=True)

    def announce_all(self) -> list[Out]:
        """Home Assistant (re)started: every charger's documents again."""
        out: list[Out] = []
        for charger in sorted(self.chargers):
            # Only chargers seen alive (an availability or a sample): documents found
            # retained for a charger that is no longer there are not revived.
            if self.chargers[charger].announced:
                out += self.announce(charger)
        return out

    def retire(self, charger: str) -> list[Out]:
        """The charger was retired: delete its documents and its output topics."""
        state = self.chargers.pop(charger, None)
        if state is None:
            return []
        topics = state.documents | set(self.documents_of(charger))
        out = [Out(t, b"") for t in sorted(topics)]
        prefix = output_prefix(charger)
        outputs = [t for t in self.watermarks.topics() if t.startswith(prefix)]
        out += [Out(t, b"") for t in sorted({*outputs, output_topic(charger, EDGE_LEAF)})]
        self.watermarks.forget(prefix)
        return out
