"""The repository stands alone: no tracked file refers to a path outside it.

Every text file ``git ls-files`` lists (binary files, those with a NUL byte, are skipped)
is read line by line. A line fails when it contains:

1. a parent folder's ``shared`` (two dots, a slash, ``shared``) or ``shared/``
   followed by ``reference``, ``DESIGN``, ``STYLE`` or ``hooks``: the sibling folder
   the project was once built next to. What chargelift relies on from there lives in
   ``docs/reference/`` now.
2. An absolute path that starts a path (it is not preceded by a letter, digit, ``.``,
   ``-``, ``_``, ``~`` or ``/``, so a URL's ``https://host/work/...`` is not one) into a
   workstation's or a build machine's own directories: ``/work/``, ``/Users/``,
   ``/root/`` and ``/home/<name>/``, except the clone of a *container* that
   ``make test-fresh`` makes, ``/root/project`` and ``/home/<user>/project`` (also
   ``/home/{self.user}/project`` in the code that builds it). System paths (``/usr``,
   ``/etc``, ``/var``, ``/opt``, ``/tmp``, ``/proc``, ``/dev``, ``/run``, ``/srv``,
   ``/mosquitto`` and the like in the images) are paths *on* a machine the project
   sets up, not into somebody's files, and are never flagged; nor is ``~/`` (a
   user's home on the machine being set up, as in docs/raspberry-pi.md).
3. A relative Markdown link (``[text](target)``) whose target, resolved from the file's
   folder, lies outside the repository, or names nothing in it.
4. A path of this repository's documents, ``docs/<page>.md`` or
   ``docs/reference/<page>.md``, that names no file of it (a document that was never
   brought in). Deeper ``docs/`` paths are other projects' files, cited with their
   repository (``lephisto/amtron docs/api/ChargeData/post.md``).

5. A document of that sibling folder named without a path of this repository:
   ``DESIGN.md``, ``STYLE.md``, or ``charger-protocols``, ``measured-limits``,
   ``lessons-from-peers`` not preceded by ``reference/`` (the first two are in
   ``docs/reference/`` now), or "the seed article".

This file itself is exempt (it has to spell the patterns out). The test names every
offending file and line.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SELF = Path(__file__).resolve().relative_to(REPO).as_posix()

_START = r"(?<![\w.~/-])"
# Written in character classes so that this line names no outside path itself.
SIBLING = re.compile(r"[.][.][/]shared\b|\bshared[/](?:reference|DESIGN|STYLE|hooks)\b")
OUTSIDE = re.compile(
    _START + r"(?:/work/|/Users/|/root/(?!project\b)|/home/(?![\w{}.-]+/project\b))"
)
SIBLING_DOCS = re.compile(
    r"\b(?:DESIGN|STYLE)\.md\b|(?<!reference/)\b(?:charger-protocols|measured-limits"
    r"|lessons-from-peers)\b|\bseed article",
    re.IGNORECASE,
)
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCS_PATH = re.compile(r"(?<![\w./-])docs/(?:reference/)?[\w.-]+\.md\b")


#: Not the project's files, in a tree that is not a git checkout (see below).
UNTRACKED_DIRS = {
    ".git", ".venv", ".venv-compose", ".dev", "certs", "backups", "node_modules",
    "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
}  # fmt: skip


def _all_files() -> list[str]:
    """What ``git ls-files`` would list, in a tree without git metadata (``make
    test-fresh`` unpacks the working tree as an archive): every file but the ignored
    folders' (generated state; certs/ keeps its README)."""
    out = []
    for path in sorted(REPO.rglob("*")):
        rel = path.relative_to(REPO)
        if path.is_file() and not UNTRACKED_DIRS.intersection(rel.parts[:-1]):
            out.append(rel.as_posix())
    return out


def tracked_text_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=False, text=True
    )
    names = listed.stdout.split("\0") if listed.returncode == 0 else _all_files()
    out = []
    for name in names:
        path = REPO / name
        if not name or name == SELF or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" not in data:
            out.append(name)
    return out


def problems_of(name: str, text: str) -> list[str]:
    """Every reference outside the repository in ``text`` (the file ``name``)."""
    problems: list[str] = []
    folder = (REPO / name).parent
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{number}"
        for match in SIBLING.finditer(line):
            problems.append(f"{where}: {match.group(0)!r} (outside the repository): {line.strip()}")
        for match in SIBLING_DOCS.finditer(line):
            problems.append(f"{where}: {match.group(0)!r} (a document outside it): {line.strip()}")
        for match in OUTSIDE.finditer(line):
            problems.append(f"{where}: {match.group(0)!r} (a path outside it): {line.strip()}")
        if name.endswith(".md"):
            for target in MD_LINK.findall(line):
                if re.match(r"[a-z][a-z0-9+.-]*:|#|/", target):  # URL, anchor, absolute
                    continue
                resolved = (folder / target.split("#")[0]).resolve()
                if not resolved.is_relative_to(REPO):
                    problems.append(f"{where}: link {target!r} leaves the repository")
                elif not resolved.exists():
                    problems.append(f"{where}: link {target!r} names no file of the repository")
        for path in DOCS_PATH.findall(line):
            if not (REPO / path).is_file():
                problems.append(f"{where}: {path} is not a file of the repository")
    return problems


def test_the_rule_finds_what_it_should_and_nothing_else() -> None:
    bad = [
        "see "
        + ".."
        + "/"
        + "shared"
        + "/"
        + "DESIGN.md",  # split: this file names no outside path itself
        "facts: " + "shared" + "/" + "reference/charger-protocols.md §1",
        "cd /work/main && make",
        "open /home/alice/chargelift/README.md",
        "in /root/chargelift",
        "/Users/bob/src",
        "see docs/no-such-page.md and docs/reference/nothing.md",
        "the seed article's design",
        "as measured-limits says",
        "see DESIGN.md",
    ]
    good = [
        "clone in /root/project (/root is 0700)",
        "/home/user/project and f'/home/{self.user}/project'",
        "https://example.org/work/x and /usr/bin, /etc/chargelift, /var/lib, /opt, /tmp",
        "rm ~/garage-certs.tar",
        "a shared subscription ($share/ingest/chargers/#)",
        "see docs/testing.md; lephisto/amtron docs/api/ChargeData/post.md",
        "docs/reference/charger-protocols.md §1 and [x](reference/measured-limits.md)",
    ]
    for line in bad:
        assert problems_of("x.txt", line), line
    for line in good:
        assert not problems_of("x.txt", line), line
    assert problems_of("docs/x.md", "[up](../../outside.md)")
    assert problems_of("docs/x.md", "[gone](no-such-page.md)")
    assert not problems_of("docs/x.md", "[readme](../README.md#x) [web](https://x.org/a)")


def test_no_file_refers_to_a_path_outside_the_repository() -> None:
    problems = [
        problem
        for name in tracked_text_files()
        for problem in problems_of(name, (REPO / name).read_text(errors="replace"))
    ]
    assert not problems, "\n".join(["", *problems])
