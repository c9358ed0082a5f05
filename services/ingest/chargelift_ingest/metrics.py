"""Prometheus metrics of ingest."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from chargelift_runtime.certmetrics import CertificateExpiryCollector, certificate_files

RECEIVED = Counter("ingest_messages_received_total", "MQTT messages received")
ROWS = Counter("ingest_rows_written_total", "readings inserted")
DUPLICATES = Counter(
    "ingest_duplicates_total", "readings already stored (redelivery, replay, retained re-send)"
)
DEAD = Counter("ingest_dead_letters_total", "messages that can never be stored", ["reason"])
DEAD_RATE_LIMITED = Counter(
    "ingest_dead_letters_rate_limited_total",
    "dead letters over budget: counted and acknowledged, not stored (limit: identity, global)",
    ["limit"],
)
DEAD_PRUNED = Counter(
    "ingest_dead_letters_pruned_total", "dead letters deleted by the retention job"
)
AVAILABILITY = Counter("ingest_availability_messages_total", "availability messages")
CLEARED = Counter(
    "ingest_retained_cleared_total",
    "zero-length messages on a charger's topic or an edge's availability: a retained value "
    "deleted, nothing stored",
)
BATCH_SIZE = Histogram(
    "ingest_batch_size",
    "messages per committed batch",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000),
)
BATCH_SECONDS = Histogram(
    "ingest_batch_write_seconds",
    "time to write and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAG = Histogram(
    "ingest_lag_seconds",
    "commit time minus SamplingTime",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)
EDGE_CHARGERS_REFUSED = Counter(
    "ingest_edge_chargers_refused_total",
    "chargers named in an edge's list that its certificate does not list (ignored)",
)
DB_ERRORS = Counter("ingest_db_errors_total", "failed batch writes", ["kind"])
PENDING = Gauge("ingest_pending_messages", "messages received and not yet committed")
MQTT_CONNECTED = Gauge("ingest_mqtt_connected", "1 while connected to the broker")
STALLED = Gauge(
    "ingest_stalled_seconds",
    "seconds that messages have been held without any batch committed (0 while none wait)",
)
DATABASE_OK = Gauge("ingest_database_ok", "0 while batch writes fail and are being retried, else 1")


_cert_collector: CertificateExpiryCollector | None = None


def watch_certificates(certs_dir: Path, ca_file: Path) -> None:
    """Export the expiry of every certificate in ``certs_dir`` (CA, broker, clients)
    and the nextUpdate of its ``crl.pem``.

    Ingest runs next to the broker and sees the whole certificate directory, so it is
    the one service that can warn before the broker's or the CA's certificate expires.
    Idempotent: a second call replaces the first.
    """
    global _cert_collector
    if _cert_collector is not None:
        REGISTRY.unregister(_cert_collector)
    crl = certs_dir / "crl.pem"  # the broker's revocation list, beside the certificates
    _cert_collector = CertificateExpiryCollector(
        lambda: certificate_files(certs_dir, ca_file),
        lambda: [crl] if crl.exists() else [],
    )
    REGISTRY.register(_cert_collector)
