"""The graph of a functional model: checked, ordered, run, and written to / read from configs.

A [Graph][numba_gn.models._graph.Graph] is made from a model's symbolic inputs and outputs
(`Input(...)` tensors and what layers returned for them). It walks the recorded nodes back from
the outputs, as Keras's `map_graph` does, which gives:

* the layers in Keras's order (by depth from the outputs, then by first visit): the order of
  `model.layers` and so of `model.weights`;
* a plan to run the nodes on real values in topological order, where each intermediate result
  is dropped as soon as the last node that needs it has run;
* a second plan, made on first use, in which each GroupNorm (+ Add) + Activation chain whose
  intermediate results nothing else uses runs as one fused op (see `numba_gn.models._fusion`).

The config format is Keras 3's functional one: each layer's entry carries its `inbound_nodes`
(the call arguments, symbolic tensors written as `__keras_tensor__` dicts with their
`keras_history`), and `input_layers`/`output_layers` give ``[layer_name, node_index,
tensor_index]`` in the structure of the model's inputs and outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from numba_gn.autograd import Tensor
from numba_gn.layers.base import Layer, Shape
from numba_gn.layers.input_layer import InputLayer
from numba_gn.layers.symbolic import KerasTensor, Node, map_symbolic
from numba_gn.models import _fusion

__all__ = ["Graph", "flatten_structure", "graph_from_config", "pack_structure"]


# -- structures of inputs and outputs ------------------------------------------------------------


def flatten_structure(value: Any) -> list[Any]:
    """The leaves of one value, a list/tuple of values, or a dict of them.

    A dict's values come in sorted-key order, as Keras flattens dicts.
    """
    if isinstance(value, dict):
        return [value[k] for k in sorted(value)]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def pack_structure(like: Any, leaves: Sequence[Any]) -> Any:
    """`leaves` in the structure of `like` (the inverse of `flatten_structure`)."""
    if isinstance(like, dict):
        keys = sorted(like)
        packed = dict(zip(keys, leaves, strict=True))
        return {k: packed[k] for k in like}  # the user's key order
    if isinstance(like, (list, tuple)):
        return type(like)(leaves) if type(like) in (list, tuple) else list(leaves)
    (leaf,) = leaves
    return leaf


def _structure_of_tensors(value: Any, what: str) -> Any:
    """`value` (one symbolic tensor, a list/tuple or a dict of them) checked, lists copied."""
    if isinstance(value, KerasTensor):
        return value
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, dict):
        items = list(value.values())
        bad_keys = [k for k in value if not isinstance(k, str)]
        if bad_keys:
            raise ValueError(f"The keys of `{what}` must be strings, got {bad_keys!r}.")
    else:
        items = [value]
    if not items:
        raise ValueError(f"`{what}` argument cannot be empty. Received: {what}={value!r}")
    for x in items:
        if not isinstance(x, KerasTensor):
            raise ValueError(
                f"All `{what}` values must be KerasTensors (from `Input()` or from calling "
                f"layers on them). Received: {what}={value!r} including invalid value {x!r} "
                f"of type {type(x).__name__}"
            )
    return dict(value) if isinstance(value, dict) else list(value) if isinstance(
        value, (list, tuple)) else value


def _node_of(tensor: KerasTensor) -> Node:
    history = tensor._keras_history
    if history is None:
        raise ValueError(f"{tensor!r} was not made by Input() or a layer; it has no history.")
    return history.operation._inbound_nodes[history.node_index]


def _labels(struct: Any, what: str) -> list[str]:
    """How messages name each flat entry: `outputs`, `outputs[1]`, `outputs['b']`."""
    if isinstance(struct, dict):
        return [f"{what}[{k!r}]" for k in sorted(struct)]
    if isinstance(struct, list):
        return [f"{what}[{i}]" for i in range(len(struct))]
    return [what]


class _Slot:
    """Marks where a node's argument takes the value computed for tensor `index`."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _fill(template: Any, values: list[Any]) -> Any:
    if isinstance(template, _Slot):
        return values[template.index]
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    if isinstance(template, tuple):
        return tuple(_fill(v, values) for v in template)
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    return template


def _flatten_result(result: Any) -> list[Any]:
    """A layer's result as a flat list, in the order its symbolic outputs were made."""
    if isinstance(result, dict):
        return list(result.values())
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


