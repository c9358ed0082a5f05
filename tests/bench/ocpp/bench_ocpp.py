"""``make bench-ocpp``: N simulated OCPP 1.6J charge points through one gateway to a local broker.

For each N (default 10, 100, 1000) this starts, as separate processes: Mosquitto (the
repository's configuration, mutual TLS), the OCPP gateway (``python -m
chargelift_ocpp.main run``: its TLS listener, a registry of N profile-2 charge points
sharing one test password, one edge certificate listing all N chargers, its outbox) and
the simulated charge points (``chargelift-simulator-ocpp``, one process, MeterValues
every 10 s, random traffic on so that transactions start and stop). Once every charge
point is connected and a warm-up has passed, it measures for ``--duration`` seconds:

* the gateway's CPU (utime + stime from /proc/<pid>/stat, as % of one core) and its
  RSS: VmRSS once it is up with nothing connected, the largest VmRSS sampled every
  second of the window, VmRSS at its end, and VmHWM (the peak since start, the
  connection storm included);
* p50/p99 of ``ocpp_reading_publish_seconds`` over the window, interpolated in its
  buckets: for each reading, from the moment the gateway read the OCPP message that
  carried it from the WebSocket to the broker's PUBACK of the reading. Not the
  SamplingTime (the charge point's clock, whole seconds in OCPP timestamps);
* calls handled per second (by action), readings published per second, and everything
  that went wrong: CALLERRORs, refused handshakes, unparseable frames, mapping errors,
  rate-limited messages, publish errors, dropped outbox rows, connections replaced;
* for context, the CPU of the simulator and of Mosquitto (they share the machine).

The simulated charge points sample on one simulation clock, each at its own phase within
the 10 s: their MeterValues are spread out, as real chargers' are.

The charge points first connect over N/100 s (``--stagger``): like a fleet coming back
after a power cut or a gateway restart. Profile-2 handshakes cost a password check each;
what the gateway cannot check in time it answers 503 + Retry-After, which the simulated
charge points honour. The time until all are connected is reported.

Certificates are issued once with ``chargelift_certs.pki`` and kept in
``.dev/bench-ocpp/certs``. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chargelift_devstack.mosquitto import REPO, MosquittoServer
from chargelift_devstack.procs import free_port, shared_dir

if TYPE_CHECKING:  # the type checker sees the package; at run time it is a sibling script
    from tests.bench.poller.bench_poller import cpu_seconds, scrape, status_kb, total, wait
else:  # the /proc and /metrics helpers of the poller's benchmark
    sys.path.insert(0, str(Path(__file__).parents[1] / "poller"))
    from bench_poller import cpu_seconds, scrape, status_kb, total, wait

STATE = REPO / ".dev" / "bench-ocpp"
#: The one profile-2 password of every simulated charge point (a test value, ≥ 16 bytes).
PASSWORD = "bench-ocpp-password-7319"
METRIC = "ocpp_reading_publish_seconds"
#: Counters whose increase over the window is an error or a refusal, with a short name.
TROUBLE = {
    "ocpp_call_errors_total": "call errors",
    "ocpp_handshakes_refused_total": "refused handshakes",
    "ocpp_unparseable_messages_total": "unparseable",
    "ocpp_mapping_errors_total": "mapping errors",
    "ocpp_readings_refused_total": "readings refused",
    "ocpp_readings_unlisted_total": "readings unlisted",
    "ocpp_rate_limited_total": "rate limited",
    "ocpp_publish_errors_total": "publish errors",
    "ocpp_outbox_dropped_total": "outbox dropped",
    "ocpp_connections_replaced_total": "connections replaced",
}


@dataclass
class Result:
    charge_points: int
    duration_s: float
    connected: int
    gateway_cpu_pct: float
    gateway_rss_idle_mb: float
    gateway_rss_max_mb: float
    gateway_rss_end_mb: float
    gateway_hwm_mb: float
    calls_per_s: float
    meter_values_per_s: float
    readings_per_s: float
    published_per_s: float
    p50_receipt_to_puback_ms: float
    p99_receipt_to_puback_ms: float
    latency_count: int
    transactions: dict[str, float]  # in the window
    transactions_run: dict[str, float]  # since the gateway started
    trouble: dict[str, float]
    outbox_depth_end: float
    simulator_cpu_pct: float
    broker_cpu_pct: float
    #: Seconds from the simulator's start until every charge point was connected.
    connect_s: float = float("nan")
    #: Connect phase: password checks by outcome, handshakes refused by reason.
    password_checks: dict[str, float] = field(default_factory=dict)
    refused_connecting: dict[str, float] = field(default_factory=dict)
    log_errors: dict[str, int] = field(default_factory=dict)


class NoDelayMosquitto(MosquittoServer):
    """The repository's configuration plus ``set_tcp_nodelay true`` (``--broker-nodelay``:
    an experiment; Mosquitto's default leaves Nagle's algorithm on for its sockets)."""

    def _prepare(self) -> Path:
        conf = super()._prepare()
        conf.write_text(conf.read_text() + "\nset_tcp_nodelay true\n")
        return conf


def cp_id(i: int) -> str:
    return f"bench-cp-{i}"  # the simulator's ids with --prefix bench-cp-


def edge_id(n: int) -> str:
    return f"bench-ocpp-edge-{n}"


def ensure_certs(n: int) -> Path:
    """CA, the server certificate (the broker's and the gateway's listener) and the
    gateway's edge certificate listing the N charge points' chargers."""
    from chargelift_certs import pki

    certs = shared_dir(STATE / "certs")
    if not (certs / "ca.crt").exists():
        pki.create_ca(certs)
        pki.issue_server(certs)
    if not (certs / "clients" / f"{edge_id(n)}.crt").exists():
        print(f"  issuing the edge certificate {edge_id(n)}...", flush=True)
        chargers = [cp_id(i) for i in range(1, n + 1)]
        pki.issue_client(certs, edge_id(n), role="edge", chargers=chargers)
    for path in [certs, certs / "clients"]:
        path.chmod(0o755)
    return certs


def write_registry(path: Path, n: int) -> None:
    """N profile-2 charge points with the one password (hashed once: same salt for all,
    which a real registry never has; the cost of a handshake is the same)."""
    from chargelift_ocpp.registry import ChargePointEntry, hash_password
    from chargelift_ocpp.registry import write_registry as write

    hashed = hash_password(PASSWORD)
    write(path, [ChargePointEntry(cp_id(i), 2, hashed) for i in range(1, n + 1)])


def stagger(n: int) -> float:
    """Seconds over which the charge points first connect: N/100 (1,000 in 10 s, like a
    fleet coming back after a power cut). Each profile-2 handshake costs an scrypt check
    on the gateway's one password thread; what it cannot check in time it answers 503 +
    Retry-After (10-20 s), which the simulated charge points honour."""
    return n / 100


def quantile(before: dict[str, float], after: dict[str, float], q: float) -> float:
    """Quantile (s) of ``METRIC`` over the window, linear within a bucket."""
    name = METRIC + "_bucket"
    buckets: list[tuple[float, float]] = []
    for k, v in after.items():
        if k.startswith(name + "{"):
            le = k.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets.append((bound, v - before.get(k, 0.0)))
    buckets.sort()
    count = buckets[-1][1] if buckets else 0.0
    if count <= 0:
        return float("nan")
    rank = q * count
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def by_label(before: dict[str, float], after: dict[str, float], prefix: str) -> dict[str, float]:
    """Increase of each labelled series ``prefix{label="x"}`` over the window, by x."""
    out: dict[str, float] = {}
    for k, v in after.items():
        if k.startswith(prefix + "{"):
            label = k.split('"', 2)[1]
            delta = v - before.get(k, 0.0)
            if delta:
                out[label] = out.get(label, 0.0) + delta
    return out


def log_errors(path: Path) -> int:
    """Lines of a log that report an error (ERROR, CRITICAL, a traceback)."""
    if not path.exists():
        return 0
    words = ("ERROR", "CRITICAL", "Traceback")
    return sum(
        any(w in line for w in words) for line in path.read_text(errors="replace").splitlines()
    )


def run_one(
    n: int,
    duration: float,
    warmup: float,
    work: Path,
    *,
    broker_nodelay: bool = False,
    stagger_s: float | None = None,
    arena_max: int = 2,
) -> Result:
    spread = stagger(n) if stagger_s is None else stagger_s
    certs = ensure_certs(n)
    kind = NoDelayMosquitto if broker_nodelay else MosquittoServer
    broker = kind(certs_dir=certs, run_dir=shared_dir(work / f"broker-{n}"))
    state = shared_dir(work / f"gateway-{n}")
    registry = state / "charge_points.toml"
    write_registry(registry, n)
    password_file = work / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    ocpp_port, metrics_port = free_port(), free_port()
    logs = shared_dir(work / "logs")
    gateway_log, simulator_log = logs / f"gateway-{n}.log", logs / f"simulator-{n}.log"
    procs: list[subprocess.Popen[bytes]] = []
    broker.start()
    try:
        env = {
            **os.environ,
            "OCPP_CHARGE_POINTS": str(registry),
            "OCPP_STATE_DIR": str(state),
            "OCPP_HOST": "127.0.0.1",
            "OCPP_PORT": str(ocpp_port),
            "OCPP_TLS_CERT": str(certs / "broker.crt"),  # names 127.0.0.1
            "OCPP_TLS_KEY": str(certs / "broker.key"),
            "OCPP_CA_FILE": str(certs / "ca.crt"),
            "OCPP_METRICS_PORT": str(metrics_port),
            "OCPP_MAX_CONNECTIONS": str(n + 16),
            "OCPP_LOG_LEVEL": "WARNING",
            # as in the gateway's image (services/ocpp/Dockerfile): at most 2 malloc arenas
            **({"MALLOC_ARENA_MAX": str(arena_max)} if arena_max else {}),
            "MQTT_HOST": broker.host,
            "MQTT_PORT": str(broker.port),
            "MQTT_CA_FILE": str(certs / "ca.crt"),
            "MQTT_CERTS_DIR": str(certs),
            "MQTT_IDENTITY": edge_id(n),
        }
        with gateway_log.open("wb") as out:
            gateway = subprocess.Popen(
                [sys.executable, "-m", "chargelift_ocpp.main", "run"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        procs.append(gateway)
        wait(lambda: "ocpp_connected_charge_points" in scrape(metrics_port), 60, "the gateway")
        rss_idle = status_kb(gateway.pid, "VmRSS")  # up, nothing connected yet
        simulator_bin = Path(sys.executable).parent / "chargelift-simulator-ocpp"
        with simulator_log.open("wb") as out:
            sim = subprocess.Popen(
                [
                    str(simulator_bin), "--url", f"wss://127.0.0.1:{ocpp_port}/ocpp",
                    "--count", str(n), "--prefix", "bench-cp-",
                    "--password-file", str(password_file), "--ca-file", str(certs / "ca.crt"),
                    "--interval", "10", "--seed", "1", "--speed", "1",
                    "--stagger", str(spread), "--log-level", "WARNING",
                ],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        procs.append(sim)
        sim_started = time.monotonic()
        try:
            wait(
                lambda: scrape(metrics_port).get("ocpp_connected_charge_points", 0) >= n,
                # each profile-2 handshake verifies an scrypt hash (~0.1-0.2 s of CPU here)
                spread + max(120.0, 0.6 * n),
                f"{n} connected charge points",
            )
        except TimeoutError as exc:
            try:
                seen = scrape(metrics_port)
            except OSError:  # a saturated gateway: /metrics does not answer in time
                seen = {}
            raise TimeoutError(
                f"{exc}: {seen.get('ocpp_connected_charge_points', 0):.0f} connected, "
                f"{total(seen, 'ocpp_connections_accepted_total'):.0f} accepted, gateway RSS "
                f"{status_kb(gateway.pid, 'VmRSS') / 1024:.0f} MB"
            ) from None
        connect_s = time.monotonic() - sim_started
        connected_metrics = scrape(metrics_port)
        time.sleep(warmup)
        assert broker.proc is not None
        pids = {"gateway": gateway.pid, "simulator": sim.pid, "broker": broker.proc.pid}
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        m0, t0 = scrape(metrics_port), time.monotonic()
        rss_max = 0
        end = t0 + duration
        while (now := time.monotonic()) < end:  # bounded by the window
            rss_max = max(rss_max, status_kb(gateway.pid, "VmRSS"))
            time.sleep(min(1.0, end - now))
        cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
        m1, t1 = scrape(metrics_port), time.monotonic()
        rss_end = status_kb(gateway.pid, "VmRSS")
        rss_max = max(rss_max, rss_end)
        elapsed = t1 - t0
        for name, proc in (("gateway", gateway), ("simulator", sim)):
            if proc.poll() is not None:
                raise RuntimeError(f"the {name} exited with {proc.returncode}")

        def rate(prefix: str) -> float:
            return round((total(m1, prefix) - total(m0, prefix)) / elapsed, 1)

        calls = by_label(m0, m1, "ocpp_messages_total")
        trouble = {}
        for prefix, label in TROUBLE.items():
            delta = total(m1, prefix) - total(m0, prefix)
            if delta:
                trouble[label] = delta
        count = total(m1, METRIC + "_count") - total(m0, METRIC + "_count")
        return Result(
            charge_points=n,
            duration_s=round(elapsed, 1),
            connected=int(m1.get("ocpp_connected_charge_points", 0)),
            gateway_cpu_pct=round(100 * (cpu1["gateway"] - cpu0["gateway"]) / elapsed, 1),
            gateway_rss_idle_mb=round(rss_idle / 1024, 1),
            gateway_rss_max_mb=round(rss_max / 1024, 1),
            gateway_rss_end_mb=round(rss_end / 1024, 1),
            gateway_hwm_mb=round(status_kb(gateway.pid, "VmHWM") / 1024, 1),
            calls_per_s=round(sum(calls.values()) / elapsed, 1),
            meter_values_per_s=round(calls.get("MeterValues", 0.0) / elapsed, 1),
            readings_per_s=rate("ocpp_readings_total"),
            published_per_s=rate("ocpp_published_total"),
            p50_receipt_to_puback_ms=round(1000 * quantile(m0, m1, 0.50), 1),
            p99_receipt_to_puback_ms=round(1000 * quantile(m0, m1, 0.99), 1),
            latency_count=int(count),
            transactions=by_label(m0, m1, "ocpp_transactions_total"),
            transactions_run=by_label({}, m1, "ocpp_transactions_total"),
            trouble=trouble,
            outbox_depth_end=m1.get("ocpp_outbox_depth", float("nan")),
            simulator_cpu_pct=round(100 * (cpu1["simulator"] - cpu0["simulator"]) / elapsed, 1),
            broker_cpu_pct=round(100 * (cpu1["broker"] - cpu0["broker"]) / elapsed, 1),
            connect_s=round(connect_s, 1),
            password_checks=by_label({}, connected_metrics, "ocpp_password_checks_total"),
            refused_connecting=by_label({}, connected_metrics, "ocpp_handshakes_refused_total"),
        )
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        broker.stop()


def table(results: list[Result]) -> str:
    head = (
        "| charge points | connect (s) | password checks, 503s while connecting "
        "| gateway CPU (% of a core) | RSS idle → max / end (MB) | VmHWM (MB) "
        "| calls/s | MeterValues/s | readings published/s "
        "| p50 / p99 receipt→PUBACK (ms) | errors, refusals | simulator CPU | broker CPU |\n"
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
    )
    rows = []
    for r in results:
        trouble = ", ".join(f"{k} {v:.0f}" for k, v in r.trouble.items()) or "none"
        checks = ", ".join(f"{k} {v:.0f}" for k, v in r.password_checks.items()) or "none"
        refused = ", ".join(  # busy and abandoned are the password checks' own
            f"{k} {v:.0f}" for k, v in r.refused_connecting.items() if k not in r.password_checks
        )
        rows.append(
            f"| {r.charge_points} | {r.connect_s} | {checks}{'; ' + refused if refused else ''} "
            f"| {r.gateway_cpu_pct} "
            f"| {r.gateway_rss_idle_mb} → {r.gateway_rss_max_mb} / {r.gateway_rss_end_mb} "
            f"| {r.gateway_hwm_mb} "
            f"| {r.calls_per_s} | {r.meter_values_per_s} | {r.published_per_s} "
            f"| {r.p50_receipt_to_puback_ms} / {r.p99_receipt_to_puback_ms} | {trouble} "
            f"| {r.simulator_cpu_pct} % | {r.broker_cpu_pct} % |"
        )
    return "\n".join([head, *rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--sizes", default="10,100,1000", help="comma-separated charge point counts"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds per size")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds after all connected")
    parser.add_argument(
        "--short", action="store_true", help="a quick look: 20 s measured after 10 s warm-up"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--stagger",
        type=float,
        help="seconds over which the charge points first connect (default: N/100)",
    )
    parser.add_argument(
        "--arena-max",
        type=int,
        default=2,
        help="MALLOC_ARENA_MAX of the gateway, as in its image (0: glibc's default)",
    )
    parser.add_argument(
        "--broker-nodelay",
        action="store_true",
        help="experiment: Mosquitto with set_tcp_nodelay true (not the repository's setting)",
    )
    args = parser.parse_args()
    if args.short:
        args.duration, args.warmup = 20.0, 10.0
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(not 1 <= n <= 5000 for n in sizes):
        parser.error("each size must be 1..5000")
    work = shared_dir(Path(tempfile.mkdtemp(prefix="bench-ocpp-", dir=shared_dir(STATE))))
    results = []
    failed: list[int] = []
    try:
        for n in sizes:
            print(f"== {n} charge points: warm-up {args.warmup:.0f} s after all connected, "
                  f"measuring {args.duration:.0f} s", flush=True)  # fmt: skip
            try:
                result = run_one(
                    n, args.duration, args.warmup, work,
                    broker_nodelay=args.broker_nodelay, stagger_s=args.stagger,
                    arena_max=args.arena_max,
                )  # fmt: skip
            except (TimeoutError, RuntimeError) as exc:  # the other sizes still count
                print(f"  {n} charge points: not measured: {exc}", flush=True)
                failed.append(n)
                continue
            logs = work / "logs"
            result.log_errors = {
                "gateway": log_errors(logs / f"gateway-{n}.log"),
                "simulator": log_errors(logs / f"simulator-{n}.log"),
            }
            print("  " + json.dumps(asdict(result)), flush=True)
            results.append(result)
    finally:
        keep = STATE / "last-logs"  # the logs of the last run, for a look afterwards
        if (work / "logs").exists():
            shutil.rmtree(keep, ignore_errors=True)
            (work / "logs").rename(keep)
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    if failed:
        print(f"not measured: {', '.join(map(str, failed))} charge points (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
