"""chargelift simulator: Mennekes AMTRON Xtra/Premium chargers that speak MHCP, and
OCPP 1.6J charge points driven by the same physical model.

Public API (used by the poller's and the OCPP gateway's tests and the load benchmarks)::

    from chargelift_simulator import Fleet, FleetConfig, Fault, FaultKind
    from chargelift_simulator import OcppFleet, OcppFleetConfig, OcppFaults, SimChargePoint

See docs/simulator.md for what is simulated, the control API and the ground-truth log.

Modules: :mod:`.config` the command line (``CliSettings``), :mod:`.main` the console
script, :mod:`.service` ``SimulatorService`` (runs a fleet until stopped), :mod:`.fleet`
the chargers of one process, :mod:`.model` the simulation, :mod:`.mhcp` and :mod:`.wire`
the HTTP surface, :mod:`.control` the control endpoint, :mod:`.truth` the ground truth;
:mod:`.ocpp_fleet`, :mod:`.ocpp_cp`, :mod:`.ocpp_config` and :mod:`.ocpp_main` the OCPP
charge points (console script ``chargelift-simulator-ocpp``).
"""

from chargelift_simulator.faults import Fault, FaultKind
from chargelift_simulator.fleet import Fleet, FleetConfig
from chargelift_simulator.mhcp import SimCharger
from chargelift_simulator.model import ChgState, Command, DevMode, Session
from chargelift_simulator.ocpp_cp import OcppFaults, SimChargePoint
from chargelift_simulator.ocpp_fleet import OcppFleet, OcppFleetConfig

__all__ = [
    "ChgState",
    "Command",
    "DevMode",
    "Fault",
    "FaultKind",
    "Fleet",
    "FleetConfig",
    "OcppFaults",
    "OcppFleet",
    "OcppFleetConfig",
    "Session",
    "SimChargePoint",
    "SimCharger",
]
