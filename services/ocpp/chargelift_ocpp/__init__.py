"""The chargelift OCPP 1.6J gateway: a central system to the chargers, an edge to chargelift.

Charge points connect over WebSocket and push their status, meter values and transactions;
:mod:`.mapping` turns those payloads into readings of the field catalogue, which the gateway
publishes through the edge outbox like the poller does.
"""
