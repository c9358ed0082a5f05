"""The documentation names only what exists, and documents everything a user can set.

- every setting of every service (its pydantic-settings classes, with prefixes and
  aliases) is in the service's page docs/<service>.md, and a compose user can set it:
  it is in `.env.example`, or docker-compose.yml / the image sets it, or it is in
  ALLOWED below with the reason (a poller setting must then be in the Pi's example);
- every `${VAR}` of docker-compose.yml is in `.env.example`, and every variable there is
  used;
- every `make <target>` in README.md, docs/ and certs/README.md is a Makefile target;
- every option and subcommand the docs give a console script (also through
  `docker compose run <service>`) is one its parser knows;
- every alert of deploy/prometheus/alerts.yml is in the alert table of docs/deploy.md;
- every `services/<name>/` has a README.md naming its console script(s), and each sample
  configuration there (`*.env.example`, the poller's `chargers.toml.example`) names only
  real settings of that service, and all of them.

Each test collects every problem and prints them all.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest
import yaml
from pydantic_settings import BaseSettings

import chargelift_runtime.settings as runtime_settings
from tests.support.settings import env_names, from_env

REPO = Path(__file__).resolve().parents[2]
SERVICE_READMES = sorted(REPO.glob("services/*/README.md"))
DOCS = [
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "README.md",
    REPO / "certs" / "README.md",
    *SERVICE_READMES,
]
ENV_EXAMPLE = REPO / ".env.example"
PI_ENV = REPO / "deploy" / "raspberry-pi" / "poller.env.example"
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())

PI = "pi"  # a poller setting: the poller runs on the edge device (deploy/raspberry-pi)
OVERRIDE = "override"  # tuning: docs/deploy.md says how (docker-compose.override.yml)
FIXED = "fixed"  # compose relies on the default; changing it would break the stack

#: Settings a compose user does not set in `.env`, and why.
ALLOWED: dict[str, tuple[str, str]] = {
    "API_MAX_POINTS": (OVERRIDE, "tuning; the default fits"),
    "API_MAX_ROWS": (OVERRIDE, "tuning; the default fits"),
    "API_STATEMENT_TIMEOUT_MS": (OVERRIDE, "tuning; the default fits"),
    "INGEST_MIN_SAMPLING_TIME": (OVERRIDE, "tuning; the default fits"),
    "INGEST_DB_CONNECT_TIMEOUT_S": (OVERRIDE, "tuning; the default fits"),
    "INGEST_DB_WRITE_TIMEOUT_S": (OVERRIDE, "tuning; the default fits"),
    "INGEST_LIVENESS_S": (OVERRIDE, "tuning; the default fits"),
    "INGEST_WATCHDOG_EXIT_S": (OVERRIDE, "tuning; the default fits"),
    "API_MIN_BUCKET_SECONDS": (OVERRIDE, "tuning; the default fits"),
    "API_MAX_WINDOW_DAYS": (OVERRIDE, "tuning; the default fits"),
    "API_MAX_SESSION_DAYS": (OVERRIDE, "tuning; the default fits"),
    "API_POOL_MIN": (OVERRIDE, "tuning; the default fits"),
    "API_POOL_MAX": (OVERRIDE, "tuning; the default fits"),
    "MQTT_IDENTITY": (OVERRIDE, "ingest's identity; another only for a second ingest"),
    "INGEST_DEAD_LETTER_MAX_BYTES": (OVERRIDE, "tuning; the default fits"),
    "INGEST_DEAD_LETTER_PRUNE_INTERVAL_S": (OVERRIDE, "tuning; the default fits"),
    "INGEST_BATCH_SIZE": (OVERRIDE, "tuning; the default fits"),
    "INGEST_BATCH_AGE_MS": (OVERRIDE, "tuning; the default fits"),
    "INGEST_MAX_PAYLOAD_BYTES": (OVERRIDE, "tuning; the default fits"),
    "INGEST_MAX_FUTURE_SECONDS": (OVERRIDE, "tuning; the default fits"),
    "INGEST_SHUTDOWN_TIMEOUT_S": (FIXED, "must stay below ingest's stop_grace_period"),
    "INGEST_METRICS_PORT": (FIXED, "deploy/prometheus/prometheus.yml scrapes the default"),
    "INGEST_MIGRATIONS_DIR": (FIXED, "the image uses the migrations shipped in the package"),
    # The OCPP gateway's container (docs/ocpp.md "Running it").
    **{
        name: (OVERRIDE, "tuning; the default fits")
        for name in (
            "OCPP_BUSY_RETRY_AFTER",
            "OCPP_EDGE_INFLIGHT",
            "OCPP_HEARTBEAT_INTERVAL",
            "OCPP_LOG_LEVEL",
            "OCPP_MAX_CONNECTIONS",
            "OCPP_MAX_MESSAGE_BYTES",
            "OCPP_MESSAGE_BURST",
            "OCPP_MESSAGE_RATE",
            "OCPP_MQTT_MAX_BACKOFF",
            "OCPP_MQTT_MAX_PACKET_BYTES",
            "OCPP_OUTBOX_KEEP_ACKED",
            "OCPP_OUTBOX_MAX_AGE",
            "OCPP_OUTBOX_MAX_ROWS",
            "OCPP_OUTBOX_SYNCHRONOUS",
            "OCPP_PASSWORD_CHECK_QUEUE",
            "OCPP_PASSWORD_CHECK_THREADS",
            "OCPP_REPLAY_WINDOW",
            "OCPP_RESPONSE_TIMEOUT",
            "OCPP_SHUTDOWN_GRACE",
        )
    },
    # The Home Assistant bridge's container (docs/bridge.md).
    "BRIDGE_MIN_CURRENT": (OVERRIDE, "the current-limit number's range; the default fits"),
    "BRIDGE_MAX_CURRENT": (OVERRIDE, "the current-limit number's range; the default fits"),
    "BRIDGE_MAX_CHARGERS": (OVERRIDE, "tuning; the default fits"),
    "BRIDGE_LOG_LEVEL": (OVERRIDE, "tuning; the default fits"),
    "BRIDGE_METRICS_PORT": (FIXED, "deploy/prometheus/prometheus.yml scrapes the default"),
    "OCPP_ALLOW_PLAIN": (OVERRIDE, "profile 1 on a LAN: with OCPP_PLAIN_HOST and its port"),
    "OCPP_PLAIN_HOST": (OVERRIDE, "profile 1 on a LAN: 0.0.0.0 in the container"),
    "OCPP_PLAIN_PORT": (OVERRIDE, "profile 1 on a LAN: published by the same override"),
    "OCPP_MAX_CURRENT": (OVERRIDE, "the site's highest limit; a charger refuses more itself"),
    "OCPP_HOST": (FIXED, "the container listens on every interface; OCPP_BIND publishes"),
    "OCPP_PATH": (FIXED, "the simulated charge point's URL and the docs use /ocpp"),
    "OCPP_OUTBOX": (FIXED, "in the ocpp-state volume with the transactions"),
    "OCPP_METRICS_PORT": (FIXED, "deploy/prometheus/prometheus.yml scrapes the default"),
    **{
        name: (PI, "the poller runs on the edge device; compose polls only the simulator")
        for name in (
            "MQTT_HOST",
            "MQTT_PORT",
            "MQTT_CA_FILE",
            "MQTT_CERTS_DIR",
            "POLLER_CONFIG",
            "POLLER_OUTBOX",
            "POLLER_METRICS_HOST",
            "POLLER_METRICS_PORT",
            "POLLER_SNAPSHOT_INTERVAL",
            "POLLER_REPLAY_WINDOW",
            "POLLER_OUTBOX_MAX_ROWS",
            "POLLER_OUTBOX_MAX_AGE",
            "POLLER_OUTBOX_SYNCHRONOUS",
            "POLLER_START_SPREAD",
            "POLLER_INFLIGHT",
            "POLLER_EDGE_INFLIGHT",
            "POLLER_MQTT_MAX_BACKOFF",
            "POLLER_MQTT_MAX_PACKET_BYTES",
            "POLLER_LIVENESS",
            "POLLER_WATCHDOG_EXIT",
            "POLLER_OUTBOX_KEEP_ACKED",
            "POLLER_MAX_BACKOFF",
            "POLLER_PERMANENT_RETRY",
            "POLLER_SHUTDOWN_GRACE",
            "POLLER_LOG_LEVEL",
        )
    },
}

#: Variables of a shared settings block that a service accepts but never reads.
NOT_READ: dict[str, set[str]] = {
    # The poller's MQTT identities come from the chargers file (docs/poller.md).
    "poller": {"MQTT_IDENTITY"},
}

#: Variables docker compose itself reads from `.env` (not through `${…}`).
COMPOSE_OWN = {"COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME", "COMPOSE_FILE"}


def report(problems: list[str]) -> None:
    assert not problems, "\n".join(["", *problems])


# --- settings -------------------------------------------------------------------


def settings_classes(module: ModuleType) -> list[type[BaseSettings]]:
    """The settings a service reads: the classes its config.py declares, and the shared
    blocks of chargelift_runtime.settings (``MqttSettings``) it imports."""
    return [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, BaseSettings)
        and obj is not BaseSettings
        and obj.__module__ in (module.__name__, runtime_settings.__name__)
    ]


def service_settings() -> dict[str, set[str]]:
    """service (directory under services/) -> the variables of its settings classes."""
    found: dict[str, set[str]] = {}
    for config in sorted(REPO.glob("services/*/chargelift_*/config.py")):
        module = importlib.import_module(f"{config.parent.name}.config")
        service = config.parents[1].name
        for cls in settings_classes(module):
            names = {n.upper() for n in env_names(cls).values()} - NOT_READ.get(service, set())
            found.setdefault(service, set()).update(names)
    return found


def env_file_names(path: Path) -> set[str]:
    """Variables of an env file, commented-out examples (`#NAME=`) included."""
    return set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", path.read_text(), re.MULTILINE))


def compose_services_of(service: str) -> list[dict[str, Any]]:
    dockerfile = f"services/{service}/Dockerfile"
    return [
        svc
        for svc in COMPOSE["services"].values()
        if isinstance(svc.get("build"), dict) and svc["build"].get("dockerfile") == dockerfile
    ]


def image_env(service: str) -> set[str]:
    dockerfile = REPO / "services" / service / "Dockerfile"
    text = dockerfile.read_text() if dockerfile.exists() else ""
    return {
        name
        for line in re.findall(r"^ENV (.*)$", text, re.MULTILINE)
        for name in re.findall(r"([A-Z][A-Z0-9_]*)=", line)
    }


def test_the_settings_classes_are_found() -> None:
    settings = service_settings()
    assert {"api", "ingest", "poller"} <= set(settings)
    assert {"DATABASE_URL", "API_TOKENS", "API_MAX_POINTS"} <= settings["api"]
    assert {"INGEST_RETENTION_DAYS", "MQTT_HOST"} <= settings["ingest"]
    assert {"POLLER_CONFIG", "POLLER_LOG_LEVEL"} <= settings["poller"]
    # the shared MQTT_* block counts for a service whose config.py imports it
    assert {"MQTT_HOST", "MQTT_PORT", "MQTT_CA_FILE", "MQTT_CERTS_DIR"} <= settings["poller"]
    assert "MQTT_IDENTITY" not in settings["poller"]  # NOT_READ


def test_every_setting_is_documented_and_settable() -> None:
    problems: list[str] = []
    in_env_example = env_file_names(ENV_EXAMPLE)
    in_pi_example = env_file_names(PI_ENV)
    deploy = (REPO / "docs" / "deploy.md").read_text()
    every_setting: set[str] = set()
    for service, names in sorted(service_settings().items()):
        every_setting |= names
        page = REPO / "docs" / f"{service}.md"
        text = page.read_text() if page.exists() else ""
        runs_in_compose = compose_services_of(service)
        wired = image_env(service).union(
            *(set(svc.get("environment") or {}) for svc in runs_in_compose)
        )
        for name in sorted(names):
            if f"`{name}`" not in text:
                problems.append(f"{name} ({service}): not in docs/{service}.md")
            if not runs_in_compose or name in in_env_example or name in wired:
                continue
            if name not in ALLOWED:
                problems.append(
                    f"{name} ({service}): not in .env.example, not set by docker-compose.yml "
                    "or the image, not in ALLOWED"
                )
                continue
            kind, _ = ALLOWED[name]
            if kind == PI and name not in in_pi_example:
                problems.append(f"{name} ({service}): not in {PI_ENV.relative_to(REPO)}")
            if kind == OVERRIDE and "docker-compose.override.yml" not in deploy:
                problems.append(
                    f"{name} ({service}): docs/deploy.md does not say how to set a tuning "
                    "variable (docker-compose.override.yml)"
                )
    problems += [f"ALLOWED names {name}, no setting" for name in set(ALLOWED) - every_setting]
    report(problems)


def test_the_settings_tables_name_only_real_settings() -> None:
    """A variable in the first column of a settings table is a setting of some service."""
    known = set().union(*service_settings().values()) | {"SIMULATOR_PIN"}
    problems = [
        f"docs/{page}.md: `{name}` is not a setting of any service"
        for page in ("api", "ingest", "poller", "simulator", "conventions")
        for line in (REPO / "docs" / f"{page}.md").read_text().splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`\$?([A-Z<_][A-Z0-9_<>]+)`", line.split("|")[1])
        if "_" in name and name not in known
    ]
    report(problems)


# --- .env.example and docker-compose.yml --------------------------------------------


def test_compose_variables_and_env_example_agree() -> None:
    compose_text = (REPO / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", compose_text))
    documented = env_file_names(ENV_EXAMPLE)
    problems = [f"${{{v}}} of docker-compose.yml is not in .env.example" for v in used - documented]
    problems += [
        f"{v} of .env.example is not used by docker-compose.yml"
        for v in documented - used - COMPOSE_OWN
    ]
    report(sorted(problems))


# --- code in the docs -------------------------------------------------------------


def code_lines(path: Path) -> Iterator[str]:
    """The code of a Markdown file: fenced blocks (continuation lines joined), inline spans."""
    fenced = False
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield pending + line
            pending = ""
        else:
            yield from re.findall(r"`([^`]+)`", line)


def test_every_make_target_in_the_docs_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.MULTILINE))
    problems = sorted(
        {
            f"{doc.relative_to(REPO)}: `make {target}` is not a Makefile target"
            for doc in DOCS
            for code in code_lines(doc)
            for target in re.findall(r"(?:^|[\s;&(])make ([a-z][a-z0-9-]*)", code)
            if target not in targets
        }
    )
    report(problems)


def console_scripts() -> dict[str, str]:
    """name -> "module:function" of every console script in the repository."""
    scripts: dict[str, str] = {}
    for pyproject in sorted(REPO.glob("*/*/pyproject.toml")):
        scripts.update(tomllib.loads(pyproject.read_text())["project"].get("scripts", {}))
    return scripts


class _Captured(Exception):  # noqa: N818 - carries the parser out of main()
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def parser_of(script: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser | None:
    """The parser a console script's main() builds (caught at parse_args: nothing runs)."""
    module_name, func_name = console_scripts()[script].split(":")
    main = getattr(importlib.import_module(module_name), func_name)

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> NoReturn:
        raise _Captured(self)

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", capture)
        m.setattr(argparse.ArgumentParser, "parse_known_args", capture)
        # Without its settings a main() that has no parser stops at once.
        for name in ("POLLER_CONFIG", "DATABASE_URL", "API_TOKENS", "MQTT_CA_FILE"):
            m.delenv(name, raising=False)
        try:
            main([])
        except _Captured as captured:
            return captured.parser
        except (SystemExit, Exception):
            return None
    return None


