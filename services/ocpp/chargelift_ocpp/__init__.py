"""chargelift OCPP 1.6J gateway: a central system to the chargers, an edge to chargelift.

Modules (one concept each):

* :mod:`.config`       environment settings (``OCPP_*``);
* :mod:`.registry`     the charge point registry file and password hashing;
* :mod:`.auth`         who may connect: the security profiles, decided at the handshake;
* :mod:`.transactions` the durable transaction ids (SQLite);
* :mod:`.mapping`      OCPP 1.6 payloads to readings of the field catalogue (pure);
* :mod:`.sink`         what the gateway hands readings to (:class:`~.sink.ReadingSink`)
  and what it needs of the mapper;
* :mod:`.chargepoint`  one OCPP 1.6 connection: the handlers, errors answered and counted;
* :mod:`.server`       the WebSocket listeners (TLS, and plain when enabled);
* :mod:`.metrics`      Prometheus metrics (:class:`~.metrics.OcppMetrics`, injected);
* :mod:`.registration` ``chargelift-ocpp register``: add a charge point, print its setup;
* :mod:`.service`      :class:`~.service.OcppService`: start, run, stop;
* :mod:`.main`         the command line.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chargelift-ocpp")
except PackageNotFoundError:  # pragma: no cover - run from a source tree
    __version__ = "0+unknown"
