"""Taker fees per venue for the live spread analyzer: the documented defaults and user overrides.

The defaults live in ``analysis/fees.toml`` next to this module, one table per venue plugin name,
each with the rate, the tier, a date and the public page it was read from (the file's header says
what every field means). A user replaces or extends them two ways, applied in this order:

* a file of the same shape (``--fees FILE``): fields given for a venue replace the default ones;
  a venue the defaults do not know needs at least ``taker``;
* single rates in basis points (``--taker-fee-bps bybit=4``), on top of everything else.

Rates are fractions of notional everywhere in code (0.00055 = 5.5 bps); only the command-line
form is in basis points, because that is how a quant reads a fee.

Must not: fetch anything; a fee is what the files or the user say, never a guess.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

DEFAULT_FEES_PATH: Final = Path(__file__).with_name("fees.toml")
MAX_FEE: Final = 0.01  # 100 bps: anything above is a typo (a percent given as a fraction)
DATE_KINDS: Final = ("published", "effective", "checked", "user")
_FIELDS: Final = ("taker", "maker", "tier", "date", "date_kind", "page", "url", "note")


class FeeConfigError(ValueError):
    """A fee file or override that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class VenueFee:
    """One venue's fee entry: rates as fractions, and where they come from."""

    venue: str
    taker: float
    maker: float | None = None
    tier: str = ""
    date: str = ""
    date_kind: str = ""
    page: str = ""
    url: str = ""
    note: str = ""

    @property
    def taker_bps(self) -> float:
        return self.taker * 1e4

    def describe(self) -> str:
        """One line for logs and docs: rate, tier, date and source."""
        where = ", ".join(p for p in (self.tier, f"{self.date_kind} {self.date}".strip(),
                                      self.page, self.url) if p)
        return f"{self.venue}: taker {self.taker_bps:g} bps ({where})"


def _check_rate(venue: str, name: str, value: Any, origin: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FeeConfigError(f"{origin}: [{venue}] {name} must be a number, not {value!r}")
    rate = float(value)
    if not -MAX_FEE <= rate <= MAX_FEE or (name == "taker" and rate < 0):
        raise FeeConfigError(f"{origin}: [{venue}] {name} = {value!r} is not a plausible fee "
                             f"rate (a fraction: 0.00055 means 0.055 %)")
    return rate


def _entry(venue: str, fields: Mapping[str, Any], base: VenueFee | None,
           origin: str) -> VenueFee:
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise FeeConfigError(f"{origin}: [{venue}] unknown fields {unknown}; known: "
                             f"{', '.join(_FIELDS)}")
    if base is None and "taker" not in fields:
        raise FeeConfigError(f"{origin}: [{venue}] needs a taker rate")
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if name in ("taker", "maker"):
            values[name] = _check_rate(venue, name, value, origin)
        elif not isinstance(value, str):
            raise FeeConfigError(f"{origin}: [{venue}] {name} must be a string")
        else:
            values[name] = value
    if values.get("date_kind", "published") not in DATE_KINDS:
        raise FeeConfigError(f"{origin}: [{venue}] date_kind must be one of "
                             f"{', '.join(DATE_KINDS)}")
    return replace(base, **values) if base is not None else VenueFee(venue=venue, **values)


def parse_fee_table(doc: Mapping[str, Any], origin: str,
                    base: Mapping[str, VenueFee] | None = None) -> dict[str, VenueFee]:
    """A parsed TOML document (venue -> fields) merged onto ``base``."""
    out = dict(base or {})
    for venue, fields in doc.items():
        if not isinstance(fields, Mapping):
            raise FeeConfigError(f"{origin}: {venue!r} must be a table ([{venue}])")
        out[venue] = _entry(venue, fields, out.get(venue), origin)
    return out


def load_fee_table(path: Path | None = None,
                   base: Mapping[str, VenueFee] | None = None) -> dict[str, VenueFee]:
    """Read a fee file (default: the shipped defaults) and merge it onto ``base``."""
    path = path or DEFAULT_FEES_PATH
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FeeConfigError(f"cannot read fee file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise FeeConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_fee_table(doc, str(path), base)


def parse_fee_overrides(items: Iterable[str]) -> dict[str, float]:
    """``["bybit=4", "htx=6"]`` (basis points) -> ``{"bybit": 0.0004, "htx": 0.0006}``."""
    out: dict[str, float] = {}
    for item in items:
        venue, sep, text = item.partition("=")
        venue = venue.strip()
        try:
            bps = float(text)
        except ValueError:
            bps = float("nan")
        if not sep or not venue or not 0 <= bps <= MAX_FEE * 1e4:
            raise FeeConfigError(f"--taker-fee-bps {item!r}: expected VENUE=BPS with BPS "
                                 f"between 0 and {MAX_FEE * 1e4:g}, e.g. bybit=5.5")
        out[venue] = bps / 1e4
    return out


def resolve_fees(user_file: Path | None = None,
                 overrides: Mapping[str, float] | None = None) -> dict[str, VenueFee]:
    """Defaults, then the user's file, then single overrides (marked ``date_kind = "user"``)."""
    table = load_fee_table()
    if user_file is not None:
        table = load_fee_table(user_file, table)
    for venue, rate in (overrides or {}).items():
        base = table.get(venue)
        source = dict(tier="", date="", date_kind="user", page="command line", url="", note="")
        table[venue] = (replace(base, taker=rate, **source) if base is not None
                        else VenueFee(venue=venue, taker=rate, **source))
    return table


def taker_rates(table: Mapping[str, VenueFee]) -> dict[str, float]:
    """venue -> taker rate (fraction), what :class:`analysis.spread_live.SpreadConfig` takes."""
    return {venue: fee.taker for venue, fee in table.items()}


__all__ = ["DEFAULT_FEES_PATH", "FeeConfigError", "VenueFee", "load_fee_table",
           "parse_fee_overrides", "parse_fee_table", "resolve_fees", "taker_rates"]
