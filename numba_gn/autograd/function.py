"""`Function` (one differentiable op: a forward and its vector-Jacobian product) and `Context`.

Write a new op by subclassing `Function` with two static methods on plain ndarrays::

    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 3 * x**2 * grad

    y = Cube.apply(t)   # a Tensor; recorded on every recording tape that watches `t`

`apply` unwraps Tensor inputs to their arrays (other inputs, such as Python scalars or None,
are passed through unchanged), runs `forward`, wraps the result in a Tensor and, only when a
recording tape watches one of the inputs, appends a node `(cls, ctx, output, inputs)` to that
tape. With no tape recording, nothing but the output is kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numba_gn.autograd._state import STATE

__all__ = ["Context", "Function"]

_new = object.__new__
# needs_input_grad for the no-tape fast path, one cached tuple per arity.
_NO_GRADS = tuple((False,) * n for n in range(9))


class Context:
    """Per-call scratch space shared by `forward` and `backward` of one op application.

    Attributes
    ----------
    needs_input_grad : tuple of bool
        One flag per input: whether any recording tape wants its gradient (forward may skip
        saving what backward would only need for inputs without a gradient).
    saved_tensors : tuple
        What `save_for_backward` stored.

    Any other attribute may be set freely (`ctx.axis = axis`) to pass static data to backward.
    """

    __slots__ = ("needs_input_grad", "saved_tensors", "__dict__")

    def __init__(self, needs_input_grad: tuple[bool, ...] = ()) -> None:
        self.needs_input_grad = needs_input_grad
        self.saved_tensors: tuple = ()

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep `arrays` (residuals) for `backward`; read them back from `saved_tensors`."""
        self.saved_tensors = arrays


class Function:
    """Base class of differentiable ops; subclasses define `forward` and `backward`.

    `forward(ctx, *arrays, **kwargs) -> ndarray` receives ndarrays (plus whatever non-Tensor
    values were passed) and keyword-only static arguments, and returns one array (ops have a
    single output; keep auxiliary results such as statistics on `ctx`).

    `backward(ctx, grad)` receives the gradient of the output (an ndarray of the output's
    shape) and returns one gradient per positional input, as a tuple (or a bare array for a
    one-input op); `None` means "no gradient" and is always allowed. Each gradient must have
    its input's shape: reduce broadcasting with `numba_gn.autograd.unbroadcast`.
    """

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> np.ndarray:
        """Compute the output from ndarrays; save residuals on `ctx`."""
        raise NotImplementedError("Function subclasses must implement forward(ctx, *arrays)")

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> Any:
        """Return the gradient of each input given the output gradient `grad`."""
        raise NotImplementedError("Function subclasses must implement backward(ctx, grad)")

    @classmethod
    def apply(cls, *inputs: Any, **kwargs: Any) -> Tensor:
        """Run the op on `inputs` (Tensors, arrays, scalars) and record it where needed."""
        arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
        tapes = STATE.active
        if not tapes:
            # Fast path: no tape in this thread, so nothing to record.
            n = len(inputs)
            ctx = Context(_NO_GRADS[n] if n < 9 else (False,) * n)
            out = cls.forward(ctx, *arrays, **kwargs)
            return _wrap(out)

        records = []
        needs = None
        for tape in tapes:
            refs = tape._input_refs(inputs)
            if refs is not None:
                records.append((tape, refs))
                flags = [r is not None for r in refs]
                needs = (
                    flags if needs is None else [a or b for a, b in zip(needs, flags, strict=True)]
                )
        n = len(inputs)
        ctx = Context(
            tuple(needs) if needs is not None else _NO_GRADS[n] if n < 9 else (False,) * n
        )
        out = _wrap(cls.forward(ctx, *arrays, **kwargs))
        for tape, refs in records:
            tape._record(cls, ctx, out, refs)
        return out


def _wrap(out: Any) -> Tensor:
    """A Tensor around `out` without going through `__init__` (no checks, no copy)."""
    if type(out) is not np.ndarray:
        out = np.asarray(out)  # NumPy reductions return scalars; Tensors always hold ndarrays
    t = _new(Tensor)
    t.data = out
    return t


# Imported last to break the cycle tensor -> ops -> function -> tensor in any import order.
from numba_gn.autograd.tensor import Tensor  # noqa: E402
