"""Validate MQTT discovery documents with Home Assistant's own schemas.

Run with the Python of a separate virtual environment that has the ``homeassistant``
package (docs/testing.md, "Home Assistant's discovery schema"); never imported by the
test suite itself. Reads ``{"topic": document, ...}`` as JSON on stdin and prints, as
JSON, ``{"topic": problem}`` for every document Home Assistant refuses or from which it
silently drops a key (its schemas remove unknown keys).
"""

import importlib
import json
import sys
from typing import Any

# Home Assistant's modules import each other in the order its loader uses (imported by
# name: the project's own environment has no homeassistant package).
for module in (
    "homeassistant.core",
    "homeassistant.helpers.config_validation",
    "homeassistant.helpers.entity_platform",
    "homeassistant.components.http",
    "homeassistant.components.mqtt",
):
    importlib.import_module(module)

problems: dict[str, str] = {}
doc: Any
for topic, doc in json.load(sys.stdin).items():
    component = topic.split("/")[1]
    schema = importlib.import_module(f"homeassistant.components.mqtt.{component}").DISCOVERY_SCHEMA
    try:
        valid = schema(dict(doc))
    except Exception as exc:  # voluptuous.Invalid and anything else: a refused document
        problems[topic] = f"refused: {exc}"
        continue
    lost = sorted(set(doc) - set(valid))
    if lost:
        problems[topic] = f"keys Home Assistant drops: {lost}"
    for key in ("device", "origin"):
        lost_inner = sorted(set(doc.get(key, {})) - set(valid.get(key, {})))
        if lost_inner:
            problems[topic] = f"{key} keys Home Assistant drops: {lost_inner}"
print(json.dumps(problems))
