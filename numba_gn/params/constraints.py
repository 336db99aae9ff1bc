"""Keras 3 weight constraints on plain numpy arrays.

The optimizer applies a parameter's constraint to its raw values after each update:
`w[...] = constraint(w)`. Float inputs keep their dtype; other inputs become float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from numba_gn import _checks
from numba_gn.params._registry import Registry, build_from_config

__all__ = [
    "Constraint",
    "MaxNorm",
    "MinMaxNorm",
    "NonNeg",
    "UnitNorm",
    "deserialize",
    "get",
    "serialize",
]

Axis = int | Sequence[int]


def _check_axis(axis: Any) -> Axis:
    """`axis`: an int or a non-empty list/tuple of ints (ranges need the weight's rank)."""
    checked = _checks.int_sequence(axis, "axis")
    # Plain Python ints, a list for several axes: the config stays JSON, as Keras writes it.
    return list(checked) if isinstance(checked, tuple) else checked

# Keras's backend.epsilon(), added to the norms before dividing.
_EPSILON = 1e-7


def _as_float_array(w: Any) -> np.ndarray:
    """`w` as an array, float32 unless it is already floating."""
    arr = np.asarray(w)
    return arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float32)


def _norms(w: np.ndarray, axis: Axis) -> np.ndarray:
    """L2 norms along `axis` (an int or a list of ints), kept as broadcastable dims."""
    ax = tuple(axis) if isinstance(axis, Sequence) else axis
    return np.sqrt(np.sum(np.square(w), axis=ax, keepdims=True))


class Constraint:
    """Base class: `constraint(w)` returns the projected weights (identity here)."""

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """Return `w` unchanged."""
        return w

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments as a JSON-friendly dict."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Constraint:
        """Rebuild a constraint from `get_config` output (unknown keys are an error)."""
        return build_from_config(cls, config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MaxNorm(Constraint):
    """Rescale each slice along `axis` so its L2 norm is at most `max_value`.

    `w * clip(norm, 0, max_value) / (1e-7 + norm)`, as Keras computes it. For a Dense kernel
    `(in, out)` the default `axis=0` constrains each output unit's incoming weights.
    `max_value` must be finite and >= 0; `axis` an int or a non-empty list of ints.
    """

    def __init__(self, max_value: float = 2, axis: Axis = 0) -> None:
        _checks.real(max_value, "max_value", low=0.0)
        self.max_value = max_value
        self.axis = _check_axis(axis)

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """Return `w` with the norms along `axis` clipped to `max_value`."""
        w = _as_float_array(w)
        norms = _norms(w, self.axis)
        desired = np.clip(norms, 0, self.max_value)
        return (w * (desired / (_EPSILON + norms))).astype(w.dtype, copy=False)

    def get_config(self) -> dict[str, Any]:
        """Return `{"max_value", "axis"}`."""
        return {"max_value": self.max_value, "axis": _copy_axis(self.axis)}


class MinMaxNorm(Constraint):
    """Move each slice's L2 norm into `[min_value, max_value]` at a given `rate`.

    The new norm is `rate * clip(norm, min_value, max_value) + (1 - rate) * norm`; the weights
    are scaled by `new_norm / (1e-7 + norm)`, as in Keras. `rate=1` enforces the bounds
    strictly, `rate=0` leaves the weights unchanged.

    The bounds must be finite with `0 <= min_value <= max_value`, `rate` in `[0, 1]`,
    `axis` an int or a non-empty list of ints.
    """

    def __init__(
        self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis: Axis = 0
    ) -> None:
        lo = _checks.real(min_value, "min_value", low=0.0)
        hi = _checks.real(max_value, "max_value", low=0.0)
        if lo > hi:
            raise ValueError(
                "`min_value` must be <= `max_value`, got "
                f"min_value={min_value!r} and max_value={max_value!r}."
            )
        _checks.real(rate, "rate", low=0.0, high=1.0)
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = _check_axis(axis)

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """Return `w` with the norms along `axis` moved towards the bounds."""
        w = _as_float_array(w)
        norms = _norms(w, self.axis)
        desired = (
            self.rate * np.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        )
        return (w * (desired / (_EPSILON + norms))).astype(w.dtype, copy=False)

    def get_config(self) -> dict[str, Any]:
        """Return `{"min_value", "max_value", "rate", "axis"}`."""
        return {
            "min_value": self.min_value,
            "max_value": self.max_value,
            "rate": self.rate,
            "axis": _copy_axis(self.axis),
        }


class NonNeg(Constraint):
    """Clamp the weights at zero from below: `maximum(w, 0)`."""

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """Return `maximum(w, 0)`."""
        w = _as_float_array(w)
        return np.maximum(w, w.dtype.type(0))


class UnitNorm(Constraint):
    """Scale each slice along `axis` to unit L2 norm: `w / (1e-7 + norm)`.

    `axis` is an int or a non-empty list of ints.
    """

    def __init__(self, axis: Axis = 0) -> None:
        self.axis = _check_axis(axis)

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """Return `w` divided by its norms along `axis`."""
        w = _as_float_array(w)
        return (w / (_EPSILON + _norms(w, self.axis))).astype(w.dtype, copy=False)

    def get_config(self) -> dict[str, Any]:
        """Return `{"axis": axis}`."""
        return {"axis": _copy_axis(self.axis)}


def _copy_axis(axis: Axis) -> Axis:
    # A list axis is copied so a caller editing the config cannot change the constraint.
    return list(axis) if isinstance(axis, Sequence) else axis


_REGISTRY = Registry(
    "constraint", Constraint, classes=(Constraint, MaxNorm, MinMaxNorm, NonNeg, UnitNorm)
)


def serialize(constraint: Constraint | None) -> dict[str, Any] | None:
    """Return a Keras-3-style config dict for `constraint` (`None` gives `None`)."""
    return _REGISTRY.serialize(constraint)


def deserialize(
    config: str | Mapping[str, Any] | None, custom_objects: Mapping[str, Any] | None = None
) -> Constraint | None:
    """Build a constraint from a name or a (Keras) config dict; never imports anything."""
    return _REGISTRY.deserialize(config, custom_objects)


def get(identifier: Any) -> Constraint | Any | None:
    """Resolve `identifier`: None, name, config dict, instance, class or callable."""
    return _REGISTRY.get(identifier)
