"""The analysis docs stand alone and name health events exactly as the code does."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from analysis.load import BREAK_EVENTS, QUOTE_BREAKS
from core.schema import SYMBOL_BREAKS, TRUST_EVENTS, VENUE_BREAKS, HealthKind
from plugins.coinbase.protocol import TRADE_GAP

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "analysis.md", ROOT / "docs" / "spreads.md"]
HEALTH = {v for k, v in vars(HealthKind).items() if k.isupper()} | {TRADE_GAP}
NOT_EVENTS = {"stale", "reconnecting", "reconnected", "resync", "reconnect", "stale_quote"}
OUTSIDE = re.compile(r"\.\./shared|/work/|\bthe spec\b|\bspec's\b|notebook|§", re.IGNORECASE)


def _ticked(text: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", text))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_health_names_are_the_codes(doc: Path) -> None:
    ticked = _ticked(doc.read_text())
    assert not ticked & NOT_EVENTS
    assert ticked >= QUOTE_BREAKS  # every event that removes a quote is named


def test_analysis_doc_names_every_break_and_trust_event() -> None:
    ticked = _ticked(DOCS[0].read_text())
    assert BREAK_EVENTS | TRUST_EVENTS | SYMBOL_BREAKS | VENUE_BREAKS | {TRADE_GAP} <= ticked
    assert ticked & HEALTH >= {"trade_gap", "decode_error"}


def _module_docstrings() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "analysis").glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        out.append((path.name, doc or ""))
    return out


@pytest.mark.parametrize(("name", "doc"), _module_docstrings(), ids=lambda x: str(x)[:24])
def test_module_docstrings_stand_alone(name: str, doc: str) -> None:
    assert doc or name == "__init__.py", f"{name} has no module docstring"
    assert not OUTSIDE.search(doc), (name, OUTSIDE.search(doc))


@pytest.mark.parametrize("doc", [*DOCS, ROOT / "examples" / "make_demo_data.py"],
                         ids=lambda p: p.name)
def test_docs_stand_alone(doc: Path) -> None:
    assert not OUTSIDE.search(doc.read_text())
