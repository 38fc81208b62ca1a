"""Every session test runs on both websocket transports: trio-websocket (the default) and the
lean one (``--transport lean``, :mod:`core.wsclient`), which is offered only because the whole
suite passes on it too. Child processes get the choice through ``$BOOKWIRE_TRANSPORT``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.session import TRANSPORTS, current_transport, use_transport


@pytest.fixture(autouse=True, params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    before = current_transport()
    use_transport(request.param)
    monkeypatch.setenv("BOOKWIRE_TRANSPORT", request.param)
    yield request.param
    use_transport(before)
