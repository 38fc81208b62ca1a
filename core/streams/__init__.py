"""Normalized events on Redis Streams: a sink that publishes them (``--sink redis://...``), a
source that reads them back with a consumer group (``--from-redis``), and the wire format both
share (:mod:`core.streams.codec`, documented in ``docs/data.md``)."""