class _Step:
    """One node to run: the layer, its argument templates, where its outputs go, what to drop."""

    __slots__ = ("node", "layer", "args", "kwargs", "single", "outputs", "free")

    def __init__(self, node: Node, args: Any, kwargs: Any, outputs: list[int]) -> None:
        self.node = node
        self.layer = node.operation
        self.args = args
        self.kwargs = kwargs
        # The common case, one input and no other argument: no template to fill.
        self.single = (
            args[0].index
            if len(args) == 1 and isinstance(args[0], _Slot) and not kwargs
            else None
        )
        self.outputs = outputs
        self.free: list[int] = []


class _FusedStep:
    """A fused chain to run in place of its layers' steps (the same fields as `_Step`)."""

    __slots__ = ("node", "layer", "args", "kwargs", "single", "outputs", "free")

    def __init__(self, chain: _fusion.FusedChain, args: tuple[_Slot, ...],
                 outputs: list[int]) -> None:
        self.node = None
        self.layer = chain
        self.args = args
        self.kwargs: dict[str, Any] = {}
        self.single = args[0].index if len(args) == 1 else None
        self.outputs = outputs
        self.free: list[int] = []


def _set_frees(steps: Sequence[Any], keep: set[int]) -> None:
    """Fill each step's `free`: the values no later step needs (outputs `keep` stay)."""
    last_use: dict[int, int] = {}
    for i, step in enumerate(steps):
        used: list[_Slot] = []
        _collect_slots((step.args, step.kwargs), used)
        for slot in used:
            last_use[slot.index] = i
    for slot, i in last_use.items():
        if slot not in keep:
            steps[i].free.append(slot)


