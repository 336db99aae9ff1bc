"""Activation functions by Keras name, for `Activation` and layers' `activation=` argument.

`get(identifier)` accepts a name ("relu", "leaky_relu", "silu"/"swish", "gelu", "tanh",
"sigmoid", "softmax", "linear"), None (linear), or a callable `Tensor -> Tensor`;
`serialize` gives the name back, as `keras.activations.serialize` does for built-ins.

On bfloat16 input, the activations other than `relu` and `linear` (exact in any dtype) are
computed in float32 and rounded to bfloat16 once (see `numba_gn.layers._bfloat16`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numba_gn.autograd import Tensor, ops, ops_nn
from numba_gn.layers._bfloat16 import in_float32

__all__ = [
    "FastSilu",
    "deserialize",
    "gelu",
    "get",
    "leaky_relu",
    "linear",
    "relu",
    "serialize",
    "sigmoid",
    "silu",
    "softmax",
    "tanh",
]

Activation = Callable[[Any], Any]


def linear(x: Any) -> Any:
    """Identity: `x` unchanged."""
    return x


def relu(x: Any) -> Tensor:
    """`max(x, 0)`."""
    return ops.relu(x)


def leaky_relu(x: Any, negative_slope: float = 0.2) -> Tensor:
    """`max(x, negative_slope * x)`, Keras's "leaky_relu" (slope 0.2 by default)."""
    return in_float32(_leaky_relu, x, negative_slope)


def _leaky_relu(x: Any, negative_slope: float) -> Tensor:
    # Keras's formula, `maximum(x, slope * x)`; a Python float keeps float32 float32.
    return ops.maximum(x, ops.mul(x, float(negative_slope)))


#: The SiLU op (kept under the name the layers first used; the fast sigmoid lives in autograd).
FastSilu = ops_nn.Silu


def silu(x: Any) -> Tensor:
    """`x * sigmoid(x)` (Keras's "silu", alias "swish")."""
    return in_float32(ops.silu, x)


def gelu(x: Any, approximate: bool = False) -> Tensor:
    """Gaussian error linear unit; the exact erf form by default, as Keras."""
    return in_float32(ops.gelu, x, approximate=approximate)


def tanh(x: Any) -> Tensor:
    """Hyperbolic tangent."""
    return in_float32(ops.tanh, x)


def sigmoid(x: Any) -> Tensor:
    """Logistic sigmoid."""
    return in_float32(ops.sigmoid, x)


def softmax(x: Any, axis: int = -1) -> Tensor:
    """Softmax over `axis` (last by default)."""
    return in_float32(ops.softmax, x, axis=axis)


_BY_NAME: dict[str, Activation] = {
    "linear": linear,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "silu": silu,
    "swish": silu,
    "gelu": gelu,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "softmax": softmax,
}


def get(identifier: str | Activation | None) -> Activation:
    """The activation function for a name, None (linear) or a callable (returned as is)."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        try:
            return _BY_NAME[identifier]
        except KeyError:
            raise ValueError(
                f"Could not interpret activation function identifier: {identifier!r}; "
                f"known: {sorted(_BY_NAME)}."
            ) from None
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret activation function identifier: {identifier!r}")


def serialize(activation: Activation) -> str:
    """The Keras name of a built-in activation ("linear" for the identity)."""
    for name, fn in _BY_NAME.items():
        if fn is activation:
            return name
    raise ValueError(
        f"Only the built-in activations {sorted(_BY_NAME)} can be serialized, got {activation!r}."
    )


def deserialize(config: str | dict[str, Any]) -> Activation:
    """An activation from its name or a Keras `{"class_name": "function", "config": name}`."""
    if isinstance(config, dict):
        from numba_gn.params._registry import check_config_envelope

        # The name is looked up among the built-ins whatever the dict says, so a dict that
        # claims another module is refused rather than quietly reinterpreted.
        check_config_envelope(config, "activation")
        config = config.get("config", config.get("class_name"))
    if not isinstance(config, str):
        raise ValueError(f"Could not deserialize activation {config!r}.")
    return get(config)
