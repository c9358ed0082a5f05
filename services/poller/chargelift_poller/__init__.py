"""chargelift edge poller: charger drivers → durable outbox → MQTT.

Modules (one concept each):

* :mod:`.errors`      the exception tree of the charger boundary;
* :mod:`.models`      what a driver returns (:class:`ChargerReading`) and is given;
* :mod:`.drivers`     the explicit driver registry and one file per charger protocol;
* :mod:`.config`      environment settings (``POLLER_*``, ``MQTT_*``) and the chargers file;
* :mod:`.changes`     change detection and the periodic full snapshot;
* :mod:`.outbox`      the durable SQLite outbox;
* :mod:`.coordinator` one polling loop per charger;
* :mod:`.publisher`   one MQTT publisher per charger identity, fed by the outbox;
* :mod:`.edge`        the edge identity: its charger list, its certificate;
* :mod:`.metrics`     Prometheus metrics (:class:`~.metrics.PollerMetrics`, injected);
* :mod:`.checks`      start-up checks (drivers, key pairs, the edge certificate);
* :mod:`.service`     :class:`~.service.PollerService`: start, run, drain, stop;
* :mod:`.main`        the command line: settings, chargers file, checks, run.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chargelift-poller")
except PackageNotFoundError:  # pragma: no cover - run from a source tree
    __version__ = "0+unknown"
