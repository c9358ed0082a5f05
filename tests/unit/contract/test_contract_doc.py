"""docs/contract.md says what the code does: tested against the packages, not generated.

The page is written by hand (prose for third parties); this test fails when it and the
code drift apart:

- the field table lists every field of ``CATALOGUE`` and nothing else, each with its
  type, unit (``—`` for none) and bounds (``min … max`` with thousands separators,
  ``—`` for none) exactly as ``chargelift_contract.fields`` defines them;
- the OperationState table lists every ``OperationState`` value, in the enum's order;
- the dead-letter table lists every reason of ``validate.REASONS`` and nothing else;
- the role table lists every role of ``pki.ROLES`` and nothing else;
- the topic layout, the packet limit and ingest's defaults quoted are the code's.
"""

from __future__ import annotations

import re
from pathlib import Path

from chargelift_certs.pki import ROLES
from chargelift_contract import CATALOGUE, OperationState
from chargelift_contract.limits import MAX_PACKET_BYTES
from chargelift_contract.topics import (
    AVAILABILITY,
    EDGE_CHARGERS,
    EDGES_ROOT,
    ROOT,
)
from chargelift_ingest.config import Settings
from chargelift_ingest.validate import MIN_SAMPLING_TIME, REASONS

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "contract.md"
NONE = "—"


def section(title: str) -> str:
    """The text of the ``## title`` section of the page."""
    text = DOC.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/contract.md has no section '## {title}'"
    return match.group(1)


def table_rows(title: str) -> dict[str, list[str]]:
    """First-column name (in backticks) -> the other cells, of the tables of a section."""
    rows: dict[str, list[str]] = {}
    for line in section(title).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and re.fullmatch(r"`[^`]+`", cells[0]):
            name = cells[0].strip("`")
            assert name not in rows, f"{title}: {name} twice"
            rows[name] = cells[1:]
    return rows


def number(x: float) -> str:
    assert x == int(x), x
    return f"{int(x):,}"


def bounds_text(bounds: tuple[float, float] | None) -> str:
    return NONE if bounds is None else f"{number(bounds[0])} … {number(bounds[1])}"


def test_the_field_table_is_the_catalogue() -> None:
    rows = table_rows("Fields")
    problems = [f"{name}: in the doc, not in the catalogue" for name in set(rows) - set(CATALOGUE)]
    for name, spec in CATALOGUE.items():
        if name not in rows:
            problems.append(f"{name}: not in the field table")
            continue
        want = [spec.type.value, spec.unit or NONE, bounds_text(spec.bounds)]
        if rows[name][:3] != want:
            problems.append(f"{name}: doc says {rows[name][:3]}, the package {want}")
    assert not problems, "\n".join(["", *problems])


def test_every_operation_state_in_order() -> None:
    assert list(table_rows("OperationState")) == [s.value for s in OperationState]


def test_every_dead_letter_reason() -> None:
    assert set(table_rows("Dead letters")) == set(REASONS)


def test_every_role() -> None:
    assert set(table_rows("Identities and ACL")) == set(ROLES)


def test_the_topics_and_limits_quoted_are_the_code_s() -> None:
    text = DOC.read_text()
    for topic in (
        f"{ROOT}/{{charger}}/{{Field}}",
        f"{ROOT}/{{charger}}/{AVAILABILITY}",
        f"{EDGES_ROOT}/{{edge}}/{AVAILABILITY}",
        f"{EDGES_ROOT}/{{edge}}/{EDGE_CHARGERS}",
    ):
        assert topic in text, topic
    for conf in ("mosquitto.conf.template", "compose.conf"):
        text_of_conf = (REPO / "mosquitto" / conf).read_text()
        packet = int(re.findall(r"^max_packet_size (\d+)", text_of_conf, re.M)[0])
        assert packet == MAX_PACKET_BYTES, conf
    assert f"**{packet:,} bytes**" in text
    defaults = Settings.model_fields
    assert f"default {defaults['max_payload_bytes'].default:,}" in text
    assert f"default {defaults['max_future_seconds'].default:g} s" in text
    assert MIN_SAMPLING_TIME.strftime("`%Y-%m-%dT%H:%M:%SZ`") in text


def test_every_command_and_outcome() -> None:
    from chargelift_contract.commands import Command, Outcome

    rows = table_rows("Commands")
    assert set(rows) == {c.value for c in Command} | {o.value for o in Outcome}
