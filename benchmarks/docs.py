"""Write a benchmark's printed tables into ``docs/performance.md``, between the markers
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` (added at the end when missing)."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def replace_section(name: str, text: str, doc: Path = DOC) -> None:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    body = doc.read_text() if doc.exists() else "# Performance\n"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in body and end in body:
        before, rest = body.split(start, 1)
        _, after = rest.split(end, 1)
        body = before + block + after
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(body)