@dataclass
class Invocation:
    doc: str
    script: str
    args: list[str]


#: `docker compose run <service>` runs this console script (the image's entrypoint).
COMPOSE_RUN = {"certs": "chargelift-certs", "api": "chargelift-api", "ingest": "chargelift-ingest"}
STOP_TOKENS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "2>&1", "&", "/"}


def _args(tokens: list[str]) -> list[str]:
    out: list[str] = []
    for token in tokens:
        if token in STOP_TOKENS or token.startswith("#") or token.startswith(">"):
            break
        if token.strip(".…") == "":  # an ellipsis: "more of the same"
            continue
        out.append(token)
    return out


def invocations() -> Iterator[Invocation]:
    """Every console-script command line in the docs (also `$ALIAS` and compose run)."""
    names = "|".join(re.escape(s) for s in console_scripts())
    script_re = re.compile(rf"(?:^|(?<=[\s`(\"']))(?:[\w./-]*bin/)?({names})(?![\w./-])")
    for doc in DOCS:
        aliases: dict[str, str] = {}
        for code in code_lines(doc):
            for alias, value in re.findall(r"^([A-Z_]+)=\"([^\"]+)\"", code):
                aliases[alias] = value
            for alias, value in aliases.items():
                code = code.replace(f"${alias} ", value + " ")
            try:
                tokens = shlex.split(code, comments=False, posix=True)
            except ValueError:
                tokens = code.split()
            line = " ".join(tokens)
            for match in script_re.finditer(line):
                rest = line[match.end() :].split()
                yield Invocation(str(doc.relative_to(REPO)), match.group(1), _args(rest))
            for i in range(len(tokens) - 2):
                if tokens[i : i + 3] != ["docker", "compose", "run"]:
                    continue
                rest = tokens[i + 3 :]
                while rest and rest[0].startswith("-"):
                    if rest[0] == "--entrypoint":  # another program: not ours
                        rest = []
                        break
                    rest = rest[1:]
                if rest[:2] == ["certs", "ocpp"]:  # docker/entrypoints/certs.sh: the gateway's
                    yield Invocation(str(doc.relative_to(REPO)), "chargelift-ocpp", _args(rest[2:]))
                elif rest and rest[0] in COMPOSE_RUN:
                    yield Invocation(
                        str(doc.relative_to(REPO)), COMPOSE_RUN[rest[0]], _args(rest[1:])
                    )


