"""`Dense`: `activation(x @ kernel + bias)` on the last axis, as `keras.layers.Dense`."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from numba_gn import _checks
from numba_gn.autograd import Context, Function, Tensor
from numba_gn.layers import activations
from numba_gn.layers._bfloat16 import product
from numba_gn.layers.base import Layer, Shape
from numba_gn.layers.input_spec import InputSpec, missing_batch_axis_hint
from numba_gn.params import constraints, initializers, regularizers

__all__ = ["Dense", "Linear"]


class Linear(Function):
    """`x @ kernel (+ bias)` over the last axis of `x`, as one op.

    One fused op instead of `matmul` + `add` saves a tape node and, for inputs of rank > 2,
    turns the batched matmul into one 2-D BLAS call in each direction.
    """

    @staticmethod
    def forward(
        ctx: Context, x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None
    ) -> np.ndarray:
        """`x @ kernel + bias` as one 2-D matmul."""
        x2 = x.reshape(-1, x.shape[-1])
        out = x2 @ kernel
        if bias is not None:
            out += bias
        ctx.save_for_backward(x2, kernel)
        ctx.x_shape = x.shape
        ctx.has_bias = bias is not None
        return out.reshape(*x.shape[:-1], kernel.shape[1])

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        """`g @ kernel.T`, `x.T @ g` and `sum(g)`."""
        x2, kernel = ctx.saved_tensors
        need_x, need_k, need_b = ctx.needs_input_grad
        g2 = g.reshape(-1, kernel.shape[1])
        dx = (g2 @ kernel.T).reshape(ctx.x_shape) if need_x else None
        dk = x2.T @ g2 if need_k else None
        # ones @ g: one BLAS call, much faster than g.sum(axis=0) on tall, narrow arrays
        db = np.ones(g2.shape[0], dtype=g2.dtype) @ g2 if need_b and ctx.has_bias else None
        return dx, dk, db


def _unsupported(name: str, value: Any) -> None:
    if value is not None:
        raise NotImplementedError(f"Dense: `{name}` is not supported (got {value!r}); use None.")


class Dense(Layer):
    """A densely connected layer: `activation(inputs @ kernel + bias)`.

    Parameters
    ----------
    units : int
        Size of the last axis of the output.
    activation : str or callable, optional
        None means linear. See `numba_gn.layers.activations`.
    use_bias : bool, default True
        A bool (a truthy string is a `TypeError`).
    kernel_initializer, bias_initializer : default "glorot_uniform" and "zeros"
    kernel_regularizer, bias_regularizer, kernel_constraint, bias_constraint : optional
    **kwargs
        `name`, `dtype`, `trainable` (see `Layer`).

    Notes
    -----
    The kernel has shape `(input_dim, units)`; inputs of any rank ≥ 2 are transformed along
    their last axis. `activity_regularizer`, `lora_*` and `quantization_config` are
    accepted as None only (Keras's config keys).
    """

    def __init__(
        self,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        quantization_config: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Keras's ValueError, wrong types included; stricter: bools and sizes no array can have.
        if (
            isinstance(units, (bool, np.bool_))
            or not isinstance(units, (int, np.integer))
            or not 0 < units <= sys.maxsize
        ):
            raise ValueError(
                f"Received an invalid value for `units`, expected a positive integer. "
                f"Received: units={_checks.show(units)}"
            )
        for name, value in (
            ("activity_regularizer", activity_regularizer),
            ("lora_rank", lora_rank),
            ("lora_alpha", lora_alpha),
            ("quantization_config", quantization_config),
        ):
            _unsupported(name, value)
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = _checks.boolean(use_bias, "use_bias")
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.kernel: Any = None
        self.bias: Any = None

    def build(self, input_shape: Shape) -> None:
        """Create `kernel` (input_dim, units) and `bias` (units,)."""
        if len(input_shape) < 2:
            raise ValueError(
                f"Dense expects inputs of rank >= 2, got shape {input_shape}."
                f"{missing_batch_axis_hint(len(input_shape), 2)}"
            )
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"The last dimension of the inputs to Dense should be defined, got {input_shape}."
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_dim, self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.input_spec = InputSpec(min_ndim=2, axes={-1: input_dim})

    def call(self, inputs: Tensor) -> Tensor:
        """`activation(inputs @ kernel + bias)`."""
        return self.activation(product(self, Linear.apply, inputs))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """`input_shape` with the last axis replaced by `units`."""
        return (*tuple(input_shape)[:-1], self.units)

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for Dense."""
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }
