"""chargelift read API: state, history, charging sessions, energy and cost, over the database."""

from importlib.metadata import PackageNotFoundError, version

try:
    #: The installed distribution's version (services/api/pyproject.toml), in /healthz.
    __version__ = version("chargelift-api")
except PackageNotFoundError:  # pragma: no cover - a source tree without installing
    __version__ = "0+unknown"