class Graph:
    """The checked, ordered graph between a model's symbolic inputs and outputs.

    Args:
        inputs: One symbolic tensor from `Input()`, or a list or dict of them.
        outputs: One symbolic tensor computed from them, or a list or dict of them.
        owner: How messages name the model (`"Model 'name'"`).

    Raises:
        ValueError: For inputs that are not `Input()` tensors (or are given twice), outputs
            not computable from the inputs, inputs no output uses, and layer names used twice;
            each names the tensor or layer at fault.
    """

    def __init__(self, inputs: Any, outputs: Any, owner: str = "Model(inputs, outputs)") -> None:
        self.inputs_struct = _structure_of_tensors(inputs, "inputs")
        self.outputs_struct = _structure_of_tensors(outputs, "outputs")
        self.inputs: list[KerasTensor] = flatten_structure(self.inputs_struct)
        self.outputs: list[KerasTensor] = flatten_structure(self.outputs_struct)
        in_labels = _labels(self.inputs_struct, "inputs")
        out_labels = _labels(self.outputs_struct, "outputs")
        seen: dict[int, str] = {}
        for label, x in zip(in_labels, self.inputs, strict=True):
            history = x._keras_history
            if history is None or not isinstance(history.operation, InputLayer):
                raise ValueError(
                    f"{owner}: {label} ({x!r}) must be a tensor returned by "
                    "`Input()`; a model's inputs cannot be intermediate tensors."
                )
            if id(x) in seen:
                raise ValueError(
                    f"{owner}: {label} is the same tensor as {seen[id(x)]} "
                    f"(Input {history.operation.name!r}); each input must be given once."
                )
            seen[id(x)] = label
        self._map(owner, in_labels, out_labels)
        self._plan()

    # -- structure ---------------------------------------------------------------------------------

    def _map(self, owner: str, in_labels: list[str], out_labels: list[str]) -> None:
        """Keras's `map_graph`: the nodes (topological order), the layers (Keras's order)."""
        input_nodes = {id(_node_of(x)) for x in self.inputs}
        finished: set[int] = set()
        order: list[Node] = []  # every node after the nodes it depends on
        op_index: dict[int, int] = {}  # layer id -> rank of its first visit
        ops: dict[int, Layer] = {}
        for label, out in zip(out_labels, self.outputs, strict=True):
            root = _node_of(out)
            if id(root) in finished:
                continue
            # Depth-first, iteratively (a deep model would exceed Python's recursion limit),
            # visiting inputs in order: the same order as Keras's recursive walk.
            if id(root.operation) not in op_index:
                op_index[id(root.operation)] = len(op_index)
                ops[id(root.operation)] = root.operation
            stack: list[list[Any]] = [[root, 0]]
            while stack:
                frame = stack[-1]
                node, i = frame
                if node.is_input and id(node) not in input_nodes:
                    raise ValueError(
                        f"{owner}: {label} ({out!r}) cannot be computed from the "
                        f"model's inputs: it depends on Input {node.operation.name!r}, which is "
                        "not one of them."
                    )
                if i < len(node.input_tensors):
                    frame[1] = i + 1
                    child = _node_of(node.input_tensors[i])
                    if id(child) in finished:
                        continue
                    if id(child.operation) not in op_index:
                        op_index[id(child.operation)] = len(op_index)
                        ops[id(child.operation)] = child.operation
                    stack.append([child, 0])
                else:
                    stack.pop()
                    finished.add(id(node))
                    order.append(node)
        for label, x in zip(in_labels, self.inputs, strict=True):
            if id(_node_of(x)) not in finished:
                raise ValueError(
                    f"{owner}: {label} (Input {x._keras_history.operation.name!r}) "
                    "is not used by any output; remove it from `inputs` or use it."
                )
        # Keras's depths: a node is deeper than every node it feeds; a layer is as deep as
        # its deepest node. The layers are listed deepest (nearest the inputs) first.
        in_graph = {id(n) for n in order}
        node_depth: dict[int, int] = {}
        op_depth: dict[int, int] = {}
        for node in reversed(order):
            depth = node_depth.setdefault(id(node), 0)
            depth = max(depth, op_depth.get(id(node.operation), 0))
            op_depth[id(node.operation)] = depth
            node_depth[id(node)] = depth
            for parent in node.parent_nodes:
                if id(parent) in in_graph:
                    node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
        operations = sorted(ops.values(), key=lambda op: (-op_depth[id(op)], op_index[id(op)]))
        names: dict[str, int] = {}
        for op in operations:
            names[op.name] = names.get(op.name, 0) + 1
        for name, count in names.items():
            if count > 1:
                raise ValueError(
                    f'{owner}: the name "{name}" is used {count} times in the '
                    "model. All layer names should be unique."
                )
        self.nodes: list[Node] = order
        self.node_ids = in_graph
        self.operations: list[Layer] = operations

    def _plan(self) -> None:
        """The run order with value slots, and after which step each value can go."""
        slots: dict[int, int] = {id(x): i for i, x in enumerate(self.inputs)}
        steps: list[_Step] = []
        for node in self.nodes:
            if node.is_input:
                continue
            args, kwargs = map_symbolic(
                lambda t: _Slot(slots[id(t)]), (node.call_args, node.call_kwargs)
            )
            outs = []
            for t in node.outputs:
                slots.setdefault(id(t), len(slots))
                outs.append(slots[id(t)])
            steps.append(_Step(node, args, kwargs, outs))
        keep = {slots[id(x)] for x in self.outputs}
        _set_frees(steps, keep)
        self.steps = steps
        self.n_slots = len(slots)
        self.output_slots = [slots[id(x)] for x in self.outputs]
        self._fused_plan: tuple[list[Any], list[tuple[str, str | None, str]]] | None = None

    def fused_plan(self) -> tuple[list[Any], list[tuple[str, str | None, str]]]:
        """The steps with the fusible chains fused, and each chain's layer names.

        Made on first use and kept (the graph and its layers' dtype policies do not change).
        A chain is a GroupNorm node whose output only an Activation node takes, or only a
        two-input Add node whose output only an Activation node takes; no intermediate may be
        a model output. See `numba_gn.models._fusion` for the other conditions.
        """
        plan = self._fused_plan
        if plan is None:
            plan = self._fused_plan = self._plan_fused()
        return plan

    def _plan_fused(self) -> tuple[list[Any], list[tuple[str, str | None, str]]]:
        steps = self.steps
        keep = set(self.output_slots)
        consumers: dict[int, list[int]] = {}  # value slot -> the steps using it, per use
        for i, step in enumerate(steps):
            used: list[_Slot] = []
            _collect_slots((step.args, step.kwargs), used)
            for slot in used:
                consumers.setdefault(slot.index, []).append(i)

        taken: set[int] = set()  # steps that are part of a chain

        def sole_user(slot: int) -> int | None:
            users = consumers.get(slot, [])
            return users[0] if len(users) == 1 and slot not in keep else None

        def activation_of(i: int | None, slot: int) -> str | None:
            if i is None or i in taken:
                return None
            step = steps[i]
            if step.single != slot or len(step.outputs) != 1:
                return None
            return _fusion.activation_name(step.layer)

        placed: dict[int, _FusedStep] = {}  # where each chain runs
        names: list[tuple[str, str | None, str]] = []
        for i, step in enumerate(steps):
            if i in taken or step.single is None or len(step.outputs) != 1 or \
                    not _fusion.is_group_norm(step.layer):
                continue
            out = step.outputs[0]
            j = sole_user(out)
            if j is None or j in taken:
                continue
            name = activation_of(j, out)
            if name is not None:  # GroupNorm -> Activation: runs where GroupNorm did
                chain = _fusion.FusedChain(step.layer, None, steps[j].layer, name)
                if chain.statically_fusible():
                    placed[i] = _FusedStep(chain, (_Slot(step.single),), steps[j].outputs)
                    taken.update((i, j))
                    names.append(chain.names)
                continue
            add = steps[j]
            pair = add.args[0] if len(add.args) == 1 else None
            if not _fusion.is_add(add.layer) or add.kwargs or len(add.outputs) != 1 or \
                    not isinstance(pair, (list, tuple)) or len(pair) != 2 or \
                    not all(isinstance(a, _Slot) for a in pair) or \
                    pair[0].index == pair[1].index:
                continue
            gn_first = pair[0].index == out
            residual = pair[1] if gn_first else pair[0]
            k = sole_user(add.outputs[0])
            name = activation_of(k, add.outputs[0])
            if name is None:
                continue
            assert k is not None
            chain = _fusion.FusedChain(step.layer, add.layer, steps[k].layer, name, gn_first)
            if chain.statically_fusible():
                # Runs where Add did: the residual may be computed after GroupNorm's step.
                placed[j] = _FusedStep(
                    chain, (_Slot(step.single), _Slot(residual.index)), steps[k].outputs
                )
                taken.update((i, j, k))
                names.append(chain.names)
        if not placed:
            return steps, names
        fused: list[Any] = []
        for i, step in enumerate(steps):
            if i in placed:
                fused.append(placed[i])
            elif i not in taken:
                fused.append(_Step(step.node, step.args, step.kwargs, step.outputs))
        _set_frees(fused, keep)
        return fused, names

    @property
    def input_layers(self) -> list[InputLayer]:
        """The `InputLayer` of each flat input."""
        return [x._keras_history.operation for x in self.inputs]

    # -- running -----------------------------------------------------------------------------------

    def run(self, inputs: Sequence[Any], fuse: bool = False) -> Any:
        """The outputs (in the outputs' structure) for the flat input values `inputs`.

        `fuse`: run the fusible chains as fused ops (`fused_plan`).
        """
        values: list[Any] = list(inputs) + [None] * (self.n_slots - len(inputs))
        for step in self.fused_plan()[0] if fuse else self.steps:
            if step.single is not None:
                result = step.layer(values[step.single])
            else:
                result = step.layer(*_fill(step.args, values), **_fill(step.kwargs, values))
            if len(step.outputs) == 1 and isinstance(result, Tensor):
                values[step.outputs[0]] = result
            else:
                flat = _flatten_result(result)
                if len(flat) != len(step.outputs):
                    raise ValueError(
                        f"Layer {step.layer.name!r} returned {len(flat)} output(s) where its "
                        f"call on symbolic tensors returned {len(step.outputs)}."
                    )
                for slot, value in zip(step.outputs, flat, strict=True):
                    values[slot] = value
            for slot in step.free:
                values[slot] = None  # no later node needs it
        return self.pack_outputs([values[s] for s in self.output_slots])

    def pack_outputs(self, flat: list[Any]) -> Any:
        """Flat output values in the outputs' structure.

        A list of one is its one value, as Keras unpacks it.
        """
        packed = pack_structure(self.outputs_struct, flat)
        if isinstance(packed, list) and len(packed) == 1:
            return packed[0]
        return packed

    def output_shapes(self, input_shapes: Sequence[Shape]) -> Any:
        """The output shapes (in the outputs' structure) for flat input shapes."""
        if all(tuple(s)[1:] == x.shape[1:] and len(s) == len(x.shape)
               for s, x in zip(input_shapes, self.inputs, strict=True)):
            return self.pack_outputs([x.shape for x in self.outputs])
        shapes: list[Any] = list(input_shapes) + [None] * (self.n_slots - len(input_shapes))
        for step in self.steps:
            first = _fill(step.args[0], shapes)
            out = step.layer._output_shape(first)
            flat = [out] if len(step.outputs) == 1 else _flatten_result(out)
            for slot, value in zip(step.outputs, flat, strict=True):
                shapes[slot] = tuple(value)
        return self.pack_outputs([shapes[s] for s in self.output_slots])

    # -- configuration -----------------------------------------------------------------------------

    def get_config(self, entry_for: Callable[[Layer], dict[str, Any]]) -> dict[str, Any]:
        """`layers`, `input_layers` and `output_layers` of Keras 3's functional config.

        `entry_for(layer)` gives a layer's entry (module, class_name, config, ...).
        """
        reindex: dict[int, int] = {}
        for op in self.operations:
            # Keras counts a functional model's own construction as its node 0.
            kept = 1 if getattr(op, "_graph", None) is not None else 0
            for node in op._inbound_nodes:
                if id(node) in self.node_ids:
                    reindex[id(node)] = kept
                    kept += 1
        layers = []
        for op in self.operations:
            inbound = [
                self._serialize_node(node)
                for node in op._inbound_nodes
                if id(node) in self.node_ids and not node.is_input
            ]
            entry = entry_for(op)
            entry["name"] = op.name
            entry["inbound_nodes"] = inbound
            layers.append(entry)

        def tensor_config(x: KerasTensor) -> list[Any]:
            op, node_index, tensor_index = x._keras_history  # type: ignore[misc]
            return [op.name, reindex[id(op._inbound_nodes[node_index])], tensor_index]

        return {
            "layers": layers,
            "input_layers": _map_struct(tensor_config, self.inputs_struct),
            "output_layers": _map_struct(tensor_config, self.outputs_struct),
        }

    def _serialize_node(self, node: Node) -> dict[str, Any]:
        def tensor(x: KerasTensor) -> dict[str, Any]:
            op, node_index, tensor_index = x._keras_history  # type: ignore[misc]
            # Keras's rule: the index among the producing layer's nodes in this model.
            skipped = sum(1 for n in op._inbound_nodes[:node_index] if id(n) not in self.node_ids)
            return {
                "class_name": "__keras_tensor__",
                "config": {
                    "shape": list(x.shape),
                    "dtype": x.dtype,
                    "keras_history": [op.name, node_index - skipped, tensor_index],
                },
            }

        args = _jsonable(map_symbolic(tensor, node.call_args))
        kwargs = _jsonable(map_symbolic(tensor, node.call_kwargs))
        return {"args": args, "kwargs": kwargs}


