"""Reshaping layers: `Reshape`, `ZeroPadding2D`, `Cropping2D`, `UpSampling1D/2D`.

As `keras.layers`: the same arguments, defaults, config keys and output-shape arithmetic.
`UpSampling2D(interpolation="bilinear")` reproduces Keras's NumPy backend (the half-pixel
linear resize of `jax.image.resize`; see [resize_linear][numba_gn.autograd.resize_linear]).
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from numba_gn import _checks
from numba_gn.autograd import Tensor, ops
from numba_gn.autograd.ops_resize import repeat, resize_linear
from numba_gn.layers import _spatial
from numba_gn.layers.base import Layer, Shape
from numba_gn.layers.input_spec import InputSpec

__all__ = ["Cropping2D", "Reshape", "UpSampling1D", "UpSampling2D", "ZeroPadding2D"]


def _reshape_output(
    input_shape: Sequence[int | None], target: tuple[int, ...]
) -> tuple[int | None, ...]:
    """Keras's `compute_reshape_output_shape`: `-1` resolved (None if it cannot be)."""
    if None in input_shape:
        return tuple(None if d == -1 else d for d in target)
    size = math.prod(input_shape)  # type: ignore[arg-type]
    if -1 not in target:
        if size != math.prod(target):
            raise ValueError(
                "The total size of the tensor must be unchanged. Received: "
                f"input_shape={tuple(input_shape)}, target_shape={target}"
            )
        return target
    known = math.prod(d for d in target if d != -1)
    if known == 0 or size % known != 0:
        raise ValueError(
            "The total size of the tensor must be unchanged, however, the input size cannot "
            "by divided by the specified dimensions in target_shape. Received: "
            f"input_shape={tuple(input_shape)}, target_shape={target}"
        )
    return tuple(size // known if d == -1 else d for d in target)


class Reshape(Layer):
    """Reshape every sample (all axes but the batch axis) to `target_shape`.

    Args:
        target_shape: The new shape of a sample, a tuple of ints; one entry may be -1, inferred
            from the size of the sample.
        **kwargs: The base layer's keyword arguments (`name`, `dtype`, `trainable`).

    The batch axis is kept: `Reshape((4, 3))` maps `(N, 12)` to `(N, 4, 3)`.
    """

    def __init__(self, target_shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(target_shape, (list, tuple)) or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, (bool, np.bool_))
            for d in target_shape
        ):
            raise TypeError(
                "`target_shape` must be a tuple of ints. "
                f"Received: target_shape={_checks.show(target_shape)}."
            )
        target = tuple(int(d) for d in target_shape)
        if any(d < -1 or d > sys.maxsize for d in target):
            raise ValueError(
                "Each dimension in `target_shape` must be a non-negative integer, or `-1` for "
                f"a single unknown dimension. Received: target_shape={target}."
            )
        if target.count(-1) > 1:
            raise ValueError(
                "There must be at most one unknown dimension (-1) in `target_shape`. "
                f"Received: target_shape={target}."
            )
        self.target_shape = target

    def call(self, inputs: Tensor) -> Tensor:
        """`inputs` reshaped to `(batch, *target_shape)`."""
        resolved = _reshape_output(inputs.shape[1:], self.target_shape)
        return ops.reshape(inputs, (inputs.shape[0], *resolved))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """`(batch, *target_shape)` with `-1` resolved (None when a dim is unknown)."""
        return (input_shape[0], *_reshape_output(tuple(input_shape)[1:], self.target_shape))

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for Reshape."""
        return {**super().get_config(), "target_shape": self.target_shape}


class ZeroPadding2D(Layer):
    """Pad the rows and columns of an image batch with zeros.

    Args:
        padding: An int (the same on all four sides), a pair `(rows, cols)` padded
            symmetrically, or `((top, bottom), (left, right))`; non-negative ints.
        data_format: "channels_last" (default, `(N, H, W, C)`) or "channels_first"
            (`(N, C, H, W)`).
        **kwargs: The base layer's keyword arguments.
    """

    def __init__(
        self, padding: Any = (1, 1), data_format: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.data_format = _spatial.data_format(data_format)
        self.padding = _spatial.padding_pairs(padding, "padding")
        self.input_spec = InputSpec(ndim=4)

    def call(self, inputs: Tensor) -> Tensor:
        """The zero-padded Tensor."""
        if self.data_format == "channels_first":
            widths = ((0, 0), (0, 0), *self.padding)
        else:
            widths = ((0, 0), *self.padding, (0, 0))
        return ops.pad(inputs, widths)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The input shape with the padding added to the spatial sizes (None stays None)."""
        shape = list(input_shape)
        for (before, after), ax in zip(
            self.padding, _spatial.spatial_axes(self.data_format, 2), strict=True
        ):
            if shape[ax] is not None:
                shape[ax] += before + after
        return tuple(shape)

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for ZeroPadding2D."""
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}


class Cropping2D(Layer):
    """Remove rows and columns at the borders of an image batch.

    Args:
        cropping: An int (the same on all four sides), a pair `(rows, cols)` cropped
            symmetrically, or `((top, bottom), (left, right))`; non-negative ints. What is
            cropped along an axis must be smaller than the axis (`ValueError` otherwise).
        data_format: "channels_last" (default) or "channels_first".
        **kwargs: The base layer's keyword arguments.
    """

    def __init__(
        self, cropping: Any = ((0, 0), (0, 0)), data_format: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.data_format = _spatial.data_format(data_format)
        self.cropping = _spatial.padding_pairs(cropping, "cropping")
        self.input_spec = InputSpec(ndim=4)

    def _check(self, shape: Sequence[int | None], what: str) -> None:
        axes = _spatial.spatial_axes(self.data_format, 2)
        for (before, after), ax in zip(self.cropping, axes, strict=True):
            if shape[ax] is not None and before + after >= shape[ax]:  # type: ignore[operator]
                raise ValueError(
                    "Values in `cropping` argument should be smaller than the corresponding "
                    f"spatial dimension of the input. Received: {what}={tuple(shape)}, "
                    f"cropping={self.cropping}"
                )

    def call(self, inputs: Tensor) -> Tensor:
        """The cropped Tensor (a view of the input)."""
        self._check(inputs.shape, "inputs.shape")
        index = [slice(None)] * 4
        for (before, after), ax in zip(
            self.cropping, _spatial.spatial_axes(self.data_format, 2), strict=True
        ):
            index[ax] = slice(before, inputs.shape[ax] - after)
        return ops.getitem(inputs, tuple(index))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The input shape less the cropping (None stays None)."""
        self._check(input_shape, "input_shape")
        shape = list(input_shape)
        for (before, after), ax in zip(
            self.cropping, _spatial.spatial_axes(self.data_format, 2), strict=True
        ):
            if shape[ax] is not None:
                shape[ax] -= before + after
        return tuple(shape)

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for Cropping2D."""
        return {
            **super().get_config(),
            "cropping": self.cropping,
            "data_format": self.data_format,
        }


class UpSampling1D(Layer):
    """Repeat each step of a `(batch, steps, features)` input `size` times.

    Args:
        size: The upsampling factor, a positive int (default 2).
        **kwargs: The base layer's keyword arguments.
    """

    def __init__(self, size: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral):
            raise TypeError(f"Expected an integer value for `size`, got {type(size)}.")
        if not 0 < size <= sys.maxsize:
            raise ValueError(
                f"Argument `size` should be a positive integer. Received: size={_checks.show(size)}"
            )
        self.size = int(size)
        self.input_spec = InputSpec(ndim=3)

    def call(self, inputs: Tensor) -> Tensor:
        """Each step repeated `size` times."""
        return repeat(inputs, self.size, axis=1)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """`(batch, size * steps, features)`."""
        steps = input_shape[1]
        return (input_shape[0], None if steps is None else self.size * steps, input_shape[2])

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for UpSampling1D."""
        return {**super().get_config(), "size": self.size}