def check_args(parser: argparse.ArgumentParser, args: list[str]) -> str | None:
    """What in ``args`` the parser does not know (None: all of it is known)."""
    options = {s for a in parser._actions for s in a.option_strings}
    positionals = [a for a in parser._actions if not a.option_strings]
    index = 0
    tokens = iter(args)
    for token in tokens:
        if token.startswith("-") and len(token) > 1:
            name = token.split("=", 1)[0]
            if name not in options:
                return f"option {name} (known: {', '.join(sorted(options))})"
            action = next(a for a in parser._actions if name in a.option_strings)
            if action.nargs != 0 and "=" not in token:
                next(tokens, None)  # its value
            continue
        if not positionals:
            return f"argument {token!r} (this command takes none)"
        action = positionals[min(index, len(positionals) - 1)]
        index += 1
        if isinstance(action, argparse._SubParsersAction):
            if token not in action.choices:
                return f"subcommand {token!r} (known: {', '.join(action.choices)})"
            return check_args(action.choices[token], list(tokens))
        if action.choices is not None and token not in action.choices:
            return f"argument {token!r} (one of: {', '.join(map(str, action.choices))})"
    return None


def test_every_console_script_has_a_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    report(
        [
            f"{script}: main() builds no argparse parser (--help cannot answer)"
            for script in sorted(console_scripts())
            if parser_of(script, monkeypatch) is None
        ]
    )


