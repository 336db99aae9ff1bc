"""Checks of scalar constructor and call arguments, shared by every public entry point.

Every failure is a `ValueError` (a number out of range, not finite, or too large for a float)
or a `TypeError` (not a number at all, or a bool where a number is meant) whose message names
the argument, so a bad hyper-parameter is reported where it is given rather than as a crash deep
inside a computation (`float(10**400)` overflows, `nan` compares false with everything).

The rules, by kind of argument:

* real numbers (`real`): `int`/`float`/NumPy reals, never bools; finite (`nan`,
  `inf` and ints beyond the float range are rejected); optional bounds;
* counts (`integer`): ints, never bools, at most `sys.maxsize` (no array dimension can
  be larger);
* flags (`boolean`): `True`/`False` (NumPy bools too), not truthy objects;
* seeds (`seed`): `None` or any int;
* axes (`axis`, `int_sequence`): ints that can index some NumPy array's
  dimensions; the exact range needs the input's rank and is checked where that is known.

Some Keras entry points raise `ValueError` for a wrong type; callers matching them pass
`type_error=ValueError`.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_NDIM", "axis", "boolean", "int_sequence", "integer", "real", "seed", "show"]

# Ints with more bits than this are shown by size: repr() of a 10**5000 would itself raise
# (Python limits int-to-str conversions), and 400 digits make an unreadable message anyway.
_SHOW_MAX_BITS = 128

#: NumPy's limit on the number of dimensions of an array (`NPY_MAXDIMS` in NumPy 2).
MAX_NDIM = 64


def show(value: object) -> str:
    """A short, safe `repr` of an argument value for an error message."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        v = int(value)
        if v.bit_length() > _SHOW_MAX_BITS:
            digits = int(v.bit_length() * math.log10(2)) + 1
            return f"{'-' if v < 0 else ''}<an int of about {digits} digits>"
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real problem
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 200 else text[:197] + "..."


def _is_bool(value: object) -> bool:
    return isinstance(value, (bool, np.bool_))


def real(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    type_error: type[Exception] = TypeError,
) -> float:
    """`value` as a finite float within the given bounds, else an error naming `name`.

    `low`/`high` are inclusive unless `low_open`/`high_open`.
    """
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise type_error(f"`{name}` must be a real number, got {name}={show(value)}.")
    try:
        v = float(value)
    except OverflowError:  # an int or Fraction beyond the float range
        v = math.inf
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be a finite number, got {name}={show(value)}.")
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if too_low or too_high:
        raise ValueError(
            f"`{name}` must be in {_interval(low, high, low_open, high_open)}, "
            f"got {name}={show(value)}."
        )
    return v


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
    hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
    return f"{lo}, {hi}"


def integer(
    value: object,
    name: str,
    *,
    low: int | None = None,
    high: int = sys.maxsize,
    type_error: type[Exception] = TypeError,
) -> int:
    """`value` as a Python int in `[low, high]`, else an error naming `name`."""
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise type_error(f"`{name}` must be an integer, got {name}={show(value)}.")
    v = int(value)
    if (low is not None and v < low) or v > high:
        lo = "-inf" if low is None else str(low)
        raise ValueError(
            f"`{name}` must be an integer in [{lo}, {high}], got {name}={show(value)}."
        )
    return v


def boolean(value: object, name: str) -> bool:
    """`value` as a bool: only `True`/`False` (or NumPy bools) are accepted."""
    if not _is_bool(value):
        raise TypeError(f"`{name}` must be a bool, got {name}={show(value)}.")
    return bool(value)


def seed(
    value: object, name: str = "seed", *, type_error: type[Exception] = ValueError
) -> int | None:
    """`None` or an int (any size: generators reduce it modulo 2**64), as a Python int.

    A wrong type is a `ValueError` by default, as Keras raises for seeds.
    """
    if value is None:
        return None
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise type_error(f"`{name}` must be an integer or None. Received: {name}={show(value)}")
    return int(value)


def axis(value: object, name: str = "axis") -> int:
    """An int that can be an axis of some NumPy array: in `[-MAX_NDIM, MAX_NDIM - 1]`.

    The exact range needs the input's rank, known only at the call; this bound keeps a huge
    int from reaching NumPy, which would fail with an `OverflowError` naming nothing.
    """
    return integer(value, name, low=-MAX_NDIM, high=MAX_NDIM - 1)


def int_sequence(value: object, name: str, *, allow_int: bool = True) -> int | tuple[int, ...]:
    """An axis-like argument: an int, or a non-empty list/tuple of ints, each a possible axis.

    Each entry is in `[-MAX_NDIM, MAX_NDIM - 1]` (see `axis`).
    """
    if allow_int and isinstance(value, numbers.Integral) and not _is_bool(value):
        return axis(value, name)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) > 0:
        if all(isinstance(a, numbers.Integral) and not _is_bool(a) for a in value):
            if any(not -MAX_NDIM <= a < MAX_NDIM for a in value):  # type: ignore[operator]
                raise ValueError(
                    f"`{name}` entries must be axes in [{-MAX_NDIM}, {MAX_NDIM - 1}], "
                    f"got {name}={show(value)}."
                )
            return tuple(int(a) for a in value)  # type: ignore[arg-type]
    what = "an int or a non-empty list/tuple of ints" if allow_int else "a list/tuple of ints"
    raise TypeError(f"`{name}` must be {what}, got {name}={show(value)}.")
