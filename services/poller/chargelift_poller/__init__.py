"""chargelift edge poller: charger drivers → durable outbox → MQTT.

Modules (one concept each):

* :mod:`.errors`      the exception tree of the charger boundary;
* :mod:`.models`      what a driver returns (:class:`ChargerReading`) and is given;
* :mod:`.drivers`     the explicit driver registry and one file per charger protocol;
* :mod:`.config`      environment settings and the chargers file;
* :mod:`.changes`     change detection and the periodic full snapshot;
* :mod:`.outbox`      the durable SQLite outbox;
* :mod:`.coordinator` one polling loop per charger;
* :mod:`.publisher`   one MQTT publisher per charger identity, fed by the outbox;
* :mod:`.metrics`     Prometheus metrics; :mod:`.health` the HTTP endpoint;
* :mod:`.main`        assembles the above and runs them.
"""
