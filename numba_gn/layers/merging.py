"""Merging layers: `Add`, `Subtract`, `Multiply`, `Average` and `Concatenate`.

Each takes a list (or tuple) of inputs, as `keras.layers.Add()([x1, x2])` does; `build` and
`compute_output_shape` take the list of their shapes. The elementwise layers broadcast as
Keras's `Merge` does: the batch sizes must agree, the other dimensions broadcast from the
right, and an input of lower rank gets size-1 axes inserted after the batch axis. The shape
checks raise Keras's `ValueError` messages. Masks are not supported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from numba_gn import _checks
from numba_gn.autograd import Tensor, ops
from numba_gn.layers.base import Layer, Shape

__all__ = ["Add", "Average", "Concatenate", "Multiply", "Subtract"]


def _is_shape_list(input_shape: object) -> bool:
    return (
        isinstance(input_shape, (list, tuple))
        and len(input_shape) > 0
        and all(isinstance(s, (list, tuple)) for s in input_shape)
    )


def _describe(value: object) -> str:
    """A short description of a call's argument: its type and shape, not its values."""
    shape = getattr(value, "shape", None)
    return f"<{type(value).__name__} of shape {shape}>" if shape is not None else repr(value)


def _elementwise_shape(shape1: Shape, shape2: Shape) -> Shape:
    """The shape of an elementwise op on `shape1` and `shape2` (no batch axis), Keras's."""
    if len(shape1) < len(shape2):
        shape1, shape2 = shape2, shape1
    if not shape2:
        return tuple(shape1)
    out = list(shape1[: len(shape1) - len(shape2)])
    for i, j in zip(shape1[len(shape1) - len(shape2):], shape2, strict=True):
        if i is None or j is None:
            out.append(None)
        elif i == 1:
            out.append(j)
        elif j == 1 or i == j:
            out.append(i)
        else:
            raise ValueError(
                "Inputs have incompatible shapes. "
                f"Received shapes {tuple(shape1)} and {tuple(shape2)}"
            )
    return tuple(out)


def _common_dtype(xs: Sequence[Tensor]) -> list[Tensor]:
    """`xs` with the non-float inputs cast to the float inputs' dtype, when both are mixed.

    Keras promotes `int32 + float32` to `float32`; NumPy would give `float64`.
    """
    floats = [x.dtype for x in xs if x.dtype.kind == "f"]
    if not floats or len(floats) == len(xs):
        return list(xs)
    dtype = np.result_type(*floats)
    return [x if x.dtype.kind == "f" else ops.cast(x, dtype) for x in xs]


class _Merge(Layer):
    """Shared implementation of the elementwise merging layers (Keras's `Merge`)."""

    _takes_input_list = True

    def __init__(self, **kwargs: Any) -> None:
        # Only the base layer's keyword arguments, as Keras's Merge.
        super().__init__(**kwargs)

    def _merge_function(self, inputs: list[Tensor]) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def _check_list(input_shape: Any) -> None:
        if isinstance(input_shape, (list, tuple)) and len(input_shape) == 0:
            raise ValueError(
                "A merge layer should be called on a list of at least 1 input. "
                f"Received 0 inputs. Full input_shape received: {input_shape}"
            )
        if not _is_shape_list(input_shape):
            raise ValueError(
                "A merge layer should be called on a list of inputs. "
                f"Received: input_shape={input_shape} (not a list of shapes)"
            )

    def build(self, input_shape: Any) -> None:
        """Check the list of input shapes (the merging layers have no weights)."""
        self.compute_output_shape(input_shape)

    def call(self, inputs: Sequence[Tensor]) -> Tensor:
        """The merged Tensor; inputs of lower rank get size-1 axes after the batch axis."""
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                "A merge layer should be called on a list of inputs. "
                f"Received: inputs={_describe(inputs)} (not a list of tensors)"
            )
        xs = [x if isinstance(x, Tensor) else Tensor(np.asarray(x)) for x in inputs]
        self.compute_output_shape([x.shape for x in xs])  # the checks, on every call
        ranks = [x.ndim for x in xs]
        top = max(ranks)
        if min(ranks) != top:
            xs = [
                x if x.ndim == top
                else ops.reshape(x, (x.shape[0], *(1,) * (top - x.ndim), *x.shape[1:]))
                for x in xs
            ]
        return self._merge_function(_common_dtype(xs))

    def compute_output_shape(self, input_shape: Sequence[Shape]) -> Shape:
        """The broadcast shape of the inputs (Keras's rules; `ValueError` if incompatible)."""
        self._check_list(input_shape)
        shapes = [tuple(s) for s in input_shape]
        batch_sizes = {s[0] for s in shapes if s} - {None}
        if len(batch_sizes) > 1:
            raise ValueError(
                "Cannot merge tensors with different batch sizes. "
                f"Received tensors with shapes {list(shapes)}"
            )
        out = shapes[0][1:]
        for s in shapes[1:]:
            out = _elementwise_shape(out, s[1:])
        batch = next(iter(batch_sizes)) if batch_sizes else None
        return (batch, *out)


