"""A plugin whose import fails."""

raise RuntimeError("this plugin is broken at import time")