def _map_struct(fn: Callable[[KerasTensor], Any], struct: Any) -> Any:
    if isinstance(struct, dict):
        return {k: fn(v) for k, v in struct.items()}
    if isinstance(struct, list):
        return [fn(v) for v in struct]
    return fn(struct)


def _jsonable(value: Any) -> Any:
    """Tuples as lists, as a JSON round trip gives them back."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _collect_slots(template: Any, out: list[_Slot]) -> None:
    if isinstance(template, _Slot):
        out.append(template)
    elif isinstance(template, (list, tuple)):
        for v in template:
            _collect_slots(v, out)
    elif isinstance(template, dict):
        for v in template.values():
            _collect_slots(v, out)


# -- reading a config ------------------------------------------------------------------------------


class _NotYetError(Exception):
    """A node's input comes from a layer call not replayed yet (retried on the next round)."""


def _is_tensor_config(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("class_name") == "__keras_tensor__"


def _history_tensor(history: Any, created: Mapping[str, Layer], where: str) -> KerasTensor:
    if (
        not isinstance(history, (list, tuple))
        or len(history) != 3
        or not isinstance(history[0], str)
        or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in history[1:])
    ):
        raise ValueError(
            f"{where}: a tensor reference must be [layer_name, node_index, tensor_index], got "
            f"{history!r}."
        )
    name, node_index, tensor_index = history
    if name not in created:
        raise ValueError(f"{where}: unknown layer {name!r}; the config has no such layer.")
    layer = created[name]
    if node_index >= len(layer._inbound_nodes):
        raise _NotYetError(name)
    outputs = layer._inbound_nodes[node_index].outputs
    if tensor_index >= len(outputs):
        raise ValueError(
            f"{where}: layer {name!r} has {len(outputs)} output(s); tensor_index {tensor_index} "
            "does not exist."
        )
    return outputs[tensor_index]


