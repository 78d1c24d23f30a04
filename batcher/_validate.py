"""Argument checks shared by the public constructors.

Each check raises TypeError for a wrong type and ValueError for a wrong
value, with a message that names the argument and shows the value.
"""

from __future__ import annotations

import math
import threading
from typing import Any

__all__ = ["check_flag", "check_int", "check_seconds"]


def check_int(name: str, value: Any, *, minimum: int = 0) -> int:
    """Return ``value`` if it is an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return value


def check_seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if it is a finite number of seconds above 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    # Longer waits overflow threading's timeouts.
    if math.isnan(seconds) or seconds > threading.TIMEOUT_MAX:
        raise ValueError(
            f"{name} must be a finite number of seconds up to "
            f"{threading.TIMEOUT_MAX:.0f}, got {value!r}"
        )
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "more than 0"
        raise ValueError(f"{name} must be {bound} seconds, got {value!r}")
    return seconds


def check_flag(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value
