"""The documentation agrees with the code: every venue option is in docs/cli.md with its values
and default."""

from __future__ import annotations

import re
from pathlib import Path

from core.plugins import load_plugins

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