# Keras's other resize methods: valid there, not implemented here.
_OTHER_INTERPOLATIONS = ("lanczos3", "lanczos5", "bicubic")


class UpSampling2D(Layer):
    """Upsample the rows and columns of an image batch by integer factors.

    Args:
        size: The factors `(rows, cols)`, or one int for both; positive ints (default 2, 2).
        data_format: "channels_last" (default) or "channels_first".
        interpolation: "nearest" (default: each pixel repeated) or "bilinear" (Keras's
            half-pixel linear resize, edges clamped). Keras's other methods ("bicubic",
            "lanczos3", "lanczos5") raise `NotImplementedError`.
        **kwargs: The base layer's keyword arguments.

    Integer inputs stay integers: the bilinear result is rounded and clipped to the input's
    range, as Keras does.
    """

    def __init__(
        self,
        size: int | Sequence[int] = (2, 2),
        data_format: str | None = None,
        interpolation: str = "nearest",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_format = _spatial.data_format(data_format)
        self.size = _spatial.int_tuple(size, 2, "size")
        if not isinstance(interpolation, str):
            raise TypeError(
                "`interpolation` must be a string. "
                f"Received: interpolation={_checks.show(interpolation)}"
            )
        interpolation = interpolation.lower()
        if interpolation in _OTHER_INTERPOLATIONS:
            raise NotImplementedError(
                f"UpSampling2D: interpolation={interpolation!r} is not supported; use "
                "'nearest' or 'bilinear'."
            )
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(
                "Invalid value for argument `interpolation`. Expected one of "
                f"('nearest', 'bilinear'). Received: interpolation={interpolation!r}"
            )
        self.interpolation = interpolation
        self.input_spec = InputSpec(ndim=4)

    def call(self, inputs: Tensor) -> Tensor:
        """The upsampled Tensor."""
        axes = _spatial.spatial_axes(self.data_format, 2)
        if self.interpolation == "nearest":
            x = inputs
            for ax, factor in zip(axes, self.size, strict=True):
                x = repeat(x, factor, axis=ax)
            return x
        sizes = [inputs.shape[ax] * f for ax, f in zip(axes, self.size, strict=True)]
        if inputs.dtype.kind == "f":
            return resize_linear(inputs, sizes, axes)
        # Keras resizes integers in float32, then rounds and clips to the input's range.
        data = inputs.numpy()
        out = resize_linear(data.astype(np.float32), sizes, axes).numpy()
        if data.size:
            out = np.clip(np.round(out), data.min(), data.max())
        return Tensor(out.astype(data.dtype))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The input shape with the spatial sizes multiplied by `size` (None stays None)."""
        shape = list(input_shape)
        for ax, factor in zip(_spatial.spatial_axes(self.data_format, 2), self.size, strict=True):
            if shape[ax] is not None:
                shape[ax] *= factor
        return tuple(shape)

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for UpSampling2D."""
        return {
            **super().get_config(),
            "size": self.size,
            "data_format": self.data_format,
            "interpolation": self.interpolation,
        }
