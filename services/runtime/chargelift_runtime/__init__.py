"""The chargelift runtime: what every service does at its edges, shared.

The wire contract (:mod:`chargelift_contract`) says *what* travels; this package is
*how* a service process talks and reports, and it does I/O:

* :mod:`.mqtt` — the MQTT client over gmqtt (mutual TLS, reconnects, last will,
  delayed acknowledgement) and the client's TLS files;
* :mod:`.http` — the one ``/metrics`` + ``/healthz`` (+ ``/readyz``) endpoint;
* :mod:`.certmetrics` — certificate and CRL expiry as Prometheus gauges;
* :mod:`.watchdog` — liveness: stuck detection, ``/healthz`` 503, exit, sd_notify;
* :mod:`.logs` — logging set-up with secrets redacted.

It imports the contract and never a service (``make check`` enforces it).
"""