def _deserialize_node(
    node_data: Any, created: Mapping[str, Layer], layer_name: str
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The `(args, kwargs)` of a recorded call, symbolic tensors in place of references."""
    where = f"inbound node of layer {layer_name!r}"
    if isinstance(node_data, list):  # Keras 2's format: [[layer, node, tensor, kwargs], ...]
        tensors, kwargs = [], {}
        for item in node_data:
            if not isinstance(item, list) or len(item) not in (3, 4):
                raise ValueError(f"{where}: cannot read {item!r}.")
            tensors.append(_history_tensor(item[:3], created, where))
            if len(item) == 4:
                if not isinstance(item[3], Mapping):
                    raise ValueError(f"{where}: call arguments must be a dict, got {item[3]!r}.")
                kwargs = dict(item[3])
        return (tensors[0] if len(tensors) == 1 else tensors,), kwargs
    if not isinstance(node_data, Mapping) or set(node_data) - {"args", "kwargs"}:
        raise ValueError(f"{where}: expected a dict with 'args' and 'kwargs', got {node_data!r}.")

    def revive(value: Any) -> Any:
        if _is_tensor_config(value):
            config = value.get("config")
            if not isinstance(config, Mapping):
                raise ValueError(f"{where}: a tensor entry needs a 'config' dict, got {value!r}.")
            return _history_tensor(config.get("keras_history"), created, where)
        if isinstance(value, list):
            return [revive(v) for v in value]
        if isinstance(value, Mapping):
            return {k: revive(v) for k, v in value.items()}
        return value

    args = revive(node_data.get("args", []))
    kwargs = revive(node_data.get("kwargs", {}))
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError(f"{where}: 'args' must be a list and 'kwargs' a dict, got {node_data!r}.")
    # Keras records mask=None on calls of nested models; it means "no mask".
    if kwargs.get("mask", 0) is None:
        del kwargs["mask"]
    return tuple(args), kwargs


def graph_from_config(
    config: Mapping[str, Any],
    layer_from_entry: Callable[[Mapping[str, Any]], Layer],
) -> tuple[Any, Any]:
    """Make the layers of a functional config and replay its calls; `(inputs, outputs)`.

    As Keras's `functional_from_config`: every layer is created first, then the recorded
    calls are replayed in rounds, each call as soon as the tensors it takes exist (a layer
    shared at several depths has calls in several rounds).
    """
    entries = config["layers"]
    if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
        raise TypeError(
            f"'layers' of a functional config must be a list of layer entries, got "
            f"{type(entries).__name__}."
        )
    created: dict[str, Layer] = {}
    pending: dict[str, list[Any]] = {}
    names: list[str] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ValueError(f"A functional layer entry needs a 'name' string, got {entry!r}.")
        name = entry["name"]
        if name in created:
            raise ValueError(f"The functional config names layer {name!r} twice.")
        nodes = entry.get("inbound_nodes", [])
        if not isinstance(nodes, list):
            raise ValueError(f"'inbound_nodes' of layer {name!r} must be a list, got {nodes!r}.")
        created[name] = layer_from_entry(entry)
        names.append(name)
        if nodes:
            pending[name] = list(nodes)
    while pending:
        progressed = False
        for name in names:
            queue = pending.get(name)
            if not queue:
                continue
            done = 0
            for node_data in queue:
                try:
                    args, kwargs = _deserialize_node(node_data, created, name)
                except _NotYetError:
                    break
                created[name](*args, **kwargs)
                done += 1
            if done:
                progressed = True
                if done == len(queue):
                    del pending[name]
                else:
                    pending[name] = queue[done:]
        if not progressed:
            raise ValueError(
                "Invalid functional model config: the calls of layer(s) "
                f"{sorted(pending)} take tensors that no layer call in the config makes (the "
                "graph has loops or disconnected nodes)."
            )

    def tensor(ref: Any) -> KerasTensor:
        where = "input_layers/output_layers"
        if isinstance(ref, list) and len(ref) == 3 and isinstance(ref[0], str) and \
                ref[0] in created and getattr(created[ref[0]], "_graph", None) is not None \
                and isinstance(ref[1], int):
            ref = [ref[0], ref[1] - 1, ref[2]]  # Keras counts a model's construction as node 0
        try:
            return _history_tensor(ref, created, where)
        except _NotYetError:
            raise ValueError(f"{where}: layer {ref[0]!r} has no call {ref[1]}.") from None

    def refs(value: Any) -> Any:
        if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
            return tensor(value)
        if isinstance(value, Mapping):
            return {k: refs(v) for k, v in value.items()}
        if isinstance(value, list):
            return [refs(v) for v in value]
        raise ValueError(f"Cannot read the tensor reference {value!r} of a functional config.")

    return refs(config["input_layers"]), refs(config["output_layers"])
