"""`Variable`: a mutable, named Tensor holding a model weight, after `keras.Variable`.

A Variable is a `Tensor`, so it goes into any op directly. Inside a
`GradientTape` a trainable Variable is watched automatically when an op
uses it. `assign` and friends write into the Variable's own buffer, so the object (and any
reference held by a layer or optimizer) stays the same across updates.
"""

from __future__ import annotations

import itertools
import numbers
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from numba_gn._checks import show
from numba_gn.autograd.ops_shape import Copy
from numba_gn.autograd.tensor import Tensor
from numba_gn.params._scope import current_path

__all__ = ["Variable"]

_names = itertools.count()


def _auto_name() -> str:
    """Unique default names, as Keras: "variable", then "variable_1", "variable_2", ..."""
    n = next(_names)
    return "variable" if n == 0 else f"variable_{n}"


def _standardize_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"Invalid `shape` for Variable: {show(shape)}") from None
    if any(
        isinstance(d, bool) or not isinstance(d, numbers.Integral) or not 0 <= d <= sys.maxsize
        for d in dims
    ):
        raise ValueError(f"Variable `shape` must contain non-negative ints, got {show(shape)}")
    return tuple(int(d) for d in dims)


def _default_dtype(value: Any) -> np.dtype:
    """An array's own dtype; Python numbers and lists of floats default to float32 (floatx)."""
    if hasattr(value, "dtype"):
        return np.dtype(value.dtype)
    inferred = np.asarray(value).dtype
    return np.dtype(np.float32) if inferred.kind == "f" else inferred


