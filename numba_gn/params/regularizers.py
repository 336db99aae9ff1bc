"""Keras 3 weight regularizers, computed on numba_gn's autograd tape.

`reg(x)` returns a scalar `numba_gn.autograd.Tensor`, so the penalty can be added to a
loss and differentiated. `x` may be a Tensor (the penalty then depends on it) or a plain array.
Formulas follow Keras exactly, e.g. `L2` is `l2 * sum(x**2)` with no ½.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from numba_gn import _checks
from numba_gn.params._registry import Registry, build_from_config

__all__ = [
    "L1",
    "L1L2",
    "L2",
    "OrthogonalRegularizer",
    "Regularizer",
    "deserialize",
    "get",
    "serialize",
    "validate_float_arg",
]

# Keras's backend.epsilon(): the smallest norm OrthogonalRegularizer divides by.
_EPSILON = 1e-7


def validate_float_arg(value: Any, name: str) -> float:
    """Return `value` as a float; raise `ValueError` if it is negative, inf, nan or no number.

    Matches Keras's `validate_float_arg` (numpy scalars are accepted as well), and also
    rejects bools and ints too large for a float (`10**400`), which Keras lets through.
    """
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)
    if ok:
        try:
            ok = math.isfinite(value) and value >= 0
        except OverflowError:  # an int beyond the float range
            ok = False
    if not ok:
        raise ValueError(
            f"Invalid value for argument {name}: expected a non-negative float. "
            f"Received: {name}={_checks.show(value)}"
        )
    return float(value)


def _as_tensor(x: Any) -> Any:
    """Wrap an array in an autograd Tensor (a constant; non-float data becomes float32)."""
    from numba_gn import autograd as ag

    if isinstance(x, ag.Tensor):
        return x
    arr = np.asarray(x)
    return ag.Tensor(arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float32))


def _dtype_of(t: Any) -> np.dtype:
    return np.asarray(t.numpy()).dtype


def _scalar(value: float, t: Any) -> Any:
    """A constant scalar Tensor in the dtype of `t` (Keras casts its factors to `x.dtype`)."""
    from numba_gn import autograd as ag

    return ag.Tensor(np.asarray(value, dtype=_dtype_of(t)))


def _zero(t: Any) -> Any:
    """A scalar zero Tensor in the dtype of `t`."""
    return _scalar(0.0, t)


class Regularizer:
    """Base class: `reg(x)` returns a scalar penalty (zero for the base class)."""

    def __call__(self, x: Any) -> Any:
        """Return the penalty for `x` as a scalar Tensor."""
        return _zero(_as_tensor(x))

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments as a JSON-friendly dict."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Regularizer:
        """Rebuild a regularizer from `get_config` output (unknown keys are an error)."""
        return build_from_config(cls, config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1(Regularizer):
    """L1 penalty `l1 * sum(|x|)`."""

    def __init__(self, l1: float = 0.01) -> None:
        self.l1 = validate_float_arg(0.01 if l1 is None else l1, name="l1")

    def __call__(self, x: Any) -> Any:
        """Return `l1 * sum(|x|)` as a scalar Tensor."""
        from numba_gn import autograd as ag

        t = _as_tensor(x)
        return _scalar(self.l1, t) * ag.sum(ag.abs(t))

    def get_config(self) -> dict[str, Any]:
        """Return `{"l1": l1}`."""
        return {"l1": self.l1}


class L2(Regularizer):
    """L2 penalty `l2 * sum(x**2)` (no ½ factor, as in Keras)."""

    def __init__(self, l2: float = 0.01) -> None:
        self.l2 = validate_float_arg(0.01 if l2 is None else l2, name="l2")

    def __call__(self, x: Any) -> Any:
        """Return `l2 * sum(x**2)` as a scalar Tensor."""
        from numba_gn import autograd as ag

        t = _as_tensor(x)
        return _scalar(self.l2, t) * ag.sum(ag.square(t))

    def get_config(self) -> dict[str, Any]:
        """Return `{"l2": l2}`."""
        return {"l2": self.l2}


class L1L2(Regularizer):
    """Sum of the L1 and L2 penalties; both factors default to 0 (Keras's class defaults)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = validate_float_arg(0.0 if l1 is None else l1, name="l1")
        self.l2 = validate_float_arg(0.0 if l2 is None else l2, name="l2")

    def __call__(self, x: Any) -> Any:
        """Return `l1 * sum(|x|) + l2 * sum(x**2)` as a scalar Tensor."""
        from numba_gn import autograd as ag

        t = _as_tensor(x)
        penalty = _zero(t)
        # Zero factors add nothing, as in Keras (and keep the tape short).
        if self.l1 != 0.0:
            penalty = penalty + _scalar(self.l1, t) * ag.sum(ag.abs(t))
        if self.l2 != 0.0:
            penalty = penalty + _scalar(self.l2, t) * ag.sum(ag.square(t))
        return penalty

    def get_config(self) -> dict[str, Any]:
        """Return `{"l1": l1, "l2": l2}`."""
        return {"l1": self.l1, "l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """Penalty pushing the rows (or columns) of a 2D weight to be orthogonal.

    The rows (`mode="rows"`) or columns are L2-normalised (norms below `1e-7` are clamped);
    the penalty is `factor` times the mean of `|<u_i, u_j>|` over the pairs `i < j`.
    With fewer than two rows/columns there are no pairs and the penalty is 0 (Keras gives nan).
    """

    def __init__(self, factor: float = 0.01, mode: str = "rows") -> None:
        self.factor = validate_float_arg(factor, name="factor")
        if not isinstance(mode, str) or mode not in ("rows", "columns"):
            raise ValueError(
                "Invalid value for argument `mode`. Expected one of "
                f'{{"rows", "columns"}}. Received: mode={mode!r}'
            )
        self.mode = mode

    def __call__(self, x: Any) -> Any:
        """Return the orthogonality penalty of the 2D `x` as a scalar Tensor."""
        from numba_gn import autograd as ag

        t = _as_tensor(x)
        if len(t.shape) != 2:
            raise ValueError(
                f"Inputs to OrthogonalRegularizer must have rank 2. Received: shape={t.shape}"
            )
        if self.mode == "columns":
            t = ag.transpose(t)
        size = t.shape[0]
        if size < 2:
            return _zero(t)
        # Clamp the squared norm, not the norm: sqrt's gradient at 0 would be inf.
        sq_norms = ag.sum(ag.square(t), axis=1, keepdims=True)
        unit = t / ag.sqrt(ag.maximum(sq_norms, _scalar(_EPSILON**2, t)))
        gram = ag.matmul(unit, ag.transpose(unit))
        off_diagonal = gram * ag.Tensor((1.0 - np.eye(size)).astype(_dtype_of(t)))
        num_pairs = size * (size - 1) / 2.0
        # Each pair appears twice in the full Gram matrix, hence the 0.5 (Keras's formula).
        return _scalar(self.factor * 0.5 / num_pairs, t) * ag.sum(ag.abs(off_diagonal))

    def get_config(self) -> dict[str, Any]:
        """Return `{"factor": factor, "mode": mode}`."""
        return {"factor": self.factor, "mode": self.mode}


_REGISTRY = Registry(
    "regularizer",
    Regularizer,
    classes=(Regularizer, L1, L2, L1L2, OrthogonalRegularizer),
    # Keras documents "l1_l2" as a string identifier but only registers "l1l2"; accept both.
    aliases={"l1_l2": L1L2},
)


def serialize(regularizer: Regularizer | None) -> dict[str, Any] | None:
    """Return a Keras-3-style config dict for `regularizer` (`None` gives `None`)."""
    return _REGISTRY.serialize(regularizer)


def deserialize(
    config: str | Mapping[str, Any] | None, custom_objects: Mapping[str, Any] | None = None
) -> Regularizer | None:
    """Build a regularizer from a name or a (Keras) config dict; never imports anything."""
    return _REGISTRY.deserialize(config, custom_objects)


def get(identifier: Any) -> Regularizer | Any | None:
    """Resolve `identifier`: None, name, config dict, instance, class or callable."""
    return _REGISTRY.get(identifier)
