"""The documentation agrees with the code: every venue option is in docs/cli.md with its values
and default; the docs name only health events that exist (core.schema.HealthKind), and
docs/data.md lists every one of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.plugins import load_plugins
from core.schema import HEALTH_KINDS

ROOT = Path(__file__).resolve().parents[1]


def test_cli_doc_lists_every_venue_option_with_its_values_and_default() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    rows = {m[1]: m[0] for m in re.finditer(r"^\| `([a-z0-9-]+\.[a-z0-9_]+)` \|.*$", text, re.M)}
    _, registry = load_plugins()
    declared: set[str] = set()
    for venue in registry.names():
        proto = registry.get(venue)
        for key, spec in proto.options.items():
            name = f"{venue}.{key}"
            declared.add(name)
            assert name in rows, f"docs/cli.md does not list option {name}"
            cells = [c.strip() for c in rows[name].strip("|").split("|")]
            assert [f"`{v}`" for v in spec.choices] == re.findall(r"`[^`]+`", cells[1])[
                :len(spec.choices)], (name, cells[1])
            assert cells[2] == f"`{spec.default}`", (name, cells[2])
        if not proto.options:
            assert re.search(rf"`{re.escape(venue)}`[^\n]*have no options", text), venue
    options_section = text.split("## Venue options", 1)[1]
    documented = set(re.findall(r"^\| `([a-z0-9-]+\.[a-z0-9_]+)` \|", options_section, re.M))
    assert documented == declared


# -- one list of health event names: core.schema.HealthKind ----------------------------------------

TOKEN = r"`([a-z][a-z0-9_]*)`"
_SEP = r"(?:\s*,\s*(?:and\s+|or\s+)?|\s*/\s*|\s+(?:and|or)\s+)"
#: two or more backticked names written as a list (``a``, ``b`` or ``c``; ``a``/``b``)
NAME_LIST = re.compile(rf"`[a-z][a-z0-9_]*`(?:{_SEP}`[a-z][a-z0-9_]*`)+")
DOCS = sorted(p.relative_to(ROOT).as_posix()
              for p in [*(ROOT / "docs").rglob("*.md"), ROOT / "README.md"])
# Owned and being corrected elsewhere; strict, so the marker must go once they are fixed.
FIXED_ELSEWHERE: set[str] = set()


def health_names_in(text: str, path: str) -> set[str]:
    """Backticked names a doc uses as health event names: every name in a list that holds at
    least two real ones (``disconnected``, ``gap`` or ``stale``), in a table whose first header
    is ``event``, or set in bold in a venue doc's health events (``**`gap`**``)."""
    names: set[str] = set()
    flat = re.sub(r"\s+", " ", text)
    for run in NAME_LIST.finditer(flat):
        tokens = re.findall(TOKEN, run.group(0))
        if len([t for t in tokens if t in HEALTH_KINDS]) >= 2:
            names.update(tokens)
    names.update(event_table(text))
    if path.startswith("docs/venues/"):
        names.update(re.findall(r"\*\*`([a-z][a-z0-9_]*)`\*\*", text))
    return names


def event_table(text: str) -> list[str]:
    """First-column names of every table whose header starts with ``| event |``."""
    names: list[str] = []
    in_table = False
    for line in text.splitlines():
        if re.match(r"^\|\s*event\s*\|", line):
            in_table = True
            continue
        if in_table and line.startswith("|"):
            names.extend(re.findall(rf"^\|\s*{TOKEN}\s*\|", line))
            continue
        in_table = False
    return names


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="lists stale/reconnecting"))
    if p in FIXED_ELSEWHERE else p for p in DOCS])
def test_docs_name_only_real_health_events(path: str) -> None:
    used = health_names_in((ROOT / path).read_text(), path)
    assert used - HEALTH_KINDS == set(), f"{path} names health events that do not exist"


def test_data_doc_lists_every_health_event_once() -> None:
    names = event_table((ROOT / "docs" / "data.md").read_text())
    assert sorted(names) == sorted(HEALTH_KINDS)
    assert len(names) == len(set(names))


def test_the_name_finder_sees_lists_tables_and_bold_names() -> None:
    doc = ("Breaks: `disconnected`, `reconnecting` or `gap`.\n"
           "| event | meaning |\n|---|---|\n| `stale` | old |\n\n"
           "* **`resync`**: a new snapshot\n"
           "Columns `ts_local`, `symbol` and `tob_source` are not events.\n")
    assert health_names_in(doc, "docs/venues/x.md") == {
        "disconnected", "reconnecting", "gap", "stale", "resync"}
    assert health_names_in(doc, "docs/data.md") == {"disconnected", "reconnecting", "gap",
                                                     "stale"}


def test_every_built_in_venue_has_a_venue_doc() -> None:
    titles = [p.read_text().splitlines()[0] for p in (ROOT / "docs" / "venues").glob("*.md")]
    _, registry = load_plugins()
    built_in = [n for n in registry.names() if registry.get(n).__module__.startswith("plugins.")]
    assert "bybit" in built_in
    for name in built_in:
        assert any(f"`{name}`" in title for title in titles), f"no docs/venues page for {name}"


# -- docs stand alone: nothing outside the repository, every path they name exists ----------------

FORBIDDEN = re.compile(r"\.\./shared|\bshared/(?:samples|specs)\b|\bthe spec\b|\bspec's\b"
                       r"|\bnotebooks?\b|(?<![\w:/.])/(?:work|home|Users|tmp|opt|root)/", re.I)
REPO_PATH = re.compile(r"(?<![\w/.-])((?:core|plugins|analysis|tests|examples|benchmarks|docs)"
                       r"/[\w./-]*\w)")
# (the two docs tests name the forbidden patterns themselves)
STANDALONE = sorted({*DOCS, "plugins/README.md",
                     *(p.relative_to(ROOT).as_posix()
                       for folder in ("core", "plugins", "examples", "tests", "benchmarks")
                       for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".toml")
                       and "__pycache__" not in p.parts)}
                    - {"tests/test_docs.py", "tests/analysis/test_docs.py"})


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="names files outside the repo"))
    if p in FIXED_ELSEWHERE else p for p in STANDALONE])
def test_docs_reference_nothing_outside_the_repository(path: str) -> None:
    text = (ROOT / path).read_text()
    assert [m.group(0) for m in FORBIDDEN.finditer(text)] == []
    if path.endswith(".md"):
        for link in re.findall(r"\]\(([^)#\s]+)", text):
            if not link.startswith(("http://", "https://")):
                assert (ROOT / path).parent.joinpath(link).exists(), f"{path}: broken link {link}"
        for name in REPO_PATH.findall(text):
            if "<" not in name and "*" not in name:
                assert (ROOT / name).exists(), f"{path} names {name}, which does not exist"
