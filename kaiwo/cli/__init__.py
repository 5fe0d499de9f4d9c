"""The ``kaiwo`` command for AI scientists."""
