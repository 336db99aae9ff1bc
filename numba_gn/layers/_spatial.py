"""Argument checks shared by the spatial layers (reshaping and pooling), with Keras's messages."""

from __future__ import annotations

import numbers
import sys
from typing import Any

import numpy as np

from numba_gn import _checks

__all__ = ["data_format", "int_tuple", "padding_pairs", "spatial_axes"]


def data_format(value: object) -> str:
    """Keras's `standardize_data_format`: None is "channels_last"; case is ignored."""
    if value is None:
        return "channels_last"
    text = value.lower() if isinstance(value, str) else None
    if text not in ("channels_first", "channels_last"):
        raise ValueError(
            "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
            f"Received: data_format={_checks.show(value)}"
        )
    return text


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def int_tuple(value: object, n: int, name: str, *, allow_zero: bool = False) -> tuple[int, ...]:
    """Keras's `standardize_tuple`: an int repeated `n` times, or `n` ints.

    Every entry must be positive (non-negative with `allow_zero`) and at most
    `sys.maxsize`; bools and non-integers are refused. Always a `ValueError`, as Keras.
    """
    message = f"The `{name}` argument must be a tuple of {n} integers. Received {name}="
    if _is_int(value):
        items: tuple[Any, ...] = (value,) * n
    elif isinstance(value, (list, tuple)):
        items = tuple(value)
    else:
        raise ValueError(message + _checks.show(value))
    if len(items) != n or not all(_is_int(v) for v in items):
        raise ValueError(message + _checks.show(value))
    low = 0 if allow_zero else 1
    bad = [int(v) for v in items if not low <= v <= sys.maxsize]
    if bad:
        requirement = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{message}{_checks.show(value)}, including values {bad} that do not satisfy "
            f"`value {requirement}`"
        )
    return tuple(int(v) for v in items)


def padding_pairs(value: object, name: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """`((top, bottom), (left, right))` from an int, two ints or two pairs (Keras's forms).

    Used by `ZeroPadding2D(padding=...)` and `Cropping2D(cropping=...)`; every entry must
    be a non-negative int.
    """
    if _is_int(value):
        if not 0 <= value <= sys.maxsize:  # type: ignore[operator]
            raise ValueError(f"`{name}` cannot be negative. Received: {name}={value}.")
        v = int(value)  # type: ignore[arg-type]
        return ((v, v), (v, v))
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(
                f"`{name}` should have two elements. Received: {name}={_checks.show(value)}."
            )
        first = int_tuple(value[0], 2, f"1st entry of {name}", allow_zero=True)
        second = int_tuple(value[1], 2, f"2nd entry of {name}", allow_zero=True)
        return (first, second)  # type: ignore[return-value]
    raise ValueError(
        f"`{name}` should be either an int, a tuple of 2 ints "
        f"(symmetric_height_{name}, symmetric_width_{name}), or a tuple of 2 tuples of 2 ints "
        f"((top_{name}, bottom_{name}), (left_{name}, right_{name})). "
        f"Received: {name}={_checks.show(value)}."
    )


def spatial_axes(data_format: str, rank: int) -> tuple[int, ...]:
    """The spatial axes of a `rank`-D input in `data_format` (batch axis first)."""
    first = 1 if data_format == "channels_last" else 2
    return tuple(range(first, first + rank))
