"""The README's Development section on fresh machines: ``make dev``, its "Try it", ``make test``.

``make test-fresh`` (CI runs it after ``make test-compose``). Each machine is a container
built here from a debootstrapped Debian (tests/compose/engine.py, no registry) with only
what the README asks for: python3, python3-venv, make, git, ca-certificates (and sudo).
The working tree goes in as a clean checkout (``git ls-files``: tracked and new files, not
the ignored .venv, .dev or certs). On each machine:

1. ``make dev`` in the background; once ``.dev/dev.env`` exists, the README's "Try it"
   commands, parsed out of README.md and run as written (``mosquitto_sub`` gets
   ``-C 1 -W 30`` so that it ends): curl lists the simulated chargers and mosquitto_sub
   prints a ``chargers/`` message; then ``make dev-down``.
2. ``make test``: the whole suite on Debian 12 as root; on the other two machines a subset
   that starts both real servers (``SUBSET``), to keep CI time down.

The machines:

- ``bookworm-root``: Debian 12 as root, the clone in /root/project (/root is 0700: the
  servers, which drop root to their own accounts, cannot read anything under it).
- ``bookworm-user``: Debian 12 as a normal user in /home/user/project. ``make dev`` and
  ``make test`` must first stop with the ``sudo apt-get install`` line to run; the test
  runs exactly that line's package list as root (what the user does), then again as the
  user.
- ``trixie-root``: Debian 13 as root (PostgreSQL 17: no ``postgresql-15`` package there).

Containers are unprivileged, on Docker's default bridge (apt and PyPI only); the servers
in them listen on the container's loopback. The images are cached by tag
(``chargelift-fresh-bare:<suite>``); only a missing tag is built. The host's CA bundle
goes into the image, as for the compose test's Python stand-in: pip and uv there must
trust what this host trusts (this network intercepts TLS; on an open network Debian's
ca-certificates is enough).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.compose import engine

pytestmark = [pytest.mark.fresh, pytest.mark.timeout(3600)]

README = engine.REPO / "README.md"
#: make dev's simulated chargers: three MHCP ones (through the poller) and one OCPP charge
#: point (through the gateway).
CHARGERS = {"amtron-1", "amtron-2", "amtron-3", "ocpp-sim-1"}
# Both real servers, the broker's policy and ingest's guarantees: ~2 of the ~7 minutes.
SUBSET = "tests/integration/broker tests/integration/ingest -q"
BARE_PACKAGES = "python3 python3-venv make git ca-certificates sudo"
DOCKERFILE = f"""\
ARG DEBIAN_IMAGE
FROM ${{DEBIAN_IMAGE}}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {BARE_PACKAGES}
COPY host-ca-bundle.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
"""


@dataclass(frozen=True)
class Machine:
    name: str
    suite: str
    user: str  # root or a normal user
    pytest_args: str | None  # None: the whole suite

    @property
    def image(self) -> str:
        return f"chargelift-fresh-bare:{self.suite}"

    @property
    def project(self) -> str:
        return "/root/project" if self.user == "root" else f"/home/{self.user}/project"


MACHINES = [
    Machine("bookworm-root", "bookworm", "root", None),
    Machine("bookworm-user", "bookworm", "user", SUBSET),
    Machine("trixie-root", "trixie", "root", SUBSET),
]


def ensure_image(machine: Machine) -> None:
    """The bare machine's image, built on the debootstrapped Debian when its tag is missing."""
    exists = engine.run("docker", "image", "inspect", machine.image, check=False, timeout=60)
    if exists.returncode == 0:
        return
    base = engine.ensure_debian_image(machine.suite)
    with tempfile.TemporaryDirectory(prefix="chargelift-fresh-") as tmp:
        ctx = Path(tmp)
        (ctx / "Dockerfile").write_text(DOCKERFILE)
        (ctx / "host-ca-bundle.crt").write_bytes(engine.HOST_CA_BUNDLE.read_bytes())
        engine.run("docker", "build", "-q", "--build-arg", f"DEBIAN_IMAGE={base}",
                   "-t", machine.image, ctx, timeout=900)  # fmt: skip


