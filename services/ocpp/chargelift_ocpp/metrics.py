"""Prometheus metrics of the OCPP gateway, registered on an injected registry (names:
docs/ocpp.md, "Metrics")."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from chargelift_edge.metrics import EdgeMetrics
from chargelift_ocpp.auth import CHECK_OUTCOMES, REASONS, PasswordChecks


class OcppMetrics:
    """Every metric of the gateway, on ``registry`` (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        #: The outbox's and the publishers' series, ``ocpp_`` as the poller's ``poller_``,
        #: and ``ocpp_reading_publish_seconds``: from the receipt of the OCPP message to
        #: the broker's PUBACK of each of its readings.
        self.edge = EdgeMetrics(r, "ocpp", receipt_latency=True)
        self.readings_unlisted = Counter(
            "ocpp_readings_unlisted_total",
            "readings for a charger the gateway's edge certificate does not list (dropped)",
            registry=r,
        )
        self.refused = Counter(
            "ocpp_handshakes_refused_total",
            "WebSocket handshakes refused before the upgrade, by reason",
            ["reason"],
            registry=r,
        )
        for reason in REASONS:
            self.refused.labels(reason)
        self.accepted = Counter(
            "ocpp_connections_accepted_total",
            "charge point connections accepted, by security profile",
            ["profile"],
            registry=r,
        )
        self.replaced = Counter(
            "ocpp_connections_replaced_total",
            "connections closed because the same charge point connected again",
            registry=r,
        )
        self.connected = Gauge(
            "ocpp_connected_charge_points", "charge points connected now", registry=r
        )
        self.messages = Counter(
            "ocpp_messages_total",
            "calls received from charge points and answered with a result, by action",
            ["action"],
            registry=r,
        )
        self.call_errors = Counter(
            "ocpp_call_errors_total",
            "calls answered with an OCPP CALLERROR, by error code",
            ["code"],
            registry=r,
        )
        self.unparseable = Counter(
            "ocpp_unparseable_messages_total",
            "messages that are no OCPP frame at all (not JSON, no unique id): dropped",
            registry=r,
        )
        self.mapping_errors = Counter(
            "ocpp_mapping_errors_total",
            "valid calls that could not be mapped (answered, no readings), by action",
            ["action"],
            registry=r,
        )
        self.readings = Counter("ocpp_readings_total", "readings handed to the outbox", registry=r)
        self.readings_refused = Counter(
            "ocpp_readings_refused_total",
            "readings for a charger the charge point is not registered for (dropped)",
            registry=r,
        )
        self.transactions = Counter(
            "ocpp_transactions_total",
            "StartTransaction and StopTransaction, by outcome (started, replayed, stopped, "
            "already_stopped, unknown)",
            ["outcome"],
            registry=r,
        )
        self.rate_limited = Counter(
            "ocpp_rate_limited_total",
            "messages held back because a connection sent faster than OCPP_MESSAGE_RATE",
            registry=r,
        )
        self.commands = Counter(
            "ocpp_commands",
            "Commands to the chargers by command and outcome (applied, rejected, expired, "
            "failed, reverted; duplicate: an id seen before, not applied again)",
            ["command", "outcome"],
            registry=r,
        )
        self.registry_reload_failures = Gauge(
            "ocpp_registry_reload_failures",
            "times the registry file changed and could not be read (the last good one stays)",
            registry=r,
        )


#: The mapper's own counters (``mapping.ChargePointMapper``), summed over charge points:
#: (attribute, metric name without ``_total``, help).
MAPPER_COUNTERS = (
    (
        "rejected_registers",
        "ocpp_energy_register_rejected",
        "energy register readings the plausibility gate held back (a drop, a jump "
        "backwards or an impossible jump forward): not published",
    ),
    ("dropped_values", "ocpp_values_dropped", "single values dropped as invalid"),
    (
        "clock_corrections",
        "ocpp_clock_corrections",
        "timestamps missing, unreadable or implausible: the receive time used instead",
    ),
    (
        "unattributed",
        "ocpp_transaction_messages_unattributed",
        "transaction messages whose connector could not be known (no readings)",
    ),
)


class MapperCounters:
    """A collector: :data:`MAPPER_COUNTERS` summed over the mappers ``mappers()`` gives."""

    def __init__(self, mappers: Callable[[], Iterable[object]]) -> None:
        self._mappers = mappers

    def collect(self) -> Iterator[Metric]:
        mappers = list(self._mappers())
        for attr, name, doc in MAPPER_COUNTERS:
            total = sum(int(getattr(m, attr, 0)) for m in mappers)
            yield CounterMetricFamily(name, doc, value=total)


class PasswordCheckCounters:
    """A collector: ``ocpp_password_checks_total{outcome}`` and
    ``ocpp_password_checks_waiting`` of a :class:`~.auth.PasswordChecks`."""

    def __init__(self, checks: PasswordChecks) -> None:
        self._checks = checks

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily(
            "ocpp_password_checks",
            "password checks at the handshake, by outcome: checked (scrypt ran), abandoned "
            "(the client had gone when its turn came: not checked), busy (the waiting line "
            "was full: answered 503 + Retry-After)",
            labels=["outcome"],
        )
        for outcome in CHECK_OUTCOMES:
            counter.add_metric([outcome], self._checks.counts[outcome])
        yield counter
        yield GaugeMetricFamily(
            "ocpp_password_checks_waiting",
            "password checks waiting for a thread now",
            value=self._checks.waiting,
        )
