"""Values derived for evcc from a charger's fields (no I/O).

evcc's ``custom`` charger reads ``status`` (IEC 61851 letters), ``enabled``, ``power``
(W) and ``energy`` (kWh); these are published beside the fields so that evcc's
configuration is one ``jq`` expression per value (docs/integrations/evcc.md).
"""

from __future__ import annotations

from chargelift_contract.states import OperationState

#: Vendor states that mean "charging is held back by the charger on purpose" (a pause):
#: MHCP ``Paused``, OCPP ``SuspendedEVSE``.
PAUSED_VENDOR_STATES = frozenset({"Paused", "SuspendedEVSE"})
#: States in which the charger cannot charge at all.
_OUT_OF_SERVICE = frozenset(
    {OperationState.OFF, OperationState.SCHEDULED_DOWNTIME, OperationState.UNSCHEDULED_DOWNTIME}
)


def evcc_status(connected: bool | None, state: str | None) -> str | None:
    """IEC 61851 status: ``A`` no vehicle, ``B`` connected, ``C`` charging, ``E`` error
    (unscheduled downtime), ``F`` not available (off, scheduled downtime); None when the
    fields needed are not known yet."""
    if state == OperationState.UNSCHEDULED_DOWNTIME:
        return "E"
    if state in (OperationState.OFF, OperationState.SCHEDULED_DOWNTIME):
        return "F"
    if connected is None:
        return None
    if not connected:
        return "A"
    if state is None:
        return None
    return "C" if state == OperationState.CHARGING else "B"


def enabled(
    state: str | None, vendor_state: str | None, current_limit: float | None
) -> bool | None:
    """Whether the charger would charge a connected vehicle now (evcc's ``enabled``):
    not out of service, not paused, no limit of 0 A. None before the state is known."""
    if state is None:
        return None
    if state in _OUT_OF_SERVICE:
        return False
    if vendor_state in PAUSED_VENDOR_STATES:
        return False
    return not (current_limit is not None and current_limit <= 0)


def energy_kwh(total_wh: float | None) -> float | None:
    """The lifetime meter (``TotalEnergyConsumption``, Wh) in kWh; only that register, never
    the session energy, which restarts at every session."""
    return None if total_wh is None else total_wh / 1000.0
