"""Pure functions: a custom resource plus cluster facts in, desired child objects (dicts) out.

Nothing in this package does I/O or reads a clock; every function is deterministic and unit-tested with
golden files.
"""
