"""chargelift ingest: MQTT readings into PostgreSQL/TimescaleDB, each stored exactly once."""

from importlib.metadata import PackageNotFoundError, version

try:
    #: The installed distribution's version (services/ingest/pyproject.toml), in /healthz.
    __version__ = version("chargelift-ingest")
except PackageNotFoundError:  # pragma: no cover - a source tree without installing
    __version__ = "0+unknown"
