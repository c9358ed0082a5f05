"""chargelift simulator: Mennekes AMTRON Xtra/Premium chargers that speak MHCP.

Public API (used by the poller's tests and the load benchmark)::

    from chargelift_simulator import Fleet, FleetConfig, Fault, FaultKind

See docs/simulator.md for what is simulated, the control API and the ground-truth log.

Modules: :mod:`.config` the command line (``CliSettings``), :mod:`.main` the console
script, :mod:`.service` ``SimulatorService`` (runs a fleet until stopped), :mod:`.fleet`
the chargers of one process, :mod:`.model` the simulation, :mod:`.mhcp` and :mod:`.wire`
the HTTP surface, :mod:`.control` the control endpoint, :mod:`.truth` the ground truth.
"""

from chargelift_simulator.faults import Fault, FaultKind
from chargelift_simulator.fleet import Fleet, FleetConfig
from chargelift_simulator.mhcp import SimCharger
from chargelift_simulator.model import ChgState, Command, DevMode, Session

__all__ = [
    "ChgState",
    "Command",
    "DevMode",
    "Fault",
    "FaultKind",
    "Fleet",
    "FleetConfig",
    "Session",
    "SimCharger",
]
