"""The `gamma`/`beta` options and weights the normalization layers share, as Keras has them.

`LayerNormalization`, `BatchNormalization` and `GroupNormalization` all take Keras's six
`beta_*`/`gamma_*` initializer, regularizer and constraint arguments, create `gamma`
before `beta` and report the six options under the same config keys.
"""

from __future__ import annotations

from typing import Any

from numba_gn.params import constraints, initializers, regularizers

__all__ = ["add_weights", "config", "configure"]


def configure(
    layer: Any,
    beta_initializer: Any,
    gamma_initializer: Any,
    beta_regularizer: Any,
    gamma_regularizer: Any,
    beta_constraint: Any,
    gamma_constraint: Any,
) -> None:
    """Resolve and store the six options on `layer`; `gamma` and `beta` start as None."""
    layer.beta_initializer = initializers.get(beta_initializer)
    layer.gamma_initializer = initializers.get(gamma_initializer)
    layer.beta_regularizer = regularizers.get(beta_regularizer)
    layer.gamma_regularizer = regularizers.get(gamma_regularizer)
    layer.beta_constraint = constraints.get(beta_constraint)
    layer.gamma_constraint = constraints.get(gamma_constraint)
    layer.gamma = None
    layer.beta = None


def add_weights(layer: Any, shape: tuple[int, ...], *, scale: bool, center: bool) -> None:
    """Create `gamma` (when `scale`) then `beta` (when `center`) of `shape`."""
    if scale:
        layer.gamma = layer.add_weight(
            name="gamma",
            shape=shape,
            initializer=layer.gamma_initializer,
            regularizer=layer.gamma_regularizer,
            constraint=layer.gamma_constraint,
        )
    if center:
        layer.beta = layer.add_weight(
            name="beta",
            shape=shape,
            initializer=layer.beta_initializer,
            regularizer=layer.beta_regularizer,
            constraint=layer.beta_constraint,
        )


def config(layer: Any) -> dict[str, Any]:
    """The six options' config entries, in Keras's order."""
    return {
        "beta_initializer": initializers.serialize(layer.beta_initializer),
        "gamma_initializer": initializers.serialize(layer.gamma_initializer),
        "beta_regularizer": regularizers.serialize(layer.beta_regularizer),
        "gamma_regularizer": regularizers.serialize(layer.gamma_regularizer),
        "beta_constraint": constraints.serialize(layer.beta_constraint),
        "gamma_constraint": constraints.serialize(layer.gamma_constraint),
    }
