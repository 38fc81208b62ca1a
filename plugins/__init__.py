"""Built-in venue plugins. Each sub-package is one venue, registered through the ``bookwire``
entry-point group exactly as a third-party plugin would be (see ``plugins/README.md``)."""
