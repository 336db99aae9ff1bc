"""Small weightless layers: `Flatten`, `Activation` and `Dropout` (Keras's API)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from numba_gn import _checks
from numba_gn.autograd import Tensor, ops
from numba_gn.layers import activations
from numba_gn.layers.base import Layer, Shape

__all__ = ["Activation", "Dropout", "Flatten"]


class Flatten(Layer):
    """Flatten every axis but the batch axis: `(N, d1, d2, ...) -> (N, d1 * d2 * ...)`.

    Parameters
    ----------
    data_format : str, optional
        "channels_last" (default) or "channels_first"; with channels-first inputs the channels
        are moved last before flattening, as Keras does, so the order matches a channels-last
        model.
    """

    def __init__(self, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last", "channels_first"):
            raise ValueError(
                "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
                f"Received: data_format={data_format!r}"
            )
        self.data_format = data_format or "channels_last"

    def call(self, inputs: Tensor) -> Tensor:
        """The flattened Tensor."""
        x = inputs
        if self.data_format == "channels_first" and x.ndim > 2:
            x = ops.transpose(x, (0, *range(2, x.ndim), 1))
        return ops.reshape(x, (x.shape[0], -1))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """`(batch, product of the other dims)` (None if any is unknown)."""
        rest = tuple(input_shape)[1:]
        size = None if any(d is None for d in rest) else math.prod(rest)  # type: ignore[arg-type]
        return (input_shape[0], size)

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for Flatten."""
        return {**super().get_config(), "data_format": self.data_format}


class Activation(Layer):
    """Apply an activation function, by name or as a callable.

    Names: "relu", "leaky_relu", "silu" (or "swish"), "gelu", "tanh", "sigmoid", "softmax",
    "linear".
    """

    supports_masking = True

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def call(self, inputs: Tensor) -> Tensor:
        """`activation(inputs)`."""
        return self.activation(inputs)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The input shape."""
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for Activation."""
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


_MAX_DIM = np.iinfo(np.intp).max  # no array dimension can be larger


def _check_noise_shape(noise_shape: object) -> tuple[int | None, ...] | None:
    """`noise_shape` as a tuple of positive ints and Nones (or None)."""
    if noise_shape is None:
        return None
    if isinstance(noise_shape, Sequence) and not isinstance(noise_shape, (str, bytes)):
        dims = tuple(noise_shape)
        if all(
            d is None
            or (isinstance(d, numbers.Integral) and not isinstance(d, (bool, np.bool_)))
            for d in dims
        ):
            if any(d is not None and not 0 < d <= _MAX_DIM for d in dims):
                raise ValueError(
                    "`noise_shape` entries must be positive ints or None, got "
                    f"noise_shape={_checks.show(noise_shape)}."
                )
            return tuple(None if d is None else int(d) for d in dims)
    raise TypeError(
        "`noise_shape` must be None or a tuple of positive ints and Nones, got "
        f"noise_shape={_checks.show(noise_shape)}."
    )


class Dropout(Layer):
    """Inverted dropout, active only when called with `training=True`.

    Each element is kept with probability `1 - rate` and scaled by `1 / (1 - rate)`
    (zeroed otherwise), so the expected output equals the input and inference needs no change.

    Parameters
    ----------
    rate : float in [0, 1]
        Fraction of the inputs to drop (1 drops everything; nan and inf are rejected).
    noise_shape : tuple, optional
        Shape of the keep mask, broadcast over the input (`None` entries take the input's
        size): `(None, 1, C)` drops whole channels of a `(N, T, C)` input. Entries are
        None or positive ints.
    seed : int, optional
        Seeds the layer's generator: the same seed gives the same sequence of masks. Any int
        is accepted (reduced modulo 2**64, as the initializers do).
    """

    supports_masking = True

    def __init__(
        self,
        rate: float,
        noise_shape: Sequence[int | None] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        # Checked before the base class, so a bad value fails first (as Keras orders it).
        # ValueError for every bad rate, wrong types included, as Keras raises.
        if (
            isinstance(rate, (bool, np.bool_))
            or not isinstance(rate, numbers.Real)
            or not 0 <= rate <= 1  # also false for nan; ints beyond floats compare exactly
        ):
            raise ValueError(
                "Invalid value received for argument `rate`. Expected a float value between "
                f"0 and 1. Received: rate={_checks.show(rate)}"
            )
        seed = _checks.seed(seed)
        noise_shape = _check_noise_shape(noise_shape)
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.noise_shape = noise_shape
        self.seed = seed
        self._rng = np.random.default_rng(None if seed is None else seed % 2**64)

    def call(self, inputs: Tensor, training: bool = False) -> Tensor:
        """`inputs` unchanged unless `training`; then the masked, rescaled inputs.

        A `noise_shape` must have the input's rank (`ValueError` otherwise).
        """
        if not training or self.rate == 0:
            return inputs
        x = inputs
        shape = x.shape
        if self.noise_shape is not None:
            if len(self.noise_shape) != len(shape):
                raise ValueError(
                    f"`noise_shape`={self.noise_shape} must have the rank of the input, "
                    f"got an input of shape {shape}."
                )
            shape = tuple(
                s if n is None else n for s, n in zip(shape, self.noise_shape, strict=True)
            )
        keep = 1.0 - self.rate
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(self.compute_dtype)
        if keep == 0:
            scaled = np.zeros(shape, dtype=dtype)
        else:
            scaled = (self._rng.random(shape) < keep).astype(dtype) * dtype.type(1.0 / keep)
        return ops.mul(x, scaled)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The input shape."""
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for Dropout."""
        return {
            **super().get_config(),
            "rate": self.rate,
            "seed": self.seed,
            "noise_shape": self.noise_shape,
        }
