"""Physics and state machine of one simulated AMTRON Xtra/Premium (HCC3) and its vehicles.

No I/O and no wall clock: a :class:`ChargerModel` is moved by ``advance_to(t)`` (simulated
seconds) and changed by the commands MHCP offers (``POST /ChargeData``, ``POST /DevInfo``).
All randomness comes from the ``random.Random`` it is given, so a seed and the sequence of
steps and commands determine everything it serves.

Lifecycle of a session (``ChgState`` values exactly as MHCP spells them)::

    Idle ──plug──► StandbyConnect ──handshake, AutoChg──► Charging ◄──Continue── Paused
                        │  (no AutoChg)                     │  │ ──Pause / car / <6 A──►
                        ▼                                   │  │
                   StandbyAuthorize ──POST Start───────────►┘  └─full / Terminate─► Terminated
    any plugged state ──unplug (car leaves)──► Idle

Protocol facts this model keeps (docs/reference/charger-protocols.md §1):

* ``ChgNrg`` (Wh) and ``ChgDuration`` (s) are the *current or last* session: they restart
  at 0 when a new session begins and hold their value after it, also while Idle (a real
  Xtra answered Idle with ChgNrg 12648). A fresh box therefore starts with a seeded
  "previous session" in them, as a real one would.
* ``Price`` is in 0.1 ct/kWh, the tariff in force is chosen by local time of day from
  ``BeginH_T1:BeginM_T1`` and ``BeginH_T2:BeginM_T2``.
* The current limit is ``RemoteCurr`` in DevMode ``Remote`` (app control), otherwise the
  tariff's ``MaxCurrT1``/``MaxCurrT2``; it is capped at ``MaxCurrWb`` and below 6 A the box
  does not charge (IEC 61851's minimum; "the remote current can not be smaller than 6A").
* The ``T``-prefixed duplicates (``TMaxCurrT1``…) carry the same values as the plain keys,
  as every observed sample does; what they are for is unknown.

Inferred, not documented (see docs/simulator.md): ``StandbyConnect`` is the short
plug-in handshake before charging starts; ``ActCurr`` is the actual current per phase,
in whole A; ``HCCP`` is the control-pilot state (``A11`` no vehicle, ``B11`` connected,
no PWM, ``B21`` PWM on but the car takes nothing, ``C21`` charging).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from chargelift_simulator.clock import SimClock

VOLTAGE_V = 230.0
#: IEC 61851: a PWM duty cycle below 6 A means "no charging allowed".
MIN_CURRENT_A = 6.0
#: Power rises to the limit within a few seconds (11 kW in ~4.4 s) ...
RAMP_UP_W_PER_S = 2500.0
#: ... and follows a lowered limit faster (a car obeys a lower PWM within ~2 s).
RAMP_DOWN_W_PER_S = 5000.0
#: Above this state of charge the car tapers its power linearly towards full.
TAPER_FROM_SOC = 0.8
#: The car never draws less than 6 A on one phase while it still charges.
TAPER_FLOOR_W = MIN_CURRENT_A * VOLTAGE_V
#: How long the box shows StandbyConnect after a plug-in (CP/PP checks).
HANDSHAKE_S = 3.0
#: Largest simulated step the fleet takes at once (ramps and events are this exact).
MAX_STEP_S = 1.0

#: Vehicle arrival/stay distributions (simulated seconds, Wh, fractions).
IDLE_GAP_S = (10 * 60.0, 4 * 3600.0)
STAY_S = (2 * 3600.0, 12 * 3600.0)
CAPACITY_WH = (30_000.0, 80_000.0)
ARRIVAL_SOC = (0.10, 0.70)
VEHICLE_PAUSE_PROBABILITY = 0.25
VEHICLE_PAUSE_S = (60.0, 900.0)


class ChgState(StrEnum):
    """MHCP ``ChgState``, spelled as the box spells it."""

    IDLE = "Idle"
    CHARGING = "Charging"
    PAUSED = "Paused"
    STANDBY_CONNECT = "StandbyConnect"
    STANDBY_AUTHORIZE = "StandbyAuthorize"
    TERMINATED = "Terminated"


class DevMode(StrEnum):
    """DevInfo ``DevMode``: Remote = "App control", HomeManager = "Energy manager"."""

    REMOTE = "Remote"
    HOME_MANAGER = "HomeManager"
    TIME = "Time"


class Command(StrEnum):
    """``ChgState`` values accepted by ``POST /ChargeData``."""

    START = "Start"
    PAUSE = "Pause"
    CONTINUE = "Continue"
    TERMINATE = "Terminate"


class PauseReason(StrEnum):
    """Why a session is Paused (decides how it resumes and the HCCP state)."""

    USER = "user"  # POST Pause: only POST Continue resumes
    VEHICLE = "vehicle"  # the car stopped taking power for a while
    LIMIT = "limit"  # the limit is below 6 A: resumes when it rises again


@dataclass(slots=True)
class Settings:
    """The box's configuration as MHCP exposes it (DevInfo, tariff part of ChargeData)."""

    dev_name: str
    serial: int
    dev_mode: DevMode = DevMode.REMOTE
    phases: int = 3
    max_curr_wb: int = 16
    auto_chg: bool = True
    remote_curr: float = 16
    max_curr_t1: int = 10
    max_curr_t2: int = 16
    begin_h_t1: int = 6
    begin_m_t1: int = 0
    begin_h_t2: int = 22
    begin_m_t2: int = 0
    price_t1: int = 320  # 0.1 ct/kWh: 32.0 ct/kWh main tariff
    price_t2: int = 210  # 21.0 ct/kWh off-peak
    solar_price: int = 0
    excess_nrg: bool = False
    em_time: int = 1440  # minutes (Energy-Manager deadline, default one day)
    battery_wh: int = 50_000  # EV capacity the Energy Manager assumes

    def __post_init__(self) -> None:
        if self.phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, not {self.phases}")
        if not MIN_CURRENT_A <= self.max_curr_wb <= 80:
            raise ValueError(f"max_curr_wb must be 6..80 A, not {self.max_curr_wb}")