def test_the_command_line_check_finds_unknown_options_and_subcommands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    certs = parser_of("chargelift-certs", monkeypatch)
    assert certs is not None
    assert check_args(certs, ["--dir", "x", "client", "a", "--role", "edge", "--force"]) is None
    assert check_args(certs, ["client", "a", "--forse"]) is not None
    assert check_args(certs, ["clients", "a"]) is not None
    ingest = parser_of("chargelift-ingest", monkeypatch)
    assert ingest is not None
    assert check_args(ingest, ["migrate"]) is None
    assert check_args(ingest, ["upgrade"]) is not None


def test_every_command_line_in_the_docs_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    parsers = {s: parser_of(s, monkeypatch) for s in console_scripts()}
    found = list(invocations())
    assert {i.script for i in found} >= {"chargelift-certs", "chargelift-api"}
    problems: list[str] = []
    for inv in found:
        parser = parsers[inv.script]
        if parser is None:
            if inv.args:
                problems.append(f"{inv.doc}: `{inv.script} {' '.join(inv.args)}`: no parser")
            continue
        unknown = check_args(parser, inv.args)
        if unknown:
            problems.append(f"{inv.doc}: `{inv.script} {' '.join(inv.args)}`: unknown {unknown}")
    report(sorted(set(problems)))


