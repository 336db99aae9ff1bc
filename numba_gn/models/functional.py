"""`Functional`: the class of models made with `Model(inputs, outputs)`.

Keras's functional API: call layers on symbolic tensors (`Input(...)`), then make a model
from the inputs and the outputs. The model replays the recorded layer calls on real arrays, in
topological order, dropping each intermediate result as soon as no later call needs it.
"""

from __future__ import annotations

from typing import Any

from numba_gn.models.model import Model

__all__ = ["Functional"]


class Functional(Model):
    """A model defined by a graph of layer calls (what `Model(inputs, outputs)` returns).

    Example::

        a = numba_gn.Input((16,), name="a")
        b = numba_gn.Input((8,), name="b")
        h = numba_gn.layers.Dense(8, activation="relu")(a)
        out = numba_gn.layers.Concatenate()([h, b])
        model = numba_gn.Model({"a": a, "b": b}, numba_gn.layers.Dense(1)(out))

    Several inputs and outputs are given as lists or dicts (the model then takes and returns
    the same structure; a dict is flattened in sorted-key order, as Keras does); a layer called
    several times is shared (one set of weights). `layers` lists the layers in Keras's order,
    `InputLayer`s included, which is also the order of `weights`.

    Args:
        inputs: A symbolic tensor from `Input()`, or a list or dict of them.
        outputs: A symbolic tensor computed from the inputs, or a list or dict of them.
        name: Default `"functional"`, `"functional_1"`, ...
        trainable: `False` freezes every layer of the graph.

    Raises:
        ValueError: At construction, naming the tensor or layer at fault: an input that is not
            an `Input()` tensor or is given twice, an output that cannot be computed from the
            inputs, an input no output uses, two layers with one name.
    """

    def __init__(
        self, inputs: Any, outputs: Any, name: str | None = None, trainable: bool = True
    ) -> None:
        super().__init__(inputs, outputs, name=name, trainable=trainable)
