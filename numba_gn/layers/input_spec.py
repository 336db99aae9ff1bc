"""`InputSpec`: the input rank and fixed dimensions a built layer accepts (after Keras)."""

from __future__ import annotations

import numbers
import sys
from collections.abc import Mapping, Sequence

from numba_gn._checks import show

__all__ = ["InputSpec", "missing_batch_axis_hint"]


class InputSpec:
    """Constraints on the shape of a layer's input, checked on every call.

    Parameters
    ----------
    ndim : int, optional
        Exact rank required.
    min_ndim : int, optional
        Minimum rank required.
    axes : mapping of int to int, optional
        `{axis: size}` for dimensions that must have a given size; negative axes count from
        the end (`{-1: 8}`: eight channels last). A size of None leaves the axis free.

    Notes
    -----
    Ranks and sizes are non-negative ints (bools rejected); anything else raises a
    `TypeError`/`ValueError` naming the argument.
    """

    __slots__ = ("ndim", "min_ndim", "axes")

    def __init__(
        self,
        ndim: int | None = None,
        min_ndim: int | None = None,
        axes: Mapping[int, int] | None = None,
    ) -> None:
        self.ndim = _count(ndim, "ndim")
        self.min_ndim = _count(min_ndim, "min_ndim")
        if axes is not None and not isinstance(axes, Mapping):
            raise TypeError(f"`axes` must be a mapping {{axis: size}}, got axes={show(axes)}.")
        checked = {}
        for a, d in (axes or {}).items():
            if not _is_int(a):
                raise TypeError(f"`axes` keys must be ints (axes), got axes={show(axes)}.")
            if abs(a) > sys.maxsize:  # type: ignore[arg-type]
                raise ValueError(f"`axes` keys must be axes of an array, got axes={show(axes)}.")
            checked[int(a)] = _count(d, "axes")  # type: ignore[arg-type]
        self.axes = checked

    def expected_shape(self) -> str:
        """A readable expected shape, `None` for free dimensions: `(None, None, 8)`."""
        if self.ndim is None:
            fixed = ", ".join(f"axis {a}: {d}" for a, d in sorted(self.axes.items()))
            rank = f"rank >= {self.min_ndim}" if self.min_ndim is not None else "any rank"
            return f"({rank}{', ' + fixed if fixed else ''})"
        dims: list[int | None] = [None] * self.ndim
        for a, d in self.axes.items():
            dims[a] = d
        return str(tuple(dims))

    def check(self, shape: Sequence[int | None], layer_name: str) -> None:
        """Raise `ValueError` naming the expected shape when `shape` does not fit."""
        shape = tuple(shape)
        rank = len(shape)
        problem = None
        if self.ndim is not None and rank != self.ndim:
            problem = f"expected rank {self.ndim}, got rank {rank}"
        elif self.min_ndim is not None and rank < self.min_ndim:
            problem = f"expected rank >= {self.min_ndim}, got rank {rank}"
        else:
            for a, d in sorted(self.axes.items()):
                if not -rank <= a < rank:
                    problem = f"expected an axis {a}, but the input has rank {rank}"
                    break
                if shape[a] is not None and shape[a] != d:
                    problem = f"axis {a} must have size {d}, got {shape[a]}"
                    break
        if problem is not None:
            expected_rank = self.ndim if self.ndim is not None else self.min_ndim
            hint = missing_batch_axis_hint(rank, expected_rank)
            raise ValueError(
                f'Input of layer "{layer_name}" is incompatible with the layer: it was built '
                f"for inputs of shape {self.expected_shape()} but received an input of shape "
                f"{shape} ({problem}).{hint}"
            )

    def __repr__(self) -> str:
        return f"InputSpec(ndim={self.ndim}, min_ndim={self.min_ndim}, axes={self.axes})"


def missing_batch_axis_hint(rank: int, expected_rank: int | None) -> str:
    """A sentence for a rank error whose input is one axis short, else `""`.

    Layers take a batch of samples; one sample (a `(H, W, C)` image where `(N, H, W, C)` is
    expected) is the usual way to be exactly one axis short, so the message says how to add it.
    """
    if expected_rank is None or rank != expected_rank - 1:
        return ""
    return (
        " The input looks like it is missing its batch axis: to pass a single sample, add one "
        "with `x[None]` (or `np.expand_dims(x, 0)`)."
    )


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _count(value: object, name: str) -> int | None:
    """None or a non-negative int (a rank or a dimension size)."""
    if value is None:
        return None
    if not _is_int(value):
        raise TypeError(f"`{name}` must be a non-negative int or None, got {name}={show(value)}.")
    if not 0 <= value <= sys.maxsize:  # type: ignore[operator]
        raise ValueError(f"`{name}` must be a non-negative int or None, got {name}={show(value)}.")
    return int(value)  # type: ignore[arg-type]
