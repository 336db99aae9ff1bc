"""Accuracy metrics, averaged over an epoch the way Keras's stateful metrics are.

`"accuracy"` (or `"acc"`) picks the variant from the shapes at the first update, as Keras's
`compile` does: binary when `y_pred` has one column, sparse categorical when `y_true`
holds class indices (one axis fewer than `y_pred`, or a trailing axis of 1), categorical
otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from numba_gn import _checks

__all__ = [
    "Accuracy",
    "Mean",
    "MeanMetricWrapper",
    "Metric",
    "binary_accuracy",
    "categorical_accuracy",
    "get",
    "sparse_categorical_accuracy",
]


def _arr(x: Any) -> np.ndarray:
    return np.asarray(getattr(x, "data", x))


def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> np.ndarray:
    """Per-sample mean over the last axis of `(y_pred > threshold) == y_true`.

    `threshold` is a number in `[0, 1]` (a probability, as Keras's thresholds are).
    """
    if type(threshold) is not float or not 0.0 <= threshold <= 1.0:  # the default passes fast
        threshold = _checks.real(threshold, "threshold", low=0.0, high=1.0)
    y_true, y_pred = _arr(y_true), _arr(y_pred)
    return np.mean((y_pred > threshold) == (y_true > 0.5), axis=-1)


def categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """Per-sample `argmax(y_true) == argmax(y_pred)` over the last axis (0.0 or 1.0)."""
    y_true, y_pred = _arr(y_true), _arr(y_pred)
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """Per-sample `y_true == argmax(y_pred)` (0.0 or 1.0)."""
    y_true, y_pred = _arr(y_true), _arr(y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    return (y_true.astype(np.int64) == np.argmax(y_pred, axis=-1)).astype(np.float64)


class Metric:
    """A running, sample-weighted mean of a per-sample function, reset once per epoch."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"`name` must be a string, got name={_checks.show(name)}.")
        self.name = name
        self._total = 0.0
        self._count = 0.0

    def reset_state(self) -> None:
        """Forget everything accumulated."""
        self._total = 0.0
        self._count = 0.0

    def result(self) -> float:
        """The mean so far (0.0 before any update)."""
        return self._total / self._count if self._count else 0.0

    def _add(self, values: np.ndarray) -> None:
        self._total += float(np.sum(values))
        self._count += float(np.size(values))

    def update_state(self, y_true: Any, y_pred: Any) -> None:
        """Accumulate one batch."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Mean(Metric):
    """The mean of the values passed to `update_state(values)` (used for the loss)."""

    def update_state(self, values: Any, count: float | None = None) -> None:  # type: ignore[override]
        """Add a value (counted `count` times, e.g. a batch mean times its batch size).

        `count` is a finite number >= 0.
        """
        if count is None:
            self._add(np.asarray(values, dtype=np.float64))
        else:
            count = _checks.real(count, "count", low=0.0)
            self._total += float(values) * count
            self._count += count


class Accuracy(Metric):
    """Keras's `"accuracy"`: binary, sparse or categorical, chosen from the shapes.

    `threshold` (binary case: a prediction above it counts as 1) is a number in `[0, 1]`.
    """

    def __init__(self, name: str = "accuracy", threshold: float = 0.5) -> None:
        super().__init__(name)
        self.threshold = _checks.real(threshold, "threshold", low=0.0, high=1.0)
        self._fn: Callable[[Any, Any], np.ndarray] | None = None

    def update_state(self, y_true: Any, y_pred: Any) -> None:
        """Accumulate the per-sample accuracies of one batch."""
        if self._fn is None:
            self._fn = self._pick(_arr(y_true), _arr(y_pred))
        self._add(self._fn(y_true, y_pred))

    def _pick(self, y_true: np.ndarray, y_pred: np.ndarray) -> Callable[[Any, Any], np.ndarray]:
        if y_pred.shape[-1:] == (1,):
            return lambda t, p: binary_accuracy(t, p, self.threshold)
        if y_true.ndim < y_pred.ndim or (y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1):
            return sparse_categorical_accuracy
        return categorical_accuracy


class MeanMetricWrapper(Metric):
    """The epoch mean of a per-sample function `fn(y_true, y_pred)`."""

    def __init__(self, fn: Callable[[Any, Any], np.ndarray], name: str) -> None:
        if not callable(fn):
            raise TypeError(f"`fn` must be callable, got fn={_checks.show(fn)}.")
        super().__init__(name)
        self.fn = fn

    def update_state(self, y_true: Any, y_pred: Any) -> None:
        """Accumulate `fn` over one batch."""
        self._add(self.fn(y_true, y_pred))


_FUNCTIONS = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
}


def get(identifier: Any) -> Metric:
    """A fresh metric from a name, or an instance (returned as is).

    Names: `"accuracy"`/`"acc"`, `"binary_accuracy"`, `"categorical_accuracy"`,
    `"sparse_categorical_accuracy"`.
    """
    if isinstance(identifier, Metric):
        return identifier
    # Only names: a config dict (from whatever module) is refused below, and must not reach
    # the dict lookup, where it would fail as "unhashable" instead.
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            return Accuracy(name=identifier)
        if identifier in _FUNCTIONS:
            return MeanMetricWrapper(_FUNCTIONS[identifier], identifier)
    raise ValueError(
        f"Could not interpret metric identifier: {identifier!r}; supported: "
        f"{['accuracy', 'acc', *_FUNCTIONS]}."
    )
