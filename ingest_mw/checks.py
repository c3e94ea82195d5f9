"""Checks of constructor options, written once, with messages that say what to give.

Each returns the value it checked or raises ``ValueError`` naming the option
and the value given (``max_requests = 0: give a positive whole number``), so
that a wrong value fails when the object is made, not on the first request.
``bool`` is refused where a number is asked for, although it is an ``int``.
"""

from __future__ import annotations

import math

__all__ = ["seconds", "whole_number"]


def whole_number(name: str, value: object, *, minimum: int = 1, unit: str = "") -> int:
    """``value``, a whole number of at least ``minimum`` (1 or 0); ``unit``
    (``" of seconds"``) is said after "whole number" in the message."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        what = f"a positive whole number{unit}" if minimum == 1 else f"a whole number{unit}, {minimum} or more"
        raise ValueError(f"{name} = {value!r}: give {what}")
    return value


def seconds(name: str, value: object) -> float:
    """``value``, a positive, finite number of seconds, as a float."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
        raise ValueError(f"{name} = {value!r}: give a positive number of seconds")
    return float(value)
