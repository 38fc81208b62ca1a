"""A plugin that registers something that is not a venue protocol, next to a valid one: the
plugin is skipped as a whole."""

from collections.abc import Callable

from core import hookimpl
from plugins.bybit.protocol import BybitProtocol


class Extra(BybitProtocol):
    name = "extra-venue"


@hookimpl
def bookwire_register_exchanges(register: Callable[[object], None]) -> None:
    register(Extra)
    register(dict)
