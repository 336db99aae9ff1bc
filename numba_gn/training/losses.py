"""Keras 3 losses on the autograd tape: same classes, names, defaults, formulas and reductions.

`loss(y_true, y_pred, sample_weight=None)` returns a scalar `Tensor`
(or per-sample losses with `reduction=None`/`"none"`); `y_true` is data, never
differentiated. The default reduction `"sum_over_batch_size"` is the mean over every
per-sample loss (Keras's name).

Numerics: `from_logits=True` paths are fused ops computed with log-sum-exp (categorical) and
`max(x, 0) - x*z + log1p(exp(-|x|))` (binary), so no logit overflows; their gradients are the
closed forms (`softmax - target`, `sigmoid - target`). Probability inputs follow Keras:
normalise along the class axis (categorical), clip to `[1e-7, 1 - 1e-7]`, take the log.
(Keras's NumPy backend applies a sigmoid and that clip to binary logits too, so its values
saturate for `|logit| > ~16`; ours stay exact there.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from numba_gn import _checks
from numba_gn.autograd import Context, Function, Tensor, ops

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Loss",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
    "deserialize",
    "get",
    "serialize",
]

#: Keras's `backend.epsilon()`: how far probabilities are kept from 0 and 1.
EPSILON = 1e-7

_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def _raw(x: Any) -> np.ndarray:
    return np.asarray(x.data if isinstance(x, Tensor) else x)


def _float_dtype(y_pred: Any) -> np.dtype:
    dt = _raw(y_pred).dtype
    return dt if dt.kind == "f" else np.dtype(np.float32)


# -- fused ops ----------------------------------------------------------------------------------


class SoftmaxCrossEntropy(Function):
    """`-sum(target * log_softmax(logits), axis=-1)` per sample; `target` is a constant."""

    @staticmethod
    def forward(ctx: Context, logits: np.ndarray, *, target: np.ndarray) -> np.ndarray:
        shifted = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=-1, keepdims=True)
        log_prob = shifted - np.log(s)
        ctx.save_for_backward(e / s, target)
        return -(target * log_prob).sum(axis=-1)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        prob, target = ctx.saved_tensors
        return g[..., None] * (prob * target.sum(axis=-1, keepdims=True) - target)


class SparseSoftmaxCrossEntropy(Function):
    """`-log_softmax(logits)[label]` per sample, labels an int array (no one-hot built)."""

    @staticmethod
    def forward(ctx: Context, logits: np.ndarray, *, labels: np.ndarray) -> np.ndarray:
        flat = logits.reshape(-1, logits.shape[-1])
        idx = labels.reshape(-1)
        shifted = flat - flat.max(axis=-1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=-1, keepdims=True)
        rows = np.arange(flat.shape[0])
        loss = np.log(s[:, 0]) - shifted[rows, idx]
        ctx.save_for_backward(e, s, rows, idx)
        ctx.shape = logits.shape
        return loss.reshape(labels.shape)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        e, s, rows, idx = ctx.saved_tensors
        g1 = g.reshape(-1, 1)
        grad = e * (g1 / s)  # softmax * g, with one division per row
        grad[rows, idx] -= g1[:, 0]
        return grad.reshape(ctx.shape)


class SigmoidCrossEntropy(Function):
    """Elementwise `max(x, 0) - x*z + log1p(exp(-|x|))`: binary cross-entropy of logits."""

    @staticmethod
    def forward(ctx: Context, logits: np.ndarray, *, target: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(logits, target)
        return np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        logits, target = ctx.saved_tensors
        with np.errstate(over="ignore"):  # exp(-x) = inf gives sigmoid 0, the right limit
            sig = 1.0 / (1.0 + np.exp(-logits))
        return g * (sig - target)


class WeightedReduce(Function):
    """`sum(values * weights) / divisor` (weights None means 1), a scalar."""

    @staticmethod
    def forward(
        ctx: Context, values: np.ndarray, *, weights: np.ndarray | None, divisor: float
    ) -> np.ndarray:
        ctx.args = (values.shape, weights, divisor)
        total = values.sum() if weights is None else (values * weights).sum()
        return np.asarray(total / divisor if divisor else 0.0 * total, dtype=values.dtype)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        shape, weights, divisor = ctx.args
        if not divisor:
            return np.zeros(shape, dtype=g.dtype)
        scale = g / divisor
        if weights is None:
            return np.broadcast_to(scale.astype(g.dtype), shape)
        return np.broadcast_to(weights * scale, shape).astype(g.dtype)


# -- base class ---------------------------------------------------------------------------------


class Loss:
    """Base class: `call(y_true, y_pred)` gives per-sample losses, `__call__` reduces them.

    Parameters
    ----------
    name : str, optional
        Defaults to the snake-case Keras name of the loss.
    reduction : str or None, default "sum_over_batch_size"
        "sum_over_batch_size" / "mean" (mean of the per-sample losses), "sum",
        "mean_with_sample_weight" (weighted sum over the sum of the weights), or
        None / "none" (no reduction).
    dtype : str, optional
        Kept for Keras compatibility of configs; computations use `y_pred`'s float dtype.

    Notes
    -----
    The subclasses' arguments are checked at construction, each error naming its argument:
    `from_logits` is a bool, `label_smoothing` a number in `[0, 1]`, `axis` an int
    (its range is checked against the input's rank at the call), `ignore_class` None or an
    int.
    """

    default_name = "loss"

    def __init__(
        self,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        dtype: str | None = None,
    ) -> None:
        if not (reduction is None or isinstance(reduction, str)) or reduction not in _REDUCTIONS:
            raise ValueError(
                f"Invalid value for argument `reduction`: expected one of {list(_REDUCTIONS)}. "
                f"Received: reduction={_checks.show(reduction)}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` must be a string or None, got name={_checks.show(name)}.")
        self.name = name or self.default_name
        self.reduction = reduction
        self.dtype = dtype

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        """Per-sample losses (one value per element of `y_pred.shape[:-1]`)."""
        raise NotImplementedError

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        """The reduced loss of a batch, recorded on the active tape."""
        values = self.call(y_true, y_pred)
        return self._reduce(values, sample_weight, self._mask(y_true))

    def _mask(self, y_true: Any) -> np.ndarray | None:
        """Boolean mask of the samples that count (None: all); see `ignore_class`."""
        return None

    def _reduce(self, values: Tensor, sample_weight: Any, mask: np.ndarray | None) -> Tensor:
        shape = values.shape
        dtype = values.dtype
        weights = None
        if sample_weight is not None:
            weights = _match_rank(np.asarray(_raw(sample_weight), dtype=dtype), len(shape))
        if mask is not None and self.reduction in ("mean", "sum_over_batch_size"):
            # Keras: valid entries weigh total/valid, so the mean runs over the valid ones.
            valid = int(mask.sum())
            scale = mask.size / valid if valid else 0.0
            m = np.where(mask, scale, 0.0).astype(dtype)
            weights = m if weights is None else weights * m
        elif mask is not None:
            m = mask.astype(dtype)
            weights = m if weights is None else weights * m
        if self.reduction in (None, "none") or len(shape) == 0:
            return values if weights is None else values * np.broadcast_to(weights, shape)
        if self.reduction == "sum":
            divisor = 1.0
        elif self.reduction == "mean_with_sample_weight" and weights is not None:
            divisor = float(np.broadcast_to(weights, shape).sum())
        else:
            divisor = float(np.prod(shape))
        return WeightedReduce.apply(values, weights=weights, divisor=divisor)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, Keras's keys."""
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        """Rebuild from `get_config`'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _match_rank(w: np.ndarray, ndim: int) -> np.ndarray:
    """Squeeze trailing 1s or add trailing axes so `w` broadcasts like Keras's sample weights."""
    while w.ndim > ndim and w.shape[-1] == 1:
        w = w[..., 0]
    while w.ndim < ndim:
        w = w[..., None]
    return w


# -- the losses ---------------------------------------------------------------------------------


class MeanSquaredError(Loss):
    """`mean(square(y_true - y_pred), axis=-1)` per sample."""

    default_name = "mean_squared_error"

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "mean_squared_error",
        dtype: str | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        """Per-sample mean squared error over the last axis."""
        target = np.asarray(_raw(y_true), dtype=_float_dtype(y_pred))
        return ops.mean(ops.square(ops.sub(y_pred, target)), axis=-1)


class BinaryCrossentropy(Loss):
    """Binary cross-entropy averaged over `axis` (Keras default -1), with label smoothing."""

    default_name = "binary_crossentropy"

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_crossentropy",
        dtype: str | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = _checks.boolean(from_logits, "from_logits")
        self.label_smoothing = _checks.real(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.axis = _checks.axis(axis)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        """Per-sample binary cross-entropy."""
        dtype = _float_dtype(y_pred)
        z = np.asarray(_raw(y_true), dtype=dtype)
        if self.label_smoothing:
            z = z * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        _check_same_shape(z, y_pred)
        if self.from_logits:
            elementwise = SigmoidCrossEntropy.apply(y_pred, target=z)
        else:
            p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
            elementwise = -(z * ops.log(p) + (1.0 - z) * ops.log(1.0 - p))
        return ops.mean(elementwise, axis=self.axis)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, Keras's keys."""
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "axis": self.axis,
        }


class CategoricalCrossentropy(Loss):
    """Cross-entropy of one-hot (or soft) targets, with label smoothing, along `axis`."""

    default_name = "categorical_crossentropy"

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_crossentropy",
        dtype: str | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = _checks.boolean(from_logits, "from_logits")
        self.label_smoothing = _checks.real(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.axis = _checks.axis(axis)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        """Per-sample categorical cross-entropy."""
        z = np.asarray(_raw(y_true), dtype=_float_dtype(y_pred))
        _check_same_shape(z, y_pred)
        if self.label_smoothing:
            n = z.shape[self.axis]
            z = z * (1.0 - self.label_smoothing) + self.label_smoothing / n
        if self.axis not in (-1, z.ndim - 1):
            # The fused op works on the last axis; move the class axis there.
            y_pred = ops.transpose(y_pred, _to_last(z.ndim, self.axis))
            z = np.moveaxis(z, self.axis, -1)
        if self.from_logits:
            return SoftmaxCrossEntropy.apply(y_pred, target=np.ascontiguousarray(z))
        p = ops.clip(y_pred / ops.sum(y_pred, axis=-1, keepdims=True), EPSILON, 1 - EPSILON)
        log_prob = ops.log(p)
        return -ops.sum(log_prob * z, axis=-1)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, Keras's keys."""
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "axis": self.axis,
        }


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy of integer class labels (`y_true` shape `y_pred.shape[:-1]`, or `+(1,)`).

    `ignore_class`: samples with this label get loss 0 and are left out of the mean, as in
    Keras.
    """

    default_name = "sparse_categorical_crossentropy"

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "sparse_categorical_crossentropy",
        dtype: str | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = _checks.boolean(from_logits, "from_logits")
        if ignore_class is not None:
            # An int label; a float one would silently never match the integer labels.
            ignore_class = _checks.integer(ignore_class, "ignore_class")
        self.ignore_class = ignore_class

    def _labels(self, y_true: Any, y_pred: Any) -> np.ndarray:
        labels = _raw(y_true)
        pred_shape = _raw(y_pred).shape
        if labels.ndim == len(pred_shape) and labels.shape[-1] == 1:
            labels = labels[..., 0]
        if labels.shape != pred_shape[:-1]:
            raise ValueError(
                "Arguments `target` and `output` must have the same shape up until the last "
                f"dimension: target.shape={labels.shape}, output.shape={pred_shape}"
            )
        labels = labels.astype(np.intp, copy=False)
        if self.ignore_class is not None:
            labels = np.where(labels == self.ignore_class, 0, labels)
        n = pred_shape[-1]
        if labels.size and (labels.min() < 0 or labels.max() >= n):
            raise ValueError(f"Labels must be in [0, {n}); got values in "
                             f"[{labels.min()}, {labels.max()}].")
        return labels

    def _mask(self, y_true: Any) -> np.ndarray | None:
        if self.ignore_class is None:
            return None
        labels = _raw(y_true)
        if labels.ndim > 1 and labels.shape[-1] == 1:
            labels = labels[..., 0]
        return labels != self.ignore_class

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        """Per-sample sparse categorical cross-entropy (ignored samples give 0)."""
        labels = self._labels(y_true, y_pred)
        if self.from_logits:
            values = SparseSoftmaxCrossEntropy.apply(y_pred, labels=labels)
        else:
            z = np.eye(_raw(y_pred).shape[-1], dtype=_float_dtype(y_pred))[labels]
            p = ops.clip(y_pred / ops.sum(y_pred, axis=-1, keepdims=True), EPSILON, 1 - EPSILON)
            values = -ops.sum(ops.log(p) * z, axis=-1)
        mask = self._mask(y_true)
        if mask is not None:
            values = values * mask.astype(values.dtype)
        return values

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, Keras's keys."""
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "ignore_class": self.ignore_class,
        }


