"""Venue options (``--opt VENUE.KEY=VALUE``) declared as data, so they can be checked up front.

A venue protocol lists its options in the class attribute
:attr:`core.protocol.ExchangeProtocol.options`, a mapping of key -> :class:`OptionSpec`::

    options = {"l2_depth": OptionSpec(default="50", choices=("50", "200", "1000"),
                                      help="orderbook.N topic of the l2 channel")}

The command line checks every ``--opt`` against these specs before anything connects (an unknown
key or a bad value is a usage error naming the valid ones, :func:`option_problems`); the protocol
reads its values with :meth:`core.protocol.ExchangeProtocol.option`, which applies the same check
(:func:`option_value`), so a protocol built directly (tests, replay) is held to the same rules.

Pure: no I/O, no trio.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: a validator returns None for a valid value, else what a valid value looks like
Validator = Callable[[str], str | None]


@dataclass(frozen=True)
class OptionSpec:
    """One venue option: its default, its valid values and a one-line description.

    Either ``choices`` (the complete list of valid values) or ``validate`` (a function returning
    ``None`` for a valid value, else a description of the valid ones) states what is allowed; with
    neither, any value is accepted.
    """

    default: str
    choices: tuple[str, ...] = ()
    validate: Validator | None = None
    help: str = ""

    def problem(self, value: str) -> str | None:
        """Why ``value`` is not valid (text naming the valid values), or None."""
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        if self.validate is not None:
            return self.validate(value)
        return None

    def valid_values(self) -> str:
        """The valid values for messages and docs: ``50, 200, 1000`` or the help text."""
        return ", ".join(self.choices) if self.choices else (self.help or "any value")


def option_value(venue: str, specs: Mapping[str, OptionSpec], options: Mapping[str, str],
                 key: str) -> str:
    """The value of a declared option (its default when not given); ValueError when invalid."""
    spec = specs[key]  # a KeyError here is a plugin bug: it reads an option it did not declare
    value = options.get(key, spec.default)
    problem = spec.problem(value)
    if problem is not None:
        raise ValueError(f"{venue} {key} {problem}, not {value!r}")
    return value


def option_problems(venue: str, specs: Mapping[str, OptionSpec],
                    options: Mapping[str, str]) -> list[str]:
    """One message per unknown key or invalid value, each naming what is valid."""
    problems: list[str] = []
    for key, value in options.items():
        spec = specs.get(key)
        if spec is None:
            valid = (f"valid keys: {', '.join(sorted(specs))}" if specs
                     else f"{venue} has no options")
            problems.append(f"--opt {venue}.{key}={value}: unknown option {key!r}; {valid}")
            continue
        problem = spec.problem(value)
        if problem is not None:
            problems.append(f"--opt {venue}.{key}={value}: {venue} {key} {problem}")
    return problems


__all__ = ["OptionSpec", "Validator", "option_problems", "option_value"]
