"""The chargelift edge library: what a service that lifts charger data into MQTT shares.

The poller (services/poller) and the OCPP gateway (services/ocpp) are edges: they take
readings from chargers and must deliver each one to the broker once, in order, across
crashes and outages. That machinery is written once, here:

* :mod:`.outbox`       the durable SQLite outbox (:class:`~.outbox.Outbox`, its bounds
  and drop policy, the replay window);
* :mod:`.publisher`    one MQTT publisher per charger, fed by the outbox, and the
  in-flight :class:`~.publisher.Window` of a connection;
* :mod:`.housekeeping` the outbox's periodic chores (acknowledgements, bounds, pruning,
  gauges);
* :mod:`.metrics`      :class:`~.metrics.EdgeMetrics`: the outbox's and the publishers'
  series under the using service's prefix (``poller_…``);
* :mod:`.commands`     the command store (tables ``commands`` and ``control``) and the
  result rows: at most once per command id, across restarts;
* :mod:`.changes`      change detection plus the periodic full snapshot;
* :mod:`.clock`        the injected clocks.

It is a library: it imports the contract and the runtime, never a service
(``make check`` enforces it).
"""
