"""`Tensor`: an ndarray plus operator sugar that routes through the differentiable ops.

A Tensor holds nothing but its array (`data`); whether it takes part in differentiation is
decided by the `GradientTape` objects recording in the current
thread, never by the Tensor itself. Tensors are treated as immutable: ops never write into
`data`, and `data` is not copied when a Tensor is made from an ndarray.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from numba_gn._args import check_not_masked

__all__ = ["Tensor"]


def _raw(x: Any) -> Any:
    """The array behind `x` if it is a Tensor, else `x` unchanged."""
    return x.data if isinstance(x, Tensor) else x


class Tensor:
    """An n-dimensional array whose operations can be recorded by a `GradientTape`.

    Parameters
    ----------
    data : array-like or Tensor
        Wrapped without a copy when it is already an ndarray of the requested dtype.
    dtype : dtype, optional
        Cast `data` to this dtype (NumPy's inferred dtype when omitted).

    Notes
    -----
    Arithmetic (`+ - * / ** @`, unary `-`, `abs`), indexing and the methods below are
    differentiable; comparisons (`< <= > >= == !=`) return plain boolean ndarrays.

    NumPy reads a Tensor as its array: `np.asarray(t, dtype=...)`, and NumPy functions such as
    `np.mean(t)`, `np.concatenate([t, t])` or `np.allclose(t, a)` return plain NumPy values,
    which no GradientTape sees (no gradient flows through them). NumPy ufuncs that Python
    operators stand for (`np.add(a, t)` is `a + t`, comparisons, `np.negative`,
    `np.absolute`, `np.matmul`) run the same differentiable ops as the operators; every
    other ufunc (`np.exp(t)`) raises `TypeError`, pointing to `numba_gn.autograd.exp(t)`
    (differentiable) and `np.exp(t.numpy())` (a plain array). A Tensor is never written by
    NumPy: an `out=` Tensor raises `TypeError`.
    """

    __slots__ = ("data", "__weakref__")

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
        """The values as an ndarray, for `np.asarray(t)` (no gradient flows through it).

        NumPy 2 semantics: `copy=True` always copies, `copy=None` copies only to change the
        dtype, `copy=False` never copies and raises `ValueError` when a copy is needed.
        """
        data = self.data
        if copy:
            return np.array(data, dtype=dtype, copy=True)
        if dtype is None or np.dtype(dtype) == data.dtype:
            return data
        if copy is False:
            raise ValueError(
                f"Unable to avoid a copy: this Tensor is {data.dtype}, and {np.dtype(dtype)} "
                "was requested with copy=False."
            )
        return data.astype(dtype)

    def __array_function__(
        self, func: Any, types: Any, args: tuple, kwargs: dict[str, Any]
    ) -> Any:
        """NumPy functions (`np.mean(t)`) compute on the values and return plain NumPy results.

        Nothing is recorded on a tape: use the Tensor's methods or `numba_gn.autograd` ops for
        a differentiable result.
        """
        if not all(issubclass(t, (Tensor, np.ndarray)) for t in types):
            return NotImplemented  # another array library's type: let it (or NumPy) decide
        out = kwargs.get("out")
        if out is not None and _holds_tensor(out):
            raise TypeError(
                f"np.{func.__name__}(..., out=...) cannot write into a numba_gn Tensor (Tensors "
                "are immutable); pass an ndarray as `out`, or use the result."
            )
        return func(*_plain(args), **_plain(kwargs))

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """Operator ufuncs (`ndarray + Tensor`) run the operators' ops; others raise TypeError.

        `ndarray + t` reaches NumPy's `np.add` first: running the Tensor's own op keeps it
        on the tape, as `t + ndarray` is. Any other ufunc would silently return an array that
        no tape saw, which is worse than an error.
        """
        name = ufunc.__name__
        if method == "__call__" and not kwargs:
            op = _OPERATOR_UFUNCS.get(name)
            if op is not None and len(inputs) == ufunc.nin:
                return op(*inputs)
        out = kwargs.get("out")
        if out is not None and _holds_tensor(out):
            raise TypeError(
                f"np.{name}(..., out=...) cannot write into a numba_gn Tensor (Tensors are "
                "immutable); use the result instead."
            )
        if out is not None and name in _OPERATOR_UFUNCS:
            raise TypeError(
                f"An in-place update of an ndarray by a numba_gn Tensor (`a += t`, np.{name}(..., "
                "out=a)) cannot be recorded: write `a = a + t` for a differentiable Tensor, or "
                "`a += t.numpy()` for plain values (no gradient)."
            )
        call = f"np.{name}" if method == "__call__" else f"np.{name}.{method}"
        op = _AUTOGRAD_NAMES.get(name) if method == "__call__" else None
        hint = f"numba_gn.autograd.{op}" if op else "the differentiable ops of numba_gn.autograd"
        raise TypeError(
            f"{call} does not take numba_gn Tensors: NumPy would return a plain array that no "
            f"GradientTape records. Use {hint} for a differentiable result, or call {call} on "
            "`t.numpy()` for plain NumPy values (no gradient)."
        )

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

    # Elementwise `==` below would make Tensors unhashable; hash by identity instead so they
    # can key dicts and sit in sets (the tape itself keys on `id`).
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
        """Elementwise absolute value (`abs'(0) = 0`)."""
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
        """Sum over `axis` (all axes when None)."""
        return _reduce.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Arithmetic mean over `axis` (all axes when None)."""
        return _reduce.Mean.apply(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        """Reshape; accepts `reshape(2, 3)` or `reshape((2, 3))`, `-1` allowed."""
        return _shape.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, axes: tuple[int, ...] | None = None) -> Tensor:
        """Permute the axes (reverse them when `axes` is None)."""
        return _shape.Transpose.apply(self, axes=axes)

    def astype(self, dtype: DTypeLike) -> Tensor:
        """Cast to `dtype`; the gradient is cast back to this Tensor's dtype."""
        return _shape.Cast.apply(self, dtype=np.dtype(dtype))


def _plain(obj: Any) -> Any:
    """`obj` with each Tensor in it (also in lists, tuples and dicts) replaced by its array."""
    if isinstance(obj, Tensor):
        return obj.data
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(o) for o in obj) if type(obj) in (list, tuple) else obj
    if type(obj) is dict:
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _holds_tensor(obj: Any) -> bool:
    if isinstance(obj, Tensor):
        return True
    return isinstance(obj, (list, tuple)) and any(_holds_tensor(o) for o in obj)


