"""The shared TLS contexts verify certificates and host names, and are built once per process."""

from __future__ import annotations

import ssl

from core import tls


def test_both_contexts_verify_and_are_shared() -> None:
    for make in (tls.websocket_context, tls.rest_context):
        ctx = make()
        assert ctx is make()
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_the_rest_context_trusts_the_certifi_bundle() -> None:
    assert tls.rest_context().cert_store_stats()["x509_ca"] > 100
