"""Prometheus metrics of ingest, registered on an injected registry (names: docs/ingest.md)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chargelift_runtime.certmetrics import CertificateExpiryCollector, certificate_files

BATCH_BUCKETS = (1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000)
WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)


class IngestMetrics:
    """Every metric of ingest, on ``registry`` (a fresh one per test, the process's in
    :class:`chargelift_ingest.service.IngestService`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        self.received = Counter(
            "ingest_messages_received_total", "MQTT messages received", registry=r
        )
        self.rows = Counter("ingest_rows_written_total", "readings inserted", registry=r)
        self.duplicates = Counter(
            "ingest_duplicates_total",
            "readings already stored (redelivery, replay, retained re-send)",
            registry=r,
        )
        self.commands = Counter(
            "ingest_commands_stored_total",
            "commands recorded in the audit (table commands)",
            registry=r,
        )
        self.command_results = Counter(
            "ingest_command_results_stored_total",
            "results of commands recorded in the audit (table command_results)",
            registry=r,
        )
        self.audit_duplicates = Counter(
            "ingest_command_duplicates_total",
            "commands and results already recorded (redelivery, a repeat, a command the API "
            "recorded first)",
            registry=r,
        )
        self.dead = Counter(
            "ingest_dead_letters_total", "messages that can never be stored", ["reason"],
            registry=r,
        )  # fmt: skip
        self.dead_rate_limited = Counter(
            "ingest_dead_letters_rate_limited_total",
            "dead letters over budget: counted and acknowledged, not stored "
            "(limit: identity, global)",
            ["limit"],
            registry=r,
        )
        self.dead_pruned = Counter(
            "ingest_dead_letters_pruned_total",
            "dead letters deleted by the retention job",
            registry=r,
        )
        self.availability = Counter(
            "ingest_availability_messages_total", "availability messages", registry=r
        )
        self.cleared = Counter(
            "ingest_retained_cleared_total",
            "zero-length messages on a charger's topic or an edge's availability: a retained "
            "value deleted, nothing stored",
            registry=r,
        )
        self.batch_size = Histogram(
            "ingest_batch_size", "messages per committed batch", buckets=BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "ingest_batch_write_seconds", "time to write and commit one batch",
            buckets=WRITE_BUCKETS, registry=r,
        )  # fmt: skip
        self.lag = Histogram(
            "ingest_lag_seconds", "commit time minus SamplingTime", buckets=LAG_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.edge_chargers_refused = Counter(
            "ingest_edge_chargers_refused_total",
            "chargers named in an edge's list that its certificate does not list (ignored)",
            registry=r,
        )
        self.db_errors = Counter(
            "ingest_db_errors_total", "failed batch writes", ["kind"], registry=r
        )
        self.pending = Gauge(
            "ingest_pending_messages", "messages received and not yet committed", registry=r
        )
        self.mqtt_connected = Gauge(
            "ingest_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.stalled = Gauge(
            "ingest_stalled_seconds",
            "seconds that messages have been held without any batch committed (0 while none wait)",
            registry=r,
        )
        self.database_ok = Gauge(
            "ingest_database_ok",
            "0 while batch writes fail and are being retried, else 1",
            registry=r,
        )

    def watch_certificates(self, certs_dir: Path, ca_file: Path) -> CertificateExpiryCollector:
        """Export the expiry of every certificate in ``certs_dir`` (CA, broker, clients)
        and the nextUpdate of its ``crl.pem``: registers a collector on the registry.

        Ingest runs next to the broker and sees the whole certificate directory, so it is
        the one service that can warn before the broker's or the CA's certificate expires.
        """
        crl = certs_dir / "crl.pem"  # the broker's revocation list, beside the certificates
        collector = CertificateExpiryCollector(
            lambda: certificate_files(certs_dir, ca_file),
            lambda: [crl] if crl.exists() else [],
        )
        self.registry.register(collector)
        return collector
