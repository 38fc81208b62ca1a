"""A working third-party plugin, to show that it still loads next to the broken ones."""

from collections.abc import Callable

from core import hookimpl
from plugins.bybit.protocol import BybitProtocol


class Good(BybitProtocol):
    name = "good-venue"


@hookimpl
def bookwire_register_exchanges(register: Callable[[object], None]) -> None:
    register(Good)
