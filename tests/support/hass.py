"""Checks of Home Assistant MQTT discovery documents, shared by the unit and the stack tests.

- :func:`documented_key_problems`: each document uses only keys Home Assistant documents
  for its platform (home-assistant.io/integrations/<platform>.mqtt/), offline;
- :func:`ha_schema_problems`: each document validated with Home Assistant's own
  ``DISCOVERY_SCHEMA`` of its platform, in a separate virtual environment with the
  ``homeassistant`` package (``HA_VENV``: docs/testing.md); None when it is not set.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

VALIDATOR = Path(__file__).resolve().parent / "ha_validate.py"

COMMON = {
    "name", "unique_id", "object_id", "device", "origin", "availability",
    "availability_mode", "payload_available", "payload_not_available", "qos", "icon",
}  # fmt: skip
ALLOWED = {
    "sensor": COMMON | {"state_topic", "value_template", "device_class", "state_class",
                        "unit_of_measurement"},
    "binary_sensor": COMMON | {"state_topic", "value_template", "device_class"},
    "number": COMMON | {"command_topic", "command_template", "state_topic", "value_template",
                        "min", "max", "step", "mode", "unit_of_measurement", "device_class"},
    "button": COMMON | {"command_topic", "command_template"},
}  # fmt: skip
DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}


def documented_key_problems(docs: dict[str, dict[str, Any]]) -> dict[str, str]:
    problems: dict[str, str] = {}
    for topic, doc in docs.items():
        component = topic.split("/")[1]
        extra = set(doc) - ALLOWED.get(component, set())
        extra |= {f"device.{k}" for k in set(doc.get("device", {})) - DEVICE_KEYS}
        extra |= {f"origin.{k}" for k in set(doc.get("origin", {})) - ORIGIN_KEYS}
        if component not in ALLOWED or extra:
            problems[topic] = f"undocumented: {sorted(extra)}"
    return problems


def ha_venv() -> Path | None:
    value = os.environ.get("HA_VENV")
    return Path(value) if value else None


def ha_schema_problems(docs: dict[str, dict[str, Any]]) -> dict[str, str] | None:
    venv = ha_venv()
    if venv is None:
        return None
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(VALIDATOR)],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    problems: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return problems
