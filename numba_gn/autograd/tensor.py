"""``Tensor``: an ndarray plus operator sugar that routes through the differentiable ops.

A Tensor holds nothing but its array (``data``); whether it takes part in differentiation is
decided by the :class:`~numba_gn.autograd.tape.GradientTape` objects recording in the current
thread, never by the Tensor itself. Tensors are treated as immutable: ops never write into
``data``, and ``data`` is not copied when a Tensor is made from an ndarray.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from numba_gn._args import check_not_masked

__all__ = ["Tensor"]


def _raw(x: Any) -> Any:
    """The array behind ``x`` if it is a Tensor, else ``x`` unchanged."""
    return x.data if isinstance(x, Tensor) else x


class Tensor:
    """An n-dimensional array whose operations can be recorded by a ``GradientTape``.

    Parameters
    ----------
    data : array-like or Tensor
        Wrapped without a copy when it is already an ndarray of the requested dtype.
    dtype : dtype, optional
        Cast ``data`` to this dtype (NumPy's inferred dtype when omitted).

    Notes
    -----
    Arithmetic (``+ - * / ** @``, unary ``-``, ``abs``), indexing and the methods below are
    differentiable; comparisons (``< <= > >= == !=``) return plain boolean ndarrays.
    """

    __slots__ = ("data", "__weakref__")

    # Make NumPy defer to our reflected operators (``ndarray + Tensor`` calls ``__radd__``)
    # and refuse ufuncs on Tensors instead of silently dropping them off the tape.
    __array_ufunc__ = None
    # Variables (a subclass) set this; the tape reads it to auto-watch trainable Variables.
    _is_variable = False

    data: np.ndarray

    def __init__(self, data: ArrayLike | Tensor, dtype: DTypeLike | None = None) -> None:
        raw = _raw(data)
        if type(raw) is not np.ndarray:  # np.asarray would drop a masked array's mask
            check_not_masked(raw, "data", "Pass the data (`.filled(...)`) and handle the mask.")
        self.data = np.asarray(raw, dtype=dtype)

    # -- array protocol and introspection ------------------------------------------------------

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (not a copy: do not modify it in place)."""
        return self.data

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the array."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """NumPy dtype of the array."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.data.ndim

    @property
    def size(self) -> int:
        """Number of elements."""
        return self.data.size

    @property
    def T(self) -> Tensor:
        """The transpose (all axes reversed), differentiable."""
        return _shape.Transpose.apply(self, axes=None)

    def item(self) -> Any:
        """The single element as a Python scalar."""
        return self.data.item()

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[Tensor]:
        for i in range(len(self.data)):
            yield self[i]

    def __bool__(self) -> bool:
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.data)

    def __int__(self) -> int:
        return int(self.data)

    def __repr__(self) -> str:
        return f"Tensor({self.data!s}, shape={self.data.shape}, dtype={self.data.dtype})"

    # Elementwise ``==`` below would make Tensors unhashable; hash by identity instead so they
    # can key dicts and sit in sets (the tape itself keys on ``id``).
    __hash__ = object.__hash__

    # -- arithmetic --------------------------------------------------------------------------------

    def __add__(self, other: Any) -> Tensor:
        return _ew.Add.apply(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _ew.Add.apply(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _ew.Sub.apply(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _ew.Sub.apply(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _ew.Mul.apply(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _ew.Mul.apply(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _ew.Div.apply(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _ew.Div.apply(other, self)

    def __pow__(self, other: Any) -> Tensor:
        return _ew.Pow.apply(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return _ew.Pow.apply(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _reduce.MatMul.apply(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _reduce.MatMul.apply(other, self)

    def __neg__(self) -> Tensor:
        return _ew.Neg.apply(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return _ew.Abs.apply(self)

    def abs(self) -> Tensor:
        """Elementwise absolute value (``abs'(0) = 0``)."""
        return _ew.Abs.apply(self)

    # -- comparisons: plain boolean arrays, not differentiable -------------------------------------

    def __lt__(self, other: Any) -> np.ndarray:
        return self.data < _raw(other)

    def __le__(self, other: Any) -> np.ndarray:
        return self.data <= _raw(other)

    def __gt__(self, other: Any) -> np.ndarray:
        return self.data > _raw(other)

    def __ge__(self, other: Any) -> np.ndarray:
        return self.data >= _raw(other)

    def __eq__(self, other: Any) -> np.ndarray:  # type: ignore[override]
        return self.data == _raw(other)

    def __ne__(self, other: Any) -> np.ndarray:  # type: ignore[override]
        return self.data != _raw(other)

    # -- indexing, reductions, shape ---------------------------------------------------------------

    def __getitem__(self, index: Any) -> Tensor:
        return _shape.getitem(self, index)

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Sum over ``axis`` (all axes when None)."""
        return _reduce.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Arithmetic mean over ``axis`` (all axes when None)."""
        return _reduce.Mean.apply(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        """Reshape; accepts ``reshape(2, 3)`` or ``reshape((2, 3))``, ``-1`` allowed."""
        return _shape.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, axes: tuple[int, ...] | None = None) -> Tensor:
        """Permute the axes (reverse them when ``axes`` is None)."""
        return _shape.Transpose.apply(self, axes=axes)

    def astype(self, dtype: DTypeLike) -> Tensor:
        """Cast to ``dtype``; the gradient is cast back to this Tensor's dtype."""
        return _shape.Cast.apply(self, dtype=np.dtype(dtype))


# Imported last: the op modules subclass ``Function``, which wraps results in ``Tensor``, so they
# can only load once this class exists. Operator methods look them up at call time.
from numba_gn.autograd import ops_elementwise as _ew  # noqa: E402
from numba_gn.autograd import ops_reduce as _reduce  # noqa: E402
from numba_gn.autograd import ops_shape as _shape  # noqa: E402
