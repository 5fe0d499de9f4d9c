"""Kubernetes resource quantities (``resource.Quantity``) parsed to exact numbers.

``parse("1536Gi") == 1649267441664``, ``parse("500m") == Fraction(1, 2)``. Fractions keep milli-CPU exact.
"""

from __future__ import annotations

import re
from fractions import Fraction

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_RE = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei)|([numkMGTPE]?)|[eE]([+-]?\d+))$")
GI = 2**30


class QuantityError(ValueError):
    pass


def parse(value: str | int | float) -> Fraction:
    """The exact value of a quantity; raises QuantityError naming the bad input."""
    if isinstance(value, int | float):
        return Fraction(value)
    m = _RE.match(value.strip())
    if not m:
        raise QuantityError(f"{value!r} is not a Kubernetes quantity (e.g. 4, 500m, 16Gi)")
    number = Fraction(m.group(1))
    if m.group(2):
        return number * _BINARY[m.group(2)]
    if m.group(4) is not None:
        return number * Fraction(10) ** int(m.group(4))
    return number * _DECIMAL[m.group(3) or ""]


def cpu_cores(value: str | int | float) -> Fraction:
    return parse(value)


def to_cpu_string(cores: Fraction) -> str:
    """Canonical CPU quantity: whole cores as an integer, otherwise milli-cores."""
    if cores.denominator == 1:
        return str(cores.numerator)
    return f"{int(cores * 1000)}m"


def to_memory_string(num_bytes: int | Fraction) -> str:
    """Canonical memory quantity: the largest binary suffix that divides exactly."""
    n = int(num_bytes)
    for suffix, factor in sorted(_BINARY.items(), key=lambda kv: -kv[1]):
        if n and n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)
