"""chargelift edge poller: charger drivers → durable outbox → MQTT.

Modules (one concept each):

* :mod:`.errors`      the exception tree of the charger boundary;
* :mod:`.models`      what a driver returns (:class:`ChargerReading`) and is given;
* :mod:`.drivers`     the explicit driver registry and one file per charger protocol;
* :mod:`.config`      environment settings (``POLLER_*``, ``MQTT_*``) and the chargers file;
* :mod:`.coordinator` one polling loop per charger;
* :mod:`.edge`        the edge identity: its charger list, its certificate;
* :mod:`.metrics`     Prometheus metrics (:class:`~.metrics.PollerMetrics`, injected);
* :mod:`.checks`      start-up checks (drivers, key pairs, the edge certificate);
* :mod:`.service`     :class:`~.service.PollerService`: start, run, drain, stop;
* :mod:`.main`        the command line: settings, chargers file, checks, run.

The durable outbox, the MQTT publishers, the outbox's chores, change detection and the
clocks are the edge library's (:mod:`chargelift_edge`, services/edge), shared with the
OCPP gateway.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chargelift-poller")
except PackageNotFoundError:  # pragma: no cover - run from a source tree
    __version__ = "0+unknown"
