"""The generic operation state every driver maps its vendor states onto."""

from enum import StrEnum


class OperationState(StrEnum):
    """Operation state of a charger, vendor-neutral.

    The values are the database enum's labels (``chargelift_ingest/migrations``) and the
    strings carried in MQTT; their order is the enum's order.
    """

    UNKNOWN = "unknown"
    OFF = "off"
    IDLE = "idle"
    CHARGING = "charging"
    SCHEDULED_DOWNTIME = "scheduled_downtime"
    UNSCHEDULED_DOWNTIME = "unscheduled_downtime"