class Variable(Tensor):
    """A named, assignable Tensor: the weights of layers.

    Parameters
    ----------
    initializer : array-like, callable, str or dict
        An array-like (a Tensor, ndarray, list, number) gives the initial value, and the shape
        and dtype unless `dtype` is given. A callable `(shape, dtype) -> ndarray` (such as
        an initializer instance) needs `shape`. A name or config dict is resolved with
        `numba_gn.params.initializers.get`.
    shape : int or tuple of ints, optional
        Required with a callable initializer; must match an array-like one.
    dtype : dtype, optional
        Default float32 for callable initializers, the value's dtype for array-likes.
    trainable : bool, default True
        Trainable Variables are watched automatically by gradient tapes (a bool: anything else
        is a `ValueError`, as for layers).
    name : str, optional
        Default "variable", "variable_1", ...; must not contain "/".
        The Variable's `path` is this name inside the scopes of the layers building or
        calling when it is created (`"block/dense/kernel"`), as in Keras.
    regularizer, constraint : optional
        Identifiers resolved with `numba_gn.params.regularizers` /
        `numba_gn.params.constraints` `get`; stored for layers and optimizers to use.

    Attributes
    ----------
    initializer
        The resolved callable initializer (None for an array-like initial value, as in Keras).
    """

    __slots__ = ("name", "_path", "_trainable", "initializer", "regularizer", "constraint")

    _is_variable = True

    def __init__(
        self,
        initializer: ArrayLike | Callable[..., Any] | str | dict,
        shape: int | Sequence[int] | None = None,
        dtype: DTypeLike | None = None,
        trainable: bool = True,
        name: str | None = None,
        regularizer: Any = None,
        constraint: Any = None,
    ) -> None:
        if not isinstance(trainable, (bool, np.bool_)):
            raise ValueError(
                f"Expected `trainable` to be a boolean. Received: trainable={show(trainable)} "
                f"(of type {type(trainable).__name__})"
            )
        name = _auto_name() if name is None else name
        if not isinstance(name, str) or "/" in name:
            raise ValueError(
                "Argument `name` must be a string and cannot contain character `/`. "
                f"Received: name={name!r}"
            )
        if isinstance(initializer, (str, dict)):
            from numba_gn.params import initializers

            initializer = initializers.get(initializer)
        if callable(initializer):
            if shape is None:
                raise ValueError(
                    "When creating a Variable from an initializer, the `shape` argument should "
                    f"be specified. Received: initializer={initializer!r} and shape={shape}"
                )
            dims = _standardize_shape(shape)
            dt = np.dtype(np.float32 if dtype is None else dtype)
            value = np.asarray(initializer(dims, dt))
            if value.shape != dims:
                raise ValueError(
                    f"Initializer {initializer!r} returned shape {value.shape}, expected {dims}."
                )
            self.initializer = initializer
        else:
            raw = initializer.data if isinstance(initializer, Tensor) else initializer
            dt = _default_dtype(raw) if dtype is None else np.dtype(dtype)
            value = np.asarray(raw, dtype=dt)
            if shape is not None and _standardize_shape(shape) != value.shape:
                raise ValueError(
                    f"Variable shape {_standardize_shape(shape)} does not match the shape "
                    f"{value.shape} of its initial value."
                )
            self.initializer = None
        # The Variable owns a writeable C-contiguous buffer, since assign() writes into it;
        # an initializer's fresh array is kept as is, a caller's array is always copied.
        if self.initializer is not None:
            self.data = np.require(value, dtype=dt, requirements=["C", "W", "O"])
        else:
            self.data = np.array(value, dtype=dt, order="C", copy=True)
        self.name = name
        parent = current_path()
        self._path = f"{parent}/{name}" if parent else name
        self._trainable = bool(trainable)
        self.regularizer = _resolve_regularizer(regularizer)
        self.constraint = _resolve_constraint(constraint)

    # -- state -----------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The name within the layers that created it: `"block/dense/kernel"` (Keras's path).

        A Variable created outside any layer's `build` or `call` has its name as path.
        """
        return self._path

    @property
    def trainable(self) -> bool:
        """Whether optimizers update it and tapes watch it automatically."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)

    @property
    def value(self) -> Tensor:
        """A snapshot of the current value as a Tensor (a copy; differentiable on a tape)."""
        return Copy.apply(self)

    def numpy(self) -> np.ndarray:
        """A copy of the current value (as Keras: later assigns do not change it)."""
        return self.data.copy()

    # -- updates, in place -------------------------------------------------------------------------

    def assign(self, value: ArrayLike | Tensor) -> Variable:
        """Set the value (same shape; cast to this Variable's dtype); returns the Variable."""
        arr = np.asarray(value.data if isinstance(value, Tensor) else value)
        if arr.shape != self.data.shape:
            raise ValueError(
                "The shape of the target variable and the shape of the target value in "
                f"`variable.assign(value)` must match. variable.shape={self.data.shape}, "
                f"Received: value.shape={arr.shape}. Target variable: {self.name}"
            )
        np.copyto(self.data, arr, casting="unsafe")
        return self

    def assign_add(self, delta: ArrayLike | Tensor) -> Variable:
        """Add `delta` (broadcastable to the Variable's shape) in place; returns the Variable."""
        return self._update(np.add, delta, "assign_add")

    def assign_sub(self, delta: ArrayLike | Tensor) -> Variable:
        """Subtract `delta` (broadcastable) in place; returns the Variable."""
        return self._update(np.subtract, delta, "assign_sub")

    def _update(self, ufunc: np.ufunc, delta: Any, what: str) -> Variable:
        arr = np.asarray(delta.data if isinstance(delta, Tensor) else delta)
        try:
            fits = np.broadcast_shapes(arr.shape, self.data.shape) == self.data.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"`variable.{what}(value)` needs a value broadcastable to the variable's shape. "
                f"variable.shape={self.data.shape}, Received: value.shape={arr.shape}. "
                f"Target variable: {self.name}"
            )
        ufunc(self.data, arr, out=self.data, casting="unsafe")
        return self

    def __repr__(self) -> str:
        return (
            f"<Variable name={self.name}, shape={self.data.shape}, dtype={self.data.dtype}, "
            f"trainable={self._trainable}, value={self.data}>"
        )


def _resolve_regularizer(identifier: Any) -> Any:
    """`regularizers.get(identifier)`, imported on use (None stays None)."""
    if identifier is None:
        return None
    from numba_gn.params import regularizers

    return regularizers.get(identifier)


def _resolve_constraint(identifier: Any) -> Any:
    """`constraints.get(identifier)`, imported on use (None stays None)."""
    if identifier is None:
        return None
    from numba_gn.params import constraints

    return constraints.get(identifier)
