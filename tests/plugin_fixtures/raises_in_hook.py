"""A plugin whose registration hook raises."""

from core import hookimpl


@hookimpl
def bookwire_register_exchanges(register: object) -> None:
    raise KeyError("missing configuration")
