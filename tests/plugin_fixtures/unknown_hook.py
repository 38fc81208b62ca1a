"""A plugin implementing a hook that has no specification."""

from core import hookimpl


@hookimpl
def bookwire_register_sinks(register: object) -> None:
    pass