def _compare(ufunc: np.ufunc) -> Any:
    return lambda x, y: ufunc(_raw(x), _raw(y))


#: The ufuncs Python operators map to, as the operators compute them (differentiable, except
#: comparisons, which return plain boolean arrays as the Tensor's own comparisons do).
_OPERATOR_UFUNCS: dict[str, Any] = {
    "add": lambda x, y: _ew.Add.apply(x, y),
    "subtract": lambda x, y: _ew.Sub.apply(x, y),
    "multiply": lambda x, y: _ew.Mul.apply(x, y),
    "divide": lambda x, y: _ew.Div.apply(x, y),
    "power": lambda x, y: _ew.Pow.apply(x, y),
    "matmul": lambda x, y: _reduce.MatMul.apply(x, y),
    "negative": lambda x: _ew.Neg.apply(x),
    "positive": lambda x: x,
    "absolute": lambda x: _ew.Abs.apply(x),
    "less": _compare(np.less),
    "less_equal": _compare(np.less_equal),
    "greater": _compare(np.greater),
    "greater_equal": _compare(np.greater_equal),
    "equal": _compare(np.equal),
    "not_equal": _compare(np.not_equal),
}

#: ufunc name -> the differentiable op of numba_gn.autograd that an error message points to.
_AUTOGRAD_NAMES = {
    "exp": "exp",
    "log": "log",
    "sqrt": "sqrt",
    "square": "square",
    "tanh": "tanh",
    "maximum": "maximum",
    "minimum": "minimum",
    "fabs": "abs",
}


# Imported last: the op modules subclass `Function`, which wraps results in `Tensor`, so they
# can only load once this class exists. Operator methods look them up at call time.
from numba_gn.autograd import ops_elementwise as _ew  # noqa: E402
from numba_gn.autograd import ops_reduce as _reduce  # noqa: E402
from numba_gn.autograd import ops_shape as _shape  # noqa: E402