def test_every_simulator_option_is_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = parser_of("chargelift-simulator", monkeypatch)
    assert parser is not None
    page = (REPO / "docs" / "simulator.md").read_text()
    report(
        [
            f"chargelift-simulator {option}: not in docs/simulator.md"
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--") and option != "--help" and f"`{option}" not in page
        ]
    )


# --- alerts ---------------------------------------------------------------------


def test_every_alert_is_in_the_deploy_guide() -> None:
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = [str(r["alert"]) for g in rules["groups"] for r in g["rules"] if "alert" in r]
    table = "\n".join(
        line
        for line in (REPO / "docs" / "deploy.md").read_text().splitlines()
        if line.startswith("|")
    )
    missing = [a for a in alerts if f"`{a}`" not in table]
    report([f"alert {a}: not in the alert table of docs/deploy.md" for a in missing])


# --- each service folder stands alone ----------------------------------------------

SERVICES = sorted(p.parent for p in REPO.glob("services/*/pyproject.toml"))
#: Variables of services without a pydantic-settings class (read from os.environ).
OTHER_SETTINGS = {"simulator": {"SIMULATOR_PIN"}}


def test_every_service_has_a_readme_naming_its_console_script() -> None:
    assert {s.name for s in SERVICES} >= {"contract", "certs", "simulator", "poller", "ingest"}
    problems: list[str] = []
    for service in SERVICES:
        readme = service / "README.md"
        if not readme.is_file():
            problems.append(f"services/{service.name}: no README.md")
            continue
        text = readme.read_text()
        project = tomllib.loads((service / "pyproject.toml").read_text())["project"]
        names = list(project.get("scripts", {})) or [f"chargelift_{service.name}"]
        problems += [
            f"services/{service.name}/README.md does not name `{name}`"
            for name in names
            if f"`{name}`" not in text
        ]
        problems += [
            f"services/{service.name}/README.md: no link to docs/{service.name}.md"
            for page in [REPO / "docs" / f"{service.name}.md"]
            if page.is_file() and f"docs/{service.name}.md" not in text
        ]
    report(problems)


def _pin_envs(chargers_toml: Path) -> set[str]:
    doc = tomllib.loads(chargers_toml.read_text())
    return {str(c["pin_env"]) for c in doc.get("chargers", []) if "pin_env" in c}


def test_sample_configurations_name_every_setting_and_only_settings() -> None:
    settings = service_settings()
    problems: list[str] = []
    samples = sorted(REPO.glob("services/*/*.env.example"))
    assert {p.parent.name for p in samples} >= {"api", "ingest", "poller", "simulator"}
    for sample in samples:
        service = sample.parent.name
        known = settings.get(service, set()) | OTHER_SETTINGS.get(service, set())
        extra: set[str] = set()
        for toml in sample.parent.glob("*.toml.example"):
            extra |= _pin_envs(toml)
        named = env_file_names(sample)
        where = sample.relative_to(REPO)
        problems += [f"{where}: {n} is not a setting of {service}" for n in named - known - extra]
        problems += [f"{where}: setting {n} is missing" for n in known - named]
    report(sorted(problems))


def test_the_poller_samples_are_a_valid_configuration() -> None:
    from chargelift_poller.config import MqttSettings, Settings, load_config

    folder = REPO / "services" / "poller"
    env = dict(
        re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", (folder / "poller.env.example").read_text(), re.M)
    )
    from_env(Settings, env)
    from_env(MqttSettings, env)
    chargers = load_config(folder / "chargers.toml.example", env).chargers
    assert [c.id for c in chargers] == ["amtron-1", "amtron-2"]
