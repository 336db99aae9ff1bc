"""Symbolic tensors and the nodes that connect them: the graph of Keras's functional API.

`Input(shape)` returns a [KerasTensor][numba_gn.layers.symbolic.KerasTensor]: a shape (batch
axis `None`) and a dtype, with no data. Calling a layer on symbolic tensors builds the layer
from their shapes, records a [Node][numba_gn.layers.symbolic.Node] (which layer was called on
which tensors, with which other arguments) and returns symbolic outputs; a model then replays
the recorded nodes on real arrays (`numba_gn.Model(inputs, outputs)`).

Each symbolic tensor knows where it comes from, as in Keras: `tensor._keras_history` is
`(layer, node_index, tensor_index)`, the layer that produced it, which of that layer's calls
(`layer._inbound_nodes[node_index]`) and which of that call's outputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

__all__ = ["KerasHistory", "KerasTensor", "Node", "is_symbolic", "map_symbolic"]

_tensor_ids = itertools.count()


class KerasHistory(NamedTuple):
    """Where a symbolic tensor comes from.

    Output `tensor_index` of the call `operation._inbound_nodes[node_index]`.
    """

    operation: Any
    node_index: int
    tensor_index: int


class KerasTensor:
    """A symbolic tensor: the shape and dtype of data that will flow through a model.

    Made by `Input(...)` and by calling layers on other symbolic tensors; it holds no
    values. Pass it to layers to build a graph, then to `numba_gn.Model(inputs, outputs)`.

    Args:
        shape: The shape, `None` for unknown dimensions (the batch axis first).
        dtype: The dtype name (`"float32"`).
        name: Default `"keras_tensor"`, `"keras_tensor_1"`, ... (Keras's names).

    Attributes:
        shape: The shape as a tuple.
        dtype: The dtype name.
        name: The tensor's name (an `Input`'s name is its layer's).
        ndim: The rank.
    """

    __slots__ = ("shape", "dtype", "name", "_keras_history", "__weakref__")

    def __init__(self, shape: tuple[int | None, ...], dtype: Any = "float32",
                 name: str | None = None) -> None:
        self.shape: tuple[int | None, ...] = tuple(shape)
        self.dtype: str = np.dtype(dtype).name
        if name is None:
            n = next(_tensor_ids)
            name = "keras_tensor" if n == 0 else f"keras_tensor_{n}"
        self.name: str = name
        self._keras_history: KerasHistory | None = None

    @property
    def ndim(self) -> int:
        """The number of axes."""
        return len(self.shape)

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        # np.asarray would otherwise make a 0-d object array of it and fail far from here.
        raise TypeError(
            f"{self!r} is symbolic: it has a shape but no values. Build a model with "
            "`numba_gn.Model(inputs, outputs)` and call the model on arrays instead."
        )

    def __bool__(self) -> bool:
        raise TypeError(f"{self!r} is symbolic and has no truth value.")

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


class Node:
    """One call of a layer on symbolic tensors: its arguments and its symbolic outputs.

    Creating a node appends it to `operation._inbound_nodes` and stamps each output with
    its `_keras_history`. `call_args`/`call_kwargs` are kept as given, symbolic tensors
    included, so that a model can replay the call with real values in their place.

    Args:
        operation: The layer called.
        call_args: The positional arguments (the inputs first); empty for an `InputLayer`.
        call_kwargs: The keyword arguments (`training`, `mask`, ...).
        outputs: The symbolic outputs, in order.

    Attributes:
        input_tensors: The symbolic tensors among the arguments, in order.
        outputs: The symbolic outputs.
        is_input: Whether the node has no symbolic input (an `InputLayer`'s).
        parent_nodes: The nodes that produced `input_tensors`.
    """

    __slots__ = ("operation", "call_args", "call_kwargs", "outputs", "input_tensors")

    def __init__(self, operation: Any, call_args: tuple[Any, ...] = (),
                 call_kwargs: Mapping[str, Any] | None = None,
                 outputs: list[KerasTensor] | tuple[KerasTensor, ...] = ()) -> None:
        self.operation = operation
        self.call_args = tuple(call_args)
        self.call_kwargs = dict(call_kwargs or {})
        self.outputs = list(outputs)
        found: list[KerasTensor] = []
        map_symbolic(lambda t: found.append(t) or t, (self.call_args, self.call_kwargs))
        self.input_tensors = found
        with operation._build_lock:
            node_index = len(operation._inbound_nodes)
            operation._inbound_nodes.append(self)
        for i, tensor in enumerate(self.outputs):
            tensor._keras_history = KerasHistory(operation, node_index, i)

    @property
    def is_input(self) -> bool:
        """Whether the node has no symbolic input (the node of an `InputLayer`)."""
        return not self.input_tensors

    @property
    def parent_nodes(self) -> list[Node]:
        """The nodes that produced this node's symbolic inputs, in order."""
        out = []
        for t in self.input_tensors:
            history = t._keras_history
            if history is not None:
                out.append(history.operation._inbound_nodes[history.node_index])
        return out

    def __repr__(self) -> str:
        return f"<Node of {self.operation.name!r}: {len(self.input_tensors)} input(s)>"


def map_symbolic(fn: Callable[[KerasTensor], Any], value: Any) -> Any:
    """`value` with each symbolic tensor `t` in it as `fn(t)`.

    Lists, tuples and dicts are searched; everything else is kept as it is.
    """
    if isinstance(value, KerasTensor):
        return fn(value)
    if isinstance(value, list):
        return [map_symbolic(fn, v) for v in value]
    if isinstance(value, tuple):
        items = [map_symbolic(fn, v) for v in value]
        return type(value)._make(items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {k: map_symbolic(fn, v) for k, v in value.items()}
    return value


def is_symbolic(value: Any) -> bool:
    """Whether `value` is a symbolic tensor, or a list, tuple or dict holding one.

    Only the top level is searched: `value` is a layer's inputs.
    """
    if isinstance(value, KerasTensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, KerasTensor) for v in value)
    if isinstance(value, dict):
        return any(isinstance(v, KerasTensor) for v in value.values())
    return False