def _check_same_shape(target: np.ndarray, y_pred: Any) -> None:
    shape = _raw(y_pred).shape
    if target.shape != shape:
        raise ValueError(
            "Arguments `target` and `output` must have the same shape. "
            f"Received: target.shape={target.shape}, output.shape={shape}"
        )


def _to_last(ndim: int, axis: int) -> tuple[int, ...]:
    axis %= ndim
    return tuple(i for i in range(ndim) if i != axis) + (axis,)


# -- registry -----------------------------------------------------------------------------------

_CLASSES: dict[str, type[Loss]] = {
    cls.__name__: cls
    for cls in (
        MeanSquaredError,
        BinaryCrossentropy,
        CategoricalCrossentropy,
        SparseCategoricalCrossentropy,
    )
}
_ALIASES: dict[str, type[Loss]] = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}


def serialize(loss: Loss) -> dict[str, Any]:
    """`{"class_name", "config"}` of a loss instance."""
    if not isinstance(loss, Loss):
        raise TypeError(f"Only Loss instances can be serialized, got {type(loss).__name__}.")
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config: dict[str, Any]) -> Loss:
    """A loss from `{"class_name", "config"}`, with Keras's optional extra keys.

    Keras's `"module"` and `"registered_name"` are accepted; a module other than Keras's or
    numba_gn's, or any other key, is refused with a `ValueError`.
    """
    from numba_gn.params._registry import split_config

    name, inner = split_config(config, "loss")
    cls = (_CLASSES.get(name) or _ALIASES.get(name)) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"Unknown loss {name!r}; known: {sorted({*_CLASSES, *_ALIASES})}.")
    return cls.from_config(inner)


def get(identifier: Any) -> Loss | Callable[..., Any] | None:
    """Resolve a loss identifier.

    Accepts None, a name ("mse", "sparse_categorical_crossentropy", class names), a config
    dict, a Loss instance or class, or a callable `(y_true, y_pred) -> Tensor`.
    """
    if identifier is None or isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(
                f"Could not interpret loss identifier: {identifier!r}; known names: "
                f"{sorted({*_CLASSES, *_ALIASES})}."
            )
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}")
