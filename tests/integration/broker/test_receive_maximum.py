"""Issue 14 (low): a client learns the broker's receive maximum from its CONNACK
(Mosquitto sends max_inflight_messages, 1000), also when the client asks for a
receive maximum of its own (ingest), and no callback error is logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

from chargelift_devstack.mosquitto import MosquittoServer
from chargelift_runtime.mqtt import MqttClient
from tests.support.certs import TestCerts

pytestmark = pytest.mark.integration

BROKER_RECEIVE_MAXIMUM = 1000  # max_inflight_messages in mosquitto.conf.template


@pytest.mark.parametrize("own_receive_maximum", [None, 10_000])
async def test_send_quota_is_the_brokers_receive_maximum(
    broker: MosquittoServer,
    certs: TestCerts,
    caplog: pytest.LogCaptureFixture,
    own_receive_maximum: int | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with MqttClient(
        host=broker.host,
        port=broker.port,
        client_id="test-receive-maximum",
        tls=certs.tls("ingest"),
        receive_maximum=own_receive_maximum,
    ) as c:
        async with asyncio.timeout(5):
            await c.wait_connected()
        assert c.send_quota == BROKER_RECEIVE_MAXIMUM
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    assert "TypeError" not in caplog.text
