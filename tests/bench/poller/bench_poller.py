"""``make bench-poller``: N simulated chargers at 1 Hz through one poller to a local broker.

For each N (default 10, 100, 1000) this starts, as separate processes: Mosquitto (the
repository's configuration, mutual TLS), the simulator (``chargelift-simulator``), and
the poller (``python -m chargelift_poller.main``) with one certificate per charger
(``--identity charger``, the default) or one edge certificate listing all N chargers
and one MQTT connection (``--identity edge``). ``--protocol`` picks how the poller reads
the chargers: ``mhcp`` (HTTP, the default) or a Modbus TCP driver, ``hcc3`` or ``bender``
(the simulator serves that register map, one Modbus server per charger on a free loopback
port, beside its MHCP port); ``--protocol mhcp,hcc3`` runs each size with each, one after
the other in the same run, for figures side by side. After a warm-up it measures for
``--duration`` seconds:

* the poller's CPU (utime + stime from /proc, as % of one core) and peak RSS (VmHWM);
* the achieved poll rate and publish rate (PUBACKed rows) from the poller's metrics;
* p99 sample-to-PUBACK latency, interpolated from the poller's histogram;
* for context, the CPU of the simulator and of Mosquitto (they share the machine).

The poller runs as it is deployed (``--poller-env deployed``, the default): from a
virtual environment with only its own runtime dependencies, from the Raspberry Pi lock
(deploy/raspberry-pi/requirements-poller.lock), built once in
``.dev/bench-poller/venv-deployed`` and rebuilt when the lock or the sources change.
The development venv (``--poller-env dev``) also holds the test tooling, which httpx and
pydantic load on import when present (httpx's CLI pulls in rich and click): about
+10 MB RSS that no installed poller has.

Certificates are issued once with ``chargelift_certs.pki`` and kept in
``.dev/bench-poller/certs`` for the next run. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from chargelift_devstack.mosquitto import REPO, MosquittoServer
from chargelift_devstack.procs import free_port, shared_dir

STATE = REPO / ".dev" / "bench-poller"
PIN = "bench-7319"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    protocol: str
    identity: str
    chargers: int
    duration_s: float
    poller_cpu_pct: float
    poller_peak_rss_mb: float
    poller_rss_mb: float
    polls_per_s: float
    failed_polls_per_s: float
    publishes_per_s: float
    p99_sample_to_puback_ms: float
    p50_sample_to_puback_ms: float
    simulator_cpu_pct: float
    broker_cpu_pct: float


def charger_id(i: int) -> str:
    return f"bench-{i}"  # the simulator's ids with --prefix bench-


def edge_id(n: int) -> str:
    return f"bench-edge-{n}"


def ensure_certs(n: int, identity: str = "charger") -> Path:
    from chargelift_certs import pki

    certs = shared_dir(STATE / "certs")
    if not (certs / "ca.crt").exists():
        pki.create_ca(certs)
        pki.issue_server(certs)
        pki.issue_client(certs, "ingest", role="service")
    missing = [
        charger_id(i)
        for i in range(1, n + 1)
        if not (certs / "clients" / f"{charger_id(i)}.crt").exists()
    ]
    if identity == "edge":
        if not (certs / "clients" / f"{edge_id(n)}.crt").exists():
            print(f"  issuing the edge certificate {edge_id(n)}...", flush=True)
            chargers = [charger_id(i) for i in range(1, n + 1)]
            pki.issue_client(certs, edge_id(n), role="edge", chargers=chargers)
    elif missing:
        print(f"  issuing {len(missing)} charger certificate(s)...", flush=True)
        for name in missing:
            pki.issue_client(certs, name, role="charger")
    for path in [certs, certs / "clients"]:
        path.chmod(0o755)
    return certs


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def total(metrics: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix))


def quantile(before: dict[str, float], after: dict[str, float], q: float) -> float:
    """Quantile (s) of poller_publish_latency_seconds over the window, linear in a bucket."""
    name = "poller_publish_latency_seconds_bucket"
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


def wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


#: What ``--protocol`` may name: the poller's driver, which is also the simulator's map.
PROTOCOLS = ("mhcp", "hcc3", "bender")


def write_config(
    path: Path,
    n: int,
    base_port: int,
    identity: str = "charger",
    protocol: str = "mhcp",
    modbus_ports: dict[str, int] | None = None,
) -> None:
    lines = []
    if identity == "edge":
        lines += ["[mqtt]", 'identity = "edge"', f'edge_id = "{edge_id(n)}"', ""]
    lines += ["[defaults]", f'driver = "{protocol}"', "interval = 1.0", "timeout = 2.0", ""]
    for i in range(1, n + 1):
        lines += ["[[chargers]]", f'id = "{charger_id(i)}"']
        if protocol == "mhcp":
            lines += [f'url = "http://127.0.0.1:{base_port + i - 1}"', 'pin_env = "BENCH_PIN"']
        else:
            assert modbus_ports is not None
            lines.append(f'url = "tcp://127.0.0.1:{modbus_ports[charger_id(i)]}"')
        lines.append("")
    path.write_text("\n".join(lines))


def modbus_ports(control_port: int, protocol: str) -> dict[str, int]:
    """Charger id -> the port of its ``protocol`` Modbus server, from the control endpoint."""
    url = f"http://127.0.0.1:{control_port}/chargers"
    with urllib.request.urlopen(url, timeout=30) as r:
        chargers = json.loads(r.read())["chargers"]
    return {c["id"]: int(c["modbus"][protocol]) for c in chargers}


def find_base_port(n: int) -> int:
    """A base port with ``n`` consecutive free ports (checked, not reserved)."""
    import socket

    for base in range(30000, 60000 - n, 1000):
        ok = True
        for port in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError(f"no {n} consecutive free ports")


def plug_all(control_port: int, n: int) -> None:
    """A car at every charger: the worst case, every charger changes values every second."""
    for i in range(1, n + 1):
        request = urllib.request.Request(
            f"http://127.0.0.1:{control_port}/chargers/{charger_id(i)}/plug", method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            r.read()


def run_one(
    n: int,
    duration: float,
    warmup: float,
    work: Path,
    all_charging: bool,
    identity: str,
    python_args: Sequence[str] = (),
    python: Path = Path(sys.executable),
    protocol: str = "mhcp",
) -> Result:
    certs = ensure_certs(n, identity)
    broker = MosquittoServer(certs_dir=certs, run_dir=shared_dir(work / f"broker-{protocol}-{n}"))
    base_port = find_base_port(n)
    metrics_port = free_port()
    control_port = free_port()
    logs = shared_dir(work / "logs")
    tag = f"{protocol}-{n}"
    # Modbus: the map on a free loopback port per charger (--host is the default 127.0.0.1)
    modbus = [] if protocol == "mhcp" else ["--modbus", protocol, "--modbus-base-port", "0"]
    procs: list[subprocess.Popen[bytes]] = []
    broker.start()
    try:
        simulator_bin = Path(sys.executable).parent / "chargelift-simulator"
        with (logs / f"simulator-{tag}.log").open("wb") as out:
            sim = subprocess.Popen(
                [
                    str(simulator_bin), "--count", str(n), "--base-port", str(base_port),
                    "--control-port", str(control_port), "--pin", PIN, "--seed", "1",
                    "--speed", "1", "--prefix", "bench-", "--log-level", "WARNING", *modbus,
                ],
                env={**os.environ, "SIMULATOR_PIN": PIN},
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        procs.append(sim)
        env = {
            **os.environ,
            "POLLER_CONFIG": str(work / f"chargers-{tag}.toml"),
            "POLLER_OUTBOX": str(work / f"outbox-{tag}.sqlite"),
            "POLLER_METRICS_PORT": str(metrics_port),
            "MQTT_HOST": broker.host,
            "MQTT_PORT": str(broker.port),
            "MQTT_CA_FILE": str(certs / "ca.crt"),
            "MQTT_CERTS_DIR": str(certs),
            "BENCH_PIN": PIN,
            "POLLER_LOG_LEVEL": "WARNING",
        }
        wait(lambda: _port_open(control_port), 60, "the simulator")
        ports = None if protocol == "mhcp" else modbus_ports(control_port, protocol)
        write_config(work / f"chargers-{tag}.toml", n, base_port, identity, protocol, ports)
        if all_charging:
            plug_all(control_port, n)
        with (logs / f"poller-{tag}.log").open("wb") as out:
            poller = subprocess.Popen(
                [python, *python_args, "-m", "chargelift_poller.main"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        procs.append(poller)
        # 1,000 chargers start (TLS handshakes, Modbus connects) slowly on a busy machine
        try:
            wait(
                lambda: total(scrape(metrics_port), "poller_polls_ok_total") >= n,
                max(90.0, 0.2 * n),
                "first polls",
            )
        except TimeoutError as e:
            try:
                m = scrape(metrics_port)
            except OSError:  # a starved poller does not answer its metrics either
                raise TimeoutError(f"{e} ({protocol}: the metrics do not answer)") from None
            ok, failed = total(m, "poller_polls_ok_total"), total(m, "poller_polls_failed_total")
            raise TimeoutError(f"{e} ({protocol}: {ok:.0f} ok, {failed:.0f} failed)") from None
        time.sleep(warmup)
        assert broker.proc is not None
        pids = {"poller": poller.pid, "simulator": sim.pid, "broker": broker.proc.pid}
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        m0, t0 = scrape(metrics_port), time.monotonic()
        time.sleep(duration)
        cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
        m1, t1 = scrape(metrics_port), time.monotonic()
        elapsed = t1 - t0
        if poller.poll() is not None:
            raise RuntimeError(f"the poller exited with {poller.returncode}")
        return Result(
            protocol=protocol,
            identity=identity,
            chargers=n,
            duration_s=round(elapsed, 1),
            poller_cpu_pct=round(100 * (cpu1["poller"] - cpu0["poller"]) / elapsed, 1),
            poller_peak_rss_mb=round(status_kb(poller.pid, "VmHWM") / 1024, 1),
            poller_rss_mb=round(status_kb(poller.pid, "VmRSS") / 1024, 1),
            polls_per_s=round(
                (total(m1, "poller_polls_ok_total") - total(m0, "poller_polls_ok_total")) / elapsed,
                1,
            ),
            failed_polls_per_s=round(
                (total(m1, "poller_polls_failed_total") - total(m0, "poller_polls_failed_total"))
                / elapsed,
                2,
            ),
            publishes_per_s=round(
                (total(m1, "poller_published_total") - total(m0, "poller_published_total"))
                / elapsed,
                1,
            ),
            p99_sample_to_puback_ms=round(1000 * quantile(m0, m1, 0.99), 1),
            p50_sample_to_puback_ms=round(1000 * quantile(m0, m1, 0.50), 1),
            simulator_cpu_pct=round(100 * (cpu1["simulator"] - cpu0["simulator"]) / elapsed, 1),
            broker_cpu_pct=round(100 * (cpu1["broker"] - cpu0["broker"]) / elapsed, 1),
        )
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        broker.stop()


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def table(results: list[Result]) -> str:
    head = (
        "| protocol | identity | chargers | poller CPU (% of a core) | peak RSS (MB) | polls/s "
        "| publishes/s | p50 / p99 sample→PUBACK (ms) | simulator CPU | broker CPU |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [
        f"| {r.protocol} | {r.identity} | {r.chargers} | {r.poller_cpu_pct} "
        f"| {r.poller_peak_rss_mb} "
        f"| {r.polls_per_s} "
        f"| {r.publishes_per_s} | {r.p50_sample_to_puback_ms} / {r.p99_sample_to_puback_ms} "
        f"| {r.simulator_cpu_pct} % | {r.broker_cpu_pct} % |"
        for r in results
    ]
    return "\n".join([head, *rows])


POLLER_LOCK = REPO / "deploy" / "raspberry-pi" / "requirements-poller.lock"
#: What scripts/install-poller.sh installs (the poller imports chargelift_runtime, chargelift_edge).
POLLER_PACKAGES = tuple(REPO / "services" / p for p in ("contract", "runtime", "edge", "poller"))


def deployed_python() -> Path:
    """A venv with the poller as scripts/install-poller.sh installs it; its python."""
    venv = STATE / "venv-deployed"
    digest = hashlib.sha256(POLLER_LOCK.read_bytes())
    for package in POLLER_PACKAGES:
        for source in sorted(package.rglob("*")):
            if source.suffix in {".py", ".toml"} and ".egg-info" not in str(source):
                digest.update(str(source.relative_to(REPO)).encode() + source.read_bytes())
    stamp = venv / ".sources-sha256"
    if stamp.is_file() and stamp.read_text() == digest.hexdigest():
        return venv / "bin" / "python"
    print("building the deployed poller's venv (once per source change)", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip: list[str | Path] = [
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, "--require-hashes", "-r", POLLER_LOCK], check=True)
    # Copies, not editable installs (build/ goes to a temporary directory).
    with tempfile.TemporaryDirectory() as tmp:
        for package in POLLER_PACKAGES:
            shutil.copytree(package, Path(tmp) / package.name,
                            ignore=shutil.ignore_patterns("*.egg-info", "build"))  # fmt: skip
        subprocess.run(
            [*pip, "--no-deps", "--no-build-isolation",
             *(Path(tmp) / p.name for p in POLLER_PACKAGES)],
            check=True,
        )  # fmt: skip
    stamp.write_text(digest.hexdigest())
    return venv / "bin" / "python"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated charger counts")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per size")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--python-args",
        type=shlex.split,
        default=[],
        help="for the poller, e.g. '-m cProfile -o f'",
    )
    parser.add_argument(
        "--identity",
        choices=["charger", "edge"],
        default="charger",
        help="charger: one certificate and MQTT connection per charger (default); "
        "edge: one edge certificate and connection for all chargers",
    )
    parser.add_argument(
        "--as-simulated",
        action="store_true",
        help="leave the simulator's own mix of idle and charging boxes (default: plug a "
        "car into every charger, the worst case for publishing)",
    )
    parser.add_argument(
        "--poller-env",
        choices=["deployed", "dev"],
        default="deployed",
        help="deployed: the poller's own runtime dependencies only (default); dev: .venv",
    )
    parser.add_argument(
        "--protocol",
        default="mhcp",
        help="how the poller reads the chargers: mhcp (default), hcc3 or bender (Modbus TCP), "
        "or a comma-separated list (each size runs with each, in this order)",
    )
    args = parser.parse_args()
    protocols = [p.strip() for p in args.protocol.split(",") if p.strip()]
    if not protocols or set(protocols) - set(PROTOCOLS):
        parser.error(f"--protocol: one or more of {', '.join(PROTOCOLS)}")
    python = deployed_python() if args.poller_env == "deployed" else Path(sys.executable)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = shared_dir(Path(tempfile.mkdtemp(prefix="bench-poller-", dir=shared_dir(STATE))))
    results = []
    try:
        for n in sizes:
            for protocol in protocols:
                print(
                    f"== {n} chargers over {protocol}, {args.identity} identity: "
                    f"warm-up {args.warmup:.0f} s, measuring {args.duration:.0f} s",
                    flush=True,
                )
                result = run_one(
                    n,
                    args.duration,
                    args.warmup,
                    work,
                    not args.as_simulated,
                    args.identity,
                    args.python_args,
                    python,
                    protocol,
                )
                print("  " + json.dumps(asdict(result)), flush=True)
                results.append(result)
    except BaseException:
        print(f"the logs of the failed run are kept in {work / 'logs'}", flush=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
