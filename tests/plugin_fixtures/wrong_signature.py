"""A plugin whose hook asks for an argument the specification does not have."""

from core import hookimpl


@hookimpl
def bookwire_register_exchanges(register: object, settings: object) -> None:
    pass
