"""Deliberately broken third-party plugins, loaded through fake entry points by
tests/test_plugins.py (each module is one way a plugin can fail to load)."""
