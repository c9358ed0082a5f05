"""Home Assistant MQTT discovery documents of one charger (no I/O).

Per-component discovery (``homeassistant/<component>/<node_id>/<object_id>/config``,
retained): the Home Assistant versions that install on Python 3.11 predate device-based
discovery (``homeassistant/device/...``, Home Assistant 2024.11). Each document names
the same ``device`` (so Home Assistant groups the entities under one device), the
``origin`` (chargelift and its version), a ``unique_id`` derived from the charger id
(stable across restarts: ``chargelift_<charger>_<object>``), and availability: the
charger's own ``chargers/{id}/availability``, its edges' (``chargelift/ha/{id}/edge``,
offline when every edge that lists it is offline) and the bridge's
``chargelift/ha/status`` (``availability_mode: all``: shown only while all are online).

States are the bridge's output topics (``chargelift/ha/{id}/{Field}``, only ever newer
samples: :mod:`chargelift_bridge.watermark`), read with ``value_template:
"{{ value_json.Value }}"`` (a null Value renders ``None``, which Home Assistant shows as
unknown). With control, a ``number`` and three ``button``s publish the contract's
commands on ``chargers/{id}/set/{Command}``; each payload carries ``IssuedAt`` (Home
Assistant's ``utcnow()``), so pressing a button twice is two commands, not one command
delivered twice (an edge applies the same bytes once: docs/contract.md, "Commands").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chargelift_bridge.topics import discovery_topic, node_id, output_topic
from chargelift_contract.commands import Command, command_topic
from chargelift_contract.topics import BRIDGE_STATUS, availability_topic

#: The fields that describe the device (not entities): a change re-publishes the documents.
DEVICE_FIELDS = ("ChargerVendor", "ChargerModel", "SerialNumber", "FirmwareVersion")
VALUE = "{{ value_json.Value }}"
#: A boolean Value as a binary sensor's ON/OFF (None: unknown).
BOOL_VALUE = (
    "{% if value_json.Value is none %}None{% elif value_json.Value %}ON{% else %}OFF{% endif %}"
)
ISSUED = '"IssuedAt": "{{ utcnow().isoformat() }}", "Issuer": "homeassistant"'
#: What a button press publishes: the contract's command payload.
BUTTON_PAYLOAD = '{"Value": null, ' + ISSUED + "}"
#: What setting the number publishes (``value`` is the number Home Assistant sends).
NUMBER_PAYLOAD = '{"Value": {{ value }}, ' + ISSUED + "}"


@dataclass(frozen=True, slots=True)
class Device:
    """What the charger says about itself (its own fields; None until it said it)."""

    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None

    @classmethod
    def from_fields(cls, values: Mapping[str, object]) -> Device:
        def text(name: str) -> str | None:
            v = values.get(name)
            return v[:100] if isinstance(v, str) and v else None

        return cls(
            text("ChargerVendor"), text("ChargerModel"), text("SerialNumber"),
            text("FirmwareVersion"),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Entity:
    component: str
    obj: str
    name: str
    options: Mapping[str, Any]


def _sensor(obj: str, name: str, field: str, **options: Any) -> tuple[Entity, str]:
    return Entity("sensor", obj, name, {"value_template": VALUE, **options}), field


#: (entity, the field it shows).
SENSORS: tuple[tuple[Entity, str], ...] = (
    _sensor("power", "Power", "PowerOutput",
            device_class="power", state_class="measurement", unit_of_measurement="W"),
    _sensor("session_energy", "Session energy", "SessionEnergy",
            device_class="energy", state_class="total_increasing", unit_of_measurement="Wh"),
    _sensor("total_energy", "Total energy", "TotalEnergyConsumption",
            device_class="energy", state_class="total_increasing", unit_of_measurement="Wh"),
    _sensor("current", "Current", "OutputCurrent",
            device_class="current", state_class="measurement", unit_of_measurement="A"),
    # A text sensor: Home Assistant 2024.1's MQTT sensor has no ``options`` (the enum
    # device class needs them); the values are docs/contract.md's OperationState.
    _sensor("state", "State", "OperationState", icon="mdi:ev-station"),
    _sensor("price", "Energy price", "EnergyPrice",
            state_class="measurement", unit_of_measurement="ct/kWh", icon="mdi:cash"),
    (Entity("binary_sensor", "vehicle", "Vehicle connected",
            {"value_template": BOOL_VALUE, "device_class": "plug"}), "ConnectedVehicle"),
)  # fmt: skip
BUTTONS = ((Command.PAUSE, "pause", "Pause"), (Command.RESUME, "resume", "Resume"),
           (Command.STOP, "stop", "Stop"))  # fmt: skip


def device_block(charger: str, device: Device) -> dict[str, Any]:
    block: dict[str, Any] = {"identifiers": [node_id(charger)], "name": charger}
    given = {
        # No serial_number: Home Assistant 2024.1's device schema refuses it (newer
        # versions know it); the serial is in the charger's own SerialNumber field.
        "manufacturer": device.vendor, "model": device.model, "sw_version": device.firmware,
    }  # fmt: skip
    block.update({k: v for k, v in given.items() if v is not None})
    return block


def documents(
    charger: str,
    device: Device,
    *,
    version: str,
    control: bool,
    min_current: float,
    max_current: float,
) -> dict[str, dict[str, Any]]:
    """Every discovery document of ``charger``: {config topic: document}."""
    common: dict[str, Any] = {
        "device": device_block(charger, device),
        "origin": {"name": "chargelift", "sw_version": version},
        "availability": [
            {"topic": availability_topic(charger)},
            {"topic": output_topic(charger, "edge")},
            {"topic": BRIDGE_STATUS},
        ],
        "availability_mode": "all",
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
    }
    out: dict[str, dict[str, Any]] = {}

    def add(entity: Entity, extra: Mapping[str, Any]) -> None:
        out[discovery_topic(entity.component, charger, entity.obj)] = {
            "name": entity.name,
            "unique_id": f"{node_id(charger)}_{entity.obj}",
            "object_id": f"{node_id(charger)}_{entity.obj}",
            **common,
            **entity.options,
            **extra,
        }

    for entity, field in SENSORS:
        add(entity, {"state_topic": output_topic(charger, field)})
    if control:
        add(
            Entity("number", "current_limit", "Current limit", {}),
            {
                "command_topic": command_topic(charger, Command.CURRENT_LIMIT),
                "command_template": NUMBER_PAYLOAD,
                "state_topic": output_topic(charger, "MaximumOutputCurrent"),
                "value_template": VALUE,
                "min": min_current,
                "max": max_current,
                "step": 1,
                "mode": "box",
                "unit_of_measurement": "A",
                "device_class": "current",
            },
        )
        for command, obj, name in BUTTONS:
            add(
                Entity("button", obj, name, {}),
                {"command_topic": command_topic(charger, command),
                 "command_template": BUTTON_PAYLOAD},
            )  # fmt: skip
    return out
