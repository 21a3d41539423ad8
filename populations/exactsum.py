"""Exact float sums kept as integers, so a running total can equal `math.fsum` at every step.

Every finite double is an integer multiple of ``2**-1074`` (the smallest subnormal). A sum of
doubles is therefore exactly an integer number of these *units*, and integer addition and
subtraction keep it exact in any order. CPython rounds ``int / int`` correctly (half to even),
the same rounding `math.fsum` applies to the exact sum, so ``from_units(sum(map(to_units, xs)))``
equals ``math.fsum(xs)`` bit for bit, including the sign of a zero total (both give ``+0.0``).

Values with no exact form here (inf, nan, and magnitudes of ``2**1000`` or more, where `fsum` may
overflow in between) make `to_units` return None; callers then fall back to `math.fsum`.
"""

from __future__ import annotations

import math

_SCALE_BITS = 1074
_DENOMINATOR = 1 << _SCALE_BITS
_LIMIT = 2.0**1000


def to_units(x: float) -> int | None:
    """`x` as an exact integer count of ``2**-1074``; None if not finite or ``|x| >= 2**1000``."""
    if not math.isfinite(x) or abs(x) >= _LIMIT:
        return None
    numerator, denominator = x.as_integer_ratio()
    return numerator << (_SCALE_BITS + 1 - denominator.bit_length())


def from_units(units: int) -> float:
    """The double nearest to ``units * 2**-1074`` (ties to even), as `math.fsum` rounds."""
    return units / _DENOMINATOR