def try_it_commands() -> tuple[str, str, str]:
    """The README's "Try it" block: (the env line, the curl command, the mosquitto_sub command)."""
    text = README.read_text()
    m = re.search(r"Try it in a second terminal:\s*```sh\n(.*?)```", text, re.S)
    assert m, "README.md has no 'Try it in a second terminal:' sh block"
    commands = [c.strip() for c in m.group(1).replace("\\\n", " ").splitlines() if c.strip()]
    assert len(commands) == 3, commands
    source, curl, sub = commands
    assert source.startswith("set -a;"), commands
    assert curl.startswith("curl "), commands
    assert sub.startswith("mosquitto_sub "), commands
    return source, curl, sub


@dataclass
class Box:
    """One running container of a machine."""

    machine: Machine
    name: str

    def sh(
        self,
        script: str,
        *,
        user: str | None = None,
        workdir: str | None = None,
        timeout: float = 600,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with bash (default: as the machine's user, in the project)."""
        return engine.run("docker", "exec", "-u", user or self.machine.user,
                          "-w", workdir or self.machine.project, self.name,
                          "bash", "-c", script, timeout=timeout, check=check)  # fmt: skip

    def start(self, script: str) -> None:
        """Start ``script`` in the background (``docker exec -d``), in the project directory."""
        engine.run("docker", "exec", "-d", "-u", self.machine.user, "-w", self.machine.project,
                   self.name, "bash", "-c", script, timeout=30)  # fmt: skip

    def log(self, path: str) -> str:
        return self.sh(f"tail -n 60 {path}", user="root", workdir="/", check=False).stdout


@pytest.fixture(scope="module")
def engine_up() -> None:
    engine.ensure_engine(Path(tempfile.mkdtemp(prefix="chargelift-fresh-dockerd-")))


def checkout() -> bytes:
    """A tar of the working tree as a clean checkout: tracked and new files, nothing ignored."""
    files = subprocess.run(
        ["git", "-C", str(engine.REPO), "ls-files", "-z", "--cached", "--others",
         "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    present = [f for f in files if f and (engine.REPO / f.decode()).is_file()]
    return subprocess.run(
        ["tar", "-C", str(engine.REPO), "--null", "-T", "-", "-c"],
        input=b"\0".join(present), capture_output=True, check=True,
    ).stdout  # fmt: skip


@pytest.fixture
def box(request: pytest.FixtureRequest, engine_up: None) -> Iterator[Box]:
    machine: Machine = request.param
    ensure_image(machine)
    name = f"chargelift-fresh-{machine.name}-{uuid.uuid4().hex[:8]}"
    engine.run("docker", "run", "-d", "--init", "--name", name, "--shm-size", "256m",
               machine.image, "sleep", "infinity", timeout=120)  # fmt: skip
    try:
        b = Box(machine, name)
        if machine.user != "root":
            b.sh(f"useradd -m -s /bin/bash {machine.user}", user="root", workdir="/")
        b.sh(f"install -d -o {machine.user} -g {machine.user} {machine.project}",
             user="root", workdir="/")  # fmt: skip
        subprocess.run(
            ["docker", "exec", "-i", "-u", machine.user, name,
             "tar", "-x", "-C", machine.project],
            input=checkout(), check=True, timeout=120,
        )  # fmt: skip
        yield b
    finally:
        engine.run("docker", "rm", "-f", name, check=False, timeout=120)


def apt_line(output: str, target: str) -> list[str]:
    """The packages of the ``sudo apt-get install ...`` line a target printed."""
    m = re.search(r"^\s*sudo apt-get install ([a-z0-9.+ -]+)$", output, re.M)
    assert m, f"`make {target}` did not print the apt-get line:\n{output[-3000:]}"
    return m.group(1).split()


def install_as_user_would(box: Box, target: str) -> list[str]:
    """A normal user's first ``make <target>``: it stops with the packages to install;
    root installs exactly those (README: "otherwise they tell you what to install")."""
    first = box.sh(f"make {target}", check=False, timeout=900)
    assert first.returncode != 0, f"`make {target}` as a user without the packages passed"
    packages = apt_line(first.stdout + first.stderr, target)
    print(f"  [{box.machine.name}] make {target} asked for: {' '.join(packages)}")
    box.sh(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        + " ".join(packages),
        user="root",
        workdir="/",
        timeout=900,
    )
    return packages


def run_dev_and_try_it(box: Box) -> None:
    box.start("make dev > /tmp/make-dev.log 2>&1")
    deadline = time.monotonic() + 900
    while box.sh("test -f .dev/dev.env", check=False).returncode != 0:
        log = box.log("/tmp/make-dev.log")
        assert "make: ***" not in log, f"make dev failed:\n{log}"
        assert time.monotonic() < deadline, f"no .dev/dev.env after 900 s:\n{log}"
        time.sleep(3)
    source, curl, sub = try_it_commands()
    # The chargers appear once ingest has stored their first readings.
    listed: set[str] = set()
    while time.monotonic() < deadline:
        out = box.sh(f"{source}\n{curl}", check=False)
        try:
            listed = {c["id"] for c in json.loads(out.stdout)}
        except (ValueError, TypeError, KeyError):
            listed = set()
        if listed >= CHARGERS:
            break
        time.sleep(2)
    assert listed >= CHARGERS, (
        f"curl of the README: {out.stdout!r} {out.stderr!r}\n{box.log('/tmp/make-dev.log')}"
    )
    msg = box.sh(f"{source}\n{sub} -C 1 -W 30", timeout=60)
    # the first retained message of any of them (the broker's order)
    assert re.match(r"chargers/(amtron-\d+|ocpp-sim-1)/\S+ ", msg.stdout), msg.stdout
    print(f"  [{box.machine.name}] Try it: curl listed {sorted(listed)}; "
          f"mosquitto_sub: {msg.stdout.strip()[:100]}")  # fmt: skip
    box.sh("make dev-down", timeout=120)  # returns once the stack's process has ended
    assert box.sh("test -e .dev/devstack.pid", check=False).returncode != 0
    assert "stopping..." in box.log("/tmp/make-dev.log")


@pytest.mark.parametrize("box", MACHINES, ids=[m.name for m in MACHINES], indirect=True)
def test_readme_development_section_on_a_fresh_machine(box: Box) -> None:
    m = box.machine
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    if m.user == "root":
        mode = box.sh("stat -c %a /root", workdir="/").stdout.strip()
        assert mode == "700", f"/root is {mode}: not the fresh-machine case"
    else:
        packages = install_as_user_would(box, "dev")
        assert {"mosquitto", "mosquitto-clients", "curl"} <= set(packages), packages
        assert any(p.startswith("postgresql") for p in packages), packages
        timings["make dev (refused), apt-get as root"] = time.monotonic() - t0

    t = time.monotonic()
    run_dev_and_try_it(box)
    timings["make dev + Try it + dev-down"] = time.monotonic() - t

    t = time.monotonic()
    if m.user != "root":
        # what make test needs beyond make dev: promtool, chromium for /docs, jq for evcc
        assert install_as_user_would(box, "test") == ["prometheus", "chromium", "jq"]
    args = "" if m.pytest_args is None else f" PYTEST_ARGS={shlex.quote(m.pytest_args)}"
    result = box.sh(f"make test{args}", check=False, timeout=3000)
    tail = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, f"make test{args} failed:\n{tail}"
    summary = [ln for ln in result.stdout.splitlines() if re.search(r"\d+ passed", ln)]
    timings[f"make test{args}"] = time.monotonic() - t
    timings["total"] = time.monotonic() - t0
    print(f"  [{m.name}] {summary[-1:]}")
    for what, secs in timings.items():
        print(f"  [{m.name}] {what}: {secs:.0f} s")