class Add(_Merge):
    """Elementwise sum of a list of inputs (all of one shape, or broadcastable).

    `Add()([x1, x2, ...])` returns `x1 + x2 + ...`. Takes only the base layer's keyword
    arguments (`name`, `dtype`, `trainable`, `autocast`).
    """

    def _merge_function(self, inputs: list[Tensor]) -> Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = ops.add(out, x)
        return out


class Subtract(_Merge):
    """Elementwise difference of exactly two inputs: `Subtract()([x1, x2])` is `x1 - x2`.

    Any other number of inputs raises Keras's `ValueError`.
    """

    def compute_output_shape(self, input_shape: Sequence[Shape]) -> Shape:
        """The broadcast shape of the two inputs."""
        out = super().compute_output_shape(input_shape)
        if len(input_shape) != 2:
            raise ValueError(
                "A `Subtract` layer should be called on exactly 2 inputs. "
                f"Received: input_shape={input_shape}"
            )
        return out

    def _merge_function(self, inputs: list[Tensor]) -> Tensor:
        return ops.sub(inputs[0], inputs[1])


class Multiply(_Merge):
    """Elementwise product of a list of inputs: `Multiply()([x1, x2, ...])`."""

    def _merge_function(self, inputs: list[Tensor]) -> Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = ops.mul(out, x)
        return out


class Average(_Merge):
    """Elementwise mean of a list of inputs: `(x1 + x2 + ...) / n`, summed in input order."""

    def _merge_function(self, inputs: list[Tensor]) -> Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = ops.add(out, x)
        # A Python float keeps float32 inputs float32 (integer inputs give float64, as Keras).
        return ops.div(out, float(len(inputs)))


class Concatenate(Layer):
    """Join a list of inputs along `axis`; every other dimension must match.

    Args:
        axis: The axis to concatenate along (default -1, the channels of channels-last
            inputs). Negative values count from the end.
        **kwargs: The base layer's keyword arguments (`name`, `dtype`, `trainable`).

    Mismatched shapes raise Keras's `ValueError`; `None` dimensions match anything.
    """

    _takes_input_list = True

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = _checks.axis(axis, "axis")

    def _check_shapes(self, input_shape: Any) -> list[Shape]:
        if not _is_shape_list(input_shape):
            raise ValueError(
                "A `Concatenate` layer should be called on a list of at least 1 input. "
                f"Received: input_shape={input_shape}"
            )
        shapes = [tuple(s) for s in input_shape]
        error = (
            "A `Concatenate` layer requires inputs with matching shapes except for the "
            f"concatenation axis. Received: input_shape={input_shape}"
        )
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise ValueError(error)
        (rank,) = ranks
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"`axis`={self.axis} is out of range for inputs of rank {rank}. "
                f"Received: input_shape={input_shape}"
            )
        axis = self.axis % rank
        for i in range(rank):
            if i == axis:
                continue
            sizes = {s[i] for s in shapes} - {None}
            if len(sizes) > 1:
                raise ValueError(error)
        return shapes

    def build(self, input_shape: Any) -> None:
        """Check the list of input shapes (no weights)."""
        self._check_shapes(input_shape)

    def call(self, inputs: Sequence[Tensor]) -> Tensor:
        """The inputs joined along `axis`."""
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                "A `Concatenate` layer should be called on a list of inputs. "
                f"Received: inputs={_describe(inputs)}"
            )
        xs = [x if isinstance(x, Tensor) else Tensor(np.asarray(x)) for x in inputs]
        self._check_shapes([x.shape for x in xs])
        return ops.concatenate(_common_dtype(xs), axis=self.axis)

    def compute_output_shape(self, input_shape: Sequence[Shape]) -> Shape:
        """The common shape, with the sizes along `axis` added (None if any is None)."""
        shapes = self._check_shapes(input_shape)
        out = list(shapes[0])
        axis = self.axis % len(out)
        for s in shapes[1:]:
            if out[axis] is None or s[axis] is None:
                out[axis] = None
                break
            out[axis] += s[axis]
        return tuple(out)

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for Concatenate."""
        return {**super().get_config(), "axis": self.axis}