@dataclass(slots=True)
class Vehicle:
    """The car plugged in: its battery and when it will leave."""

    capacity_wh: float
    soc: float  # 0..1
    plugged_at: float
    departs_at: float
    pause_at_soc: float | None  # the car pauses once when it reaches this SoC
    pause_s: float


@dataclass(frozen=True, slots=True)
class Session:
    """A finished charging session (simulated seconds since the clock's start)."""

    start: float
    end: float
    energy_wh: int
    duration_s: int
    reason: str  # "full" | "terminate" | "unplug"


#: States a ``Terminate`` command ends (a car is plugged in, no session has ended).
_TERMINABLE = frozenset(
    {ChgState.CHARGING, ChgState.PAUSED, ChgState.STANDBY_CONNECT, ChgState.STANDBY_AUTHORIZE}
)

SessionListener = Callable[["ChargerModel", Session], None]


class ChargerModel:
    """One box: state machine, power, energy, tariffs. Construction does no I/O."""

    def __init__(
        self,
        charger_id: str,
        clock: SimClock,
        rng: random.Random,
        settings: Settings,
        on_session_end: SessionListener | None = None,
        *,
        random_traffic: bool = True,
    ) -> None:
        self.id = charger_id
        # False: cars come and go only by plug()/unplug() and never pause on their own.
        self.random_traffic = random_traffic
        self.clock = clock
        self.rng = rng
        self.settings = settings
        self.on_session_end = on_session_end
        self.t = clock.elapsed
        self.state = ChgState.IDLE
        self.pause_reason: PauseReason | None = None
        self.vehicle: Vehicle | None = None
        self.power_w = 0.0
        self.uid = ""
        self.session_start: float | None = None
        self.sessions: list[Session] = []
        self._standby_until = 0.0
        self._resume_at = 0.0
        # A box fresh from the simulator has had a life before: ChgNrg/ChgDuration hold
        # the last session's values while Idle, exactly like the real sample.
        self.energy_wh = float(int(rng.uniform(2_000, 40_000)))
        self.duration_s = float(int(self.energy_wh / 11_040 * 3600 * rng.uniform(1.0, 1.3)))
        #: The lifetime meter (Wh) the Modbus maps serve; MHCP has none. It starts above
        #: 65,535 so that a client with the wrong word order reads nonsense. No random
        #: draw: the MHCP histories of a seed stay what they were.
        self.meter_wh = 100_000.0 + self.energy_wh
        # Half of the boxes see a car at once, the others within the first hour.
        first = 0.0 if rng.random() < 0.5 else rng.uniform(60.0, 3600.0)
        self._next_arrival: float | None = self.t + first if random_traffic else None

    # -- derived values ------------------------------------------------------------

    def tariff(self) -> str:
        """``T1`` (main) or ``T2`` (off-peak), by local time of day."""
        s = self.settings
        t1 = s.begin_h_t1 * 60 + s.begin_m_t1
        t2 = s.begin_h_t2 * 60 + s.begin_m_t2
        if t1 == t2:
            return "T1"
        m = self.clock.minute_of_day()
        if t1 < t2:
            return "T1" if t1 <= m < t2 else "T2"
        return "T2" if t2 <= m < t1 else "T1"

    def limit_a(self) -> float:
        """Current limit per phase in force, 0 when it is below 6 A (no charging)."""
        s = self.settings
        if s.dev_mode is DevMode.REMOTE:
            raw = s.remote_curr
        else:
            # Time and HomeManager: the tariff window's limit. (The real Energy Manager
            # also follows NrgDemand/PV surplus; the simulator has no PV.)
            raw = s.max_curr_t1 if self.tariff() == "T1" else s.max_curr_t2
        limit = min(float(raw), float(s.max_curr_wb))
        return limit if limit >= MIN_CURRENT_A else 0.0

    def target_power_w(self) -> float:
        """What the car would draw now at the limit in force, tapering near full."""
        v = self.vehicle
        limit = self.limit_a()
        if v is None or limit == 0.0:
            return 0.0
        full = limit * self.settings.phases * VOLTAGE_V
        if v.soc <= TAPER_FROM_SOC:
            return full
        taper = full * (1.0 - v.soc) / (1.0 - TAPER_FROM_SOC)
        return min(full, max(taper, TAPER_FLOOR_W))

    def hccp(self) -> str:
        """HCC3 control-pilot state: IEC 61851 letter, PWM flag, then "1" as in "A11"."""
        if self.state is ChgState.IDLE:
            return "A11"
        if self.state is ChgState.CHARGING:
            return "C21"
        if self.state is ChgState.PAUSED and self.pause_reason is PauseReason.VEHICLE:
            return "B21"  # the box offers current, the car takes none
        return "B11"

    def rem_time(self) -> int:
        """Minutes left of EmTime, counted from the plug-in (HomeManager doc)."""
        v = self.vehicle
        em = self.settings.em_time
        if v is None:
            return em
        return max(0, em - int((self.t - v.plugged_at) // 60))

    # -- what MHCP serves ----------------------------------------------------------

    def charge_data(self) -> dict[str, Any]:
        """The ``GET /ChargeData`` object, keys in the order the real box sends them."""
        s = self.settings
        tariff = self.tariff()
        # Whole amperes, as the box reports its currents (16, never 16.0).
        current = round(self.power_w / (s.phases * VOLTAGE_V))
        return {
            "ChgState": self.state.value,
            "Tariff": tariff,
            "Price": s.price_t1 if tariff == "T1" else s.price_t2,
            "Uid": self.uid,
            "ChgDuration": int(self.duration_s),
            "ChgNrg": int(self.energy_wh),
            "NrgDemand": 0,
            "Solar": 0,
            "EmTime": s.em_time,
            "RemTime": self.rem_time(),
            "ActPwr": round(self.power_w),
            "ActCurr": current,
            "MaxCurrT1": s.max_curr_t1,
            "BeginH_T1": s.begin_h_t1,
            "BeginM_T1": s.begin_m_t1,
            "PriceT1": s.price_t1,
            "MaxCurrT2": s.max_curr_t2,
            "BeginH_T2": s.begin_h_t2,
            "BeginM_T2": s.begin_m_t2,
            "PriceT2": s.price_t2,
            "RemoteCurr": s.remote_curr,
            "SolarPrice": s.solar_price,
            "ExcessNrg": s.excess_nrg,
            "TMaxCurrT1": s.max_curr_t1,
            "TBeginH_T1": s.begin_h_t1,
            "TBeginM_T1": s.begin_m_t1,
            "TPriceT1": s.price_t1,
            "TMaxCurrT2": s.max_curr_t2,
            "TBeginH_T2": s.begin_h_t2,
            "TBeginM_T2": s.begin_m_t2,
            "TPriceT2": s.price_t2,
            "TRemoteCurr": s.remote_curr,
            "TSolarPrice": s.solar_price,
            "TExcessNrg": s.excess_nrg,
            "HCCP": self.hccp(),
        }

    def dev_info(self) -> dict[str, Any]:
        """The ``GET /DevInfo`` object (values of an Xtra 11 C2 unless configured)."""
        s = self.settings
        local = self.clock.local()
        offset = local.utcoffset()
        dst = local.dst()
        return {
            "DevName": s.dev_name,
            "LocTime": int(self.clock.timestamp),  # Unix seconds (telegraf reads it so)
            "Summer": bool(dst),
            "Tz": 0 if offset is None else int(offset.total_seconds() // 60),
            "ItemNo": "1344201",
            "Sn": s.serial,
            "Hcc3": "HCC3 V1.13",
            "Hmi": "SW:1.8 HW:0x3 SN:0xa",
            "Rfid": None,
            "Wifi": "BA 1.1.9",
            "FixedVehCosts": 0,
            "OldVehCosts": 0,
            "Color": 0,
            "DevMode": s.dev_mode.value,
            "ChgState": self.state.value,
            "WifiOn": True,
            "AutoChg": s.auto_chg,
            "ChgContinue": True,
            "Err": 0,
            "Battery": s.battery_wh,
            "Phases": s.phases,
            "Cable": True,
            "Auth": False,
            "DsoEnabled": False,
            "EmEnabled": s.dev_mode is DevMode.HOME_MANAGER,
            "MaxCurr": s.max_curr_wb,
            "MaxPwr": int(s.max_curr_wb * s.phases * VOLTAGE_V),
            "MaxCurrWb": s.max_curr_wb,
        }

    # -- time ----------------------------------------------------------------------

    def advance_to(self, t: float) -> None:
        """Integrate up to simulated time ``t``, then handle what is due at ``t``.

        Steps should be at most :data:`MAX_STEP_S` (the fleet splits larger ones):
        power is integrated with the trapezoid rule and events fire at step ends.
        """
        dt = t - self.t
        if dt < 0:
            raise ValueError(f"{self.id}: time cannot go back ({self.t} -> {t})")
        if dt > 0 and self.state is ChgState.CHARGING:
            self._integrate(dt)
        self.t = t
        self._events()

    def _integrate(self, dt: float) -> None:
        v = self.vehicle
        assert v is not None  # Charging implies a vehicle
        target = self.target_power_w()
        p0 = self.power_w
        if p0 < target:
            p1 = min(target, p0 + RAMP_UP_W_PER_S * dt)
        else:
            p1 = max(target, p0 - RAMP_DOWN_W_PER_S * dt)
        energy = (p0 + p1) / 2 * dt / 3600
        energy = min(energy, (1.0 - v.soc) * v.capacity_wh)  # a battery cannot overfill
        self.energy_wh += energy
        self.meter_wh += energy
        v.soc += energy / v.capacity_wh
        self.duration_s += dt
        self.power_w = p1

    def _events(self) -> None:
        t = self.t
        v = self.vehicle
        if v is None:
            if self._next_arrival is not None and t >= self._next_arrival:
                self._arrive()
            return
        if t >= v.departs_at:
            self._leave()
            return
        limit_ok = self.limit_a() > 0.0
        state = self.state
        if state is ChgState.STANDBY_CONNECT:
            if t >= self._standby_until:
                if self.settings.auto_chg:
                    self._start_session(uid="")
                else:
                    self.state = ChgState.STANDBY_AUTHORIZE
        elif state is ChgState.CHARGING:
            if v.soc >= 1.0 - 1e-9:
                v.soc = 1.0
                self._finish(ChgState.TERMINATED, "full")
            elif not limit_ok:
                self._pause(PauseReason.LIMIT)
            elif v.pause_at_soc is not None and v.soc >= v.pause_at_soc:
                v.pause_at_soc = None  # once per session
                self._pause(PauseReason.VEHICLE)
                self._resume_at = t + v.pause_s
        elif state is ChgState.PAUSED:
            reason = self.pause_reason
            if reason is PauseReason.LIMIT and limit_ok:
                self._resume()
            elif reason is PauseReason.VEHICLE and t >= self._resume_at:
                self._resume_or_wait()

    # -- transitions ---------------------------------------------------------------

    def _arrive(self) -> None:
        rng = self.rng
        # Always draw the same numbers in the same order: the stream stays aligned
        # whatever branch is taken, so one seed gives one history.
        capacity = round(rng.uniform(*CAPACITY_WH), -2)
        soc = rng.uniform(*ARRIVAL_SOC)
        stay = rng.uniform(*STAY_S)
        pauses = rng.random() < VEHICLE_PAUSE_PROBABILITY
        pause_at = rng.uniform(soc, 0.95)
        pause_s = rng.uniform(*VEHICLE_PAUSE_S)
        traffic = self.random_traffic
        self.vehicle = Vehicle(
            capacity_wh=capacity,
            soc=soc,
            plugged_at=self.t,
            departs_at=self.t + stay if traffic else math.inf,
            pause_at_soc=pause_at if pauses and traffic else None,
            pause_s=pause_s,
        )
        self._next_arrival = None
        self.state = ChgState.STANDBY_CONNECT
        self._standby_until = self.t + HANDSHAKE_S

    def _leave(self) -> None:
        self._end_session("unplug")
        self.vehicle = None
        self.state = ChgState.IDLE
        self.pause_reason = None
        self.power_w = 0.0
        gap = self.rng.uniform(*IDLE_GAP_S)
        self._next_arrival = self.t + gap if self.random_traffic else None

    def _start_session(self, uid: str) -> None:
        # A new session: this is where ChgNrg and ChgDuration restart at 0.
        self.session_start = self.t
        self.energy_wh = 0.0
        self.duration_s = 0.0
        self.uid = uid
        self.power_w = 0.0
        if self.limit_a() > 0.0:
            self.state = ChgState.CHARGING
            self.pause_reason = None
        else:
            self._pause(PauseReason.LIMIT)

    def _pause(self, reason: PauseReason) -> None:
        self.state = ChgState.PAUSED
        self.pause_reason = reason
        self.power_w = 0.0  # contactor open / car stops at once

    def _resume(self) -> None:
        self.state = ChgState.CHARGING
        self.pause_reason = None

    def _resume_or_wait(self) -> None:
        if self.limit_a() > 0.0:
            self._resume()
        else:
            self._pause(PauseReason.LIMIT)

    def _finish(self, state: ChgState, reason: str) -> None:
        self._end_session(reason)
        self.state = state
        self.pause_reason = None
        self.power_w = 0.0

    def _end_session(self, reason: str) -> None:
        if self.session_start is None:
            return
        session = Session(
            start=self.session_start,
            end=self.t,
            energy_wh=int(self.energy_wh),
            duration_s=int(self.duration_s),
            reason=reason,
        )
        self.session_start = None
        self.sessions.append(session)
        if self.on_session_end is not None:
            self.on_session_end(self, session)

    # -- commands (POST /ChargeData, POST /DevInfo, the control endpoint) -------------

    def plug(self) -> bool:
        """A car arrives now; False if one is plugged in already."""
        if self.vehicle is not None:
            return False
        self._arrive()
        return True

    def unplug(self) -> bool:
        """The car leaves now (ends a running session); False if none is plugged in."""
        if self.vehicle is None:
            return False
        self._leave()
        return True

    def command(self, command: Command, uid: str | None = None) -> bool:
        """Apply a ``ChgState`` command; True if it changed something.

        Commands that do not fit the state (Start without a car, Continue while
        charging...) are accepted and ignored, as an embedded box answers 200 to them.
        """
        state = self.state
        v = self.vehicle
        applied = False
        if command is Command.START:
            startable = state in (ChgState.STANDBY_CONNECT, ChgState.STANDBY_AUTHORIZE) or (
                state is ChgState.TERMINATED and v is not None and v.soc < 1.0
            )
            if startable:
                self._start_session(uid=uid or "")
                applied = True
        elif command is Command.PAUSE:
            if state is ChgState.CHARGING or (
                state is ChgState.PAUSED and self.pause_reason is not PauseReason.USER
            ):
                self._pause(PauseReason.USER)
                applied = True
        elif command is Command.CONTINUE:
            if state is ChgState.PAUSED and self.pause_reason is PauseReason.USER:
                self._resume_or_wait()
                applied = True
        elif command is Command.TERMINATE and state in _TERMINABLE:
            self._finish(ChgState.TERMINATED, "terminate")
            applied = True
        self._events()
        return applied

    def set_remote_current(self, amps: float) -> None:
        """``RemoteCurr``: the limit in Remote mode (power follows within seconds)."""
        self.settings.remote_curr = amps
        self._events()

    def set_auto_charge(self, on: bool) -> None:
        """``AutoChg``: whether a plugged car starts charging without a Start command."""
        self.settings.auto_chg = on

    def set_dev_mode(self, mode: DevMode) -> None:
        """``DevMode`` (POST /DevInfo): which limit is in force."""
        self.settings.dev_mode = mode
        self._events()
