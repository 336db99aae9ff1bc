"""`Model`: Keras's model class, functional or subclassed, with the training loop.

Two ways to make one, as in Keras 3:

* functional: `Model(inputs, outputs)` on symbolic tensors (`Input(...)` and what layers
  return for them) gives a [Functional][numba_gn.models.functional.Functional] model, which
  replays the recorded layer calls;
* subclassed: `class Net(Model)` with layers assigned in `__init__` (after
  `super().__init__()`) and a `call(self, inputs, training=False)`; it builds on its first
  call (or `fit`/`evaluate`/`predict`).

Both train with `compile`/`fit`/`evaluate`/`predict`
([Trainer][numba_gn.training.model.Trainer]) and share `layers`, `get_layer`,
`summary`, the weights API and `to_json`. `Sequential` is a `Model` too.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from numba_gn import _args, _checks
from numba_gn.autograd import Tensor, no_record
from numba_gn.autograd import cast as _cast
from numba_gn.layers.base import Layer, Shape, _standardize_shape
from numba_gn.layers.input_layer import InputLayer
from numba_gn.models import _config, _fusion
from numba_gn.models._graph import Graph, flatten_structure, graph_from_config, pack_structure
from numba_gn.models._summary import print_summary
from numba_gn.training.model import Trainer

__all__ = ["Model"]

_FUNCTIONAL_KEYS = ("name", "layers", "input_layers", "output_layers")


def _functional_init_arguments(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    """Keras's test for `Model(inputs, outputs)` rather than a subclass's own arguments."""
    return (
        len(args) == 2
        or (len(args) == 1 and "outputs" in kwargs)
        or ("inputs" in kwargs and "outputs" in kwargs)
    )


class _FlatInputs(list):
    """A functional model's inputs already converted and in flat order (no second pass)."""


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, Tensor))


class Model(Trainer, Layer):
    """A model: layers plus the training loop (Keras's `keras.Model`).

    Functional use: `Model(inputs, outputs, name=None)` where `inputs` is a symbolic
    tensor from `Input()` or a list or dict of them, and `outputs` one symbolic tensor
    computed from them or a list or dict of them. The result is a
    [Functional][numba_gn.models.functional.Functional] model; see there for the checks.

    Subclassed use::

        class Net(numba_gn.Model):
            def __init__(self):
                super().__init__()
                self.hidden = numba_gn.layers.Dense(16, activation="relu")
                self.out = numba_gn.layers.Dense(2)

            def call(self, x, training=False):
                return self.out(self.hidden(x))

    Layers assigned to attributes (also inside lists and dicts) are tracked: their weights
    are the model's, in assignment order. The model builds on its first call, or on
    `build(input_shape)`, `fit`, `evaluate` or `predict`; inputs may be one array, a
    list/tuple of arrays or a dict of them, passed to `call` as given (as Tensors).

    Args:
        name: Default: the snake_case class name, made unique.
        trainable: Whether the weights are trained.
        dtype: The dtype policy (each layer keeps its own).
    """

    # A functional model's graph (None for a subclassed model); kept out of the tracking.
    _graph: Graph | None = None
    _untracked_attributes = Layer._untracked_attributes | {"_graph"}
    _takes_input_structure = True

    def __new__(cls, *args: Any, **kwargs: Any) -> Model:
        """A Functional model for `Model(inputs, outputs)`, else an instance of `cls`."""
        # Keras's dispatch: Model(inputs, outputs) is a Functional model.
        if cls is Model and _functional_init_arguments(args, kwargs):
            from numba_gn.models.functional import Functional

            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if _functional_init_arguments(args, kwargs):
            self._init_functional(*args, **kwargs)
            return
        if args:
            raise TypeError(
                f"{type(self).__name__}() takes keyword arguments (name, trainable, dtype), or "
                f"`inputs` and `outputs` for a functional model; got {len(args)} positional "
                "argument(s)."
            )
        # Each layer casts its inputs to its own compute dtype: the model does not.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def _init_functional(
        self, inputs: Any, outputs: Any, name: str | None = None, trainable: bool = True,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(
                f"A functional model got unexpected keyword argument(s) {sorted(kwargs)}; it "
                "takes `inputs`, `outputs`, `name` and `trainable`."
            )
        if isinstance(inputs, dict):
            for key, x in inputs.items():
                if hasattr(x, "_keras_history") and x._keras_history is not None and \
                        key != x._keras_history.operation.name:
                    warnings.warn(
                        "When providing `inputs` as a dict, all keys in the dict must match the "
                        f"names of the corresponding tensors. Received key {key!r} mapping to an "
                        f"Input named {x._keras_history.operation.name!r}.",
                        stacklevel=3,
                    )
        # The graph is checked before anything is set: a bad graph leaves no half-made model.
        label = f"Model {name!r}" if isinstance(name, str) else "Model(inputs, outputs)"
        graph = Graph(inputs, outputs, owner=label)
        super().__init__(name=name, trainable=trainable, autocast=False)
        self._graph = graph
        if not self._trainable:
            self.trainable = False  # every layer of the graph, as Keras
        self._build_shape = self._pack_inputs([x.shape for x in graph.inputs])
        self.built = True

    # -- structure ---------------------------------------------------------------------------------

    def _sublayers(self) -> list[Layer]:
        """The sublayers whose weights are the model's.

        A functional model's layers (Keras's order), then any layer assigned to an attribute;
        a subclassed model's tracked layers.
        """
        tracked = list(self._tracked_layers)
        graph = self._graph
        if graph is None:
            return tracked
        ids = {id(op) for op in graph.operations}
        return list(graph.operations) + [layer for layer in tracked if id(layer) not in ids]

    @property
    def layers(self) -> list[Layer]:
        """The model's layers.

        A functional model's in Keras's order (its `InputLayer`s included), a subclassed
        model's in tracking order.
        """
        graph = self._graph
        if graph is not None:
            return list(graph.operations)
        return self._sublayers()

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called `name`, or at `index` of `layers` (Keras's rules).

        Exactly one of the two is given; an unknown name or an index out of range is a
        `ValueError` listing what exists.
        """
        if index is not None and name is not None:
            raise ValueError(
                "Provide only a layer name or a layer index. Received: "
                f"index={index}, name={name}."
            )
        layers = self.layers
        if index is not None:
            index = _checks.integer(index, "index")
            if not -len(layers) <= index < len(layers):
                raise ValueError(
                    f"Was asked to retrieve layer at index {index} but model only has "
                    f"{len(layers)} layers."
                )
            return layers[index]
        if name is not None:
            for layer in layers:
                if layer.name == name:
                    return layer
            raise ValueError(
                f"No such layer: {name}. Existing layers are: {[la.name for la in layers]}."
            )
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    @property
    def inputs(self) -> list[Any]:
        """A functional model's symbolic inputs, flat (dicts by sorted key); None otherwise."""
        return None if self._graph is None else list(self._graph.inputs)  # type: ignore[return-value]

    @property
    def outputs(self) -> list[Any]:
        """A functional model's symbolic outputs, flat; None otherwise."""
        return None if self._graph is None else list(self._graph.outputs)  # type: ignore[return-value]

    @property
    def input(self) -> Any:
        """A functional model's inputs as given to the constructor."""
        self._require_graph("input")
        return self._graph.inputs_struct  # type: ignore[union-attr]

    @property
    def output(self) -> Any:
        """A functional model's outputs as given to the constructor."""
        self._require_graph("output")
        return self._graph.outputs_struct  # type: ignore[union-attr]

    @property
    def output_names(self) -> list[str]:
        """The name of the layer making each output (flat order), as Keras's."""
        self._require_graph("output_names")
        return [x._keras_history.operation.name for x in self._graph.outputs]  # type: ignore

    @property
    def input_shape(self) -> Any:
        """A functional model's input shapes (one shape for one input)."""
        self._require_graph("input_shape")
        return self._pack_inputs([x.shape for x in self._graph.inputs], unpack=True)  # type: ignore

    @property
    def output_shape(self) -> Any:
        """A functional model's output shapes (one shape for one output)."""
        self._require_graph("output_shape")
        return self._graph.pack_outputs([x.shape for x in self._graph.outputs])  # type: ignore

    def _require_graph(self, what: str) -> None:
        if self._graph is None:
            raise AttributeError(
                f"`{what}` is only defined for functional models; model {self.name!r} is a "
                "subclassed model."
            )

    def _pack_inputs(self, flat: list[Any], unpack: bool = False) -> Any:
        packed = pack_structure(self._graph.inputs_struct, flat)  # type: ignore[union-attr]
        if unpack and isinstance(packed, list) and len(packed) == 1:
            return packed[0]
        return packed

    # -- calling -----------------------------------------------------------------------------------

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        """A functional model runs its graph; a subclass defines its own `call`.

        `training` reaches every layer through the call context.
        """
        graph = self._graph
        if graph is None:
            raise NotImplementedError(
                f"Model {type(self).__name__} does not have a `call()` method implemented."
            )
        flat = inputs if isinstance(inputs, _FlatInputs) else self._standardize_inputs(inputs)
        return _fusion.run_with(self._fuse, lambda fuse: graph.run(flat, fuse=fuse))

    @property
    def fused_layers(self) -> list[tuple[str, str | None, str]]:
        """The layer chains this model runs as one fused GroupNorm op (read-only).

        One `(group_norm_name, add_name_or_None, activation_name)` tuple per chain: a
        `GroupNormalization` layer whose output only an `Activation` layer takes, or only a
        two-input `Add` whose output only an `Activation` takes. Empty when the model was
        compiled with `fuse=False`, and for subclassed models (their `call` is Python code,
        not a graph the model can rewrite). A call whose data would be cast between the
        layers (another dtype than the layers compute in) runs them unfused; a model inside a
        model compiled with `fuse=False` does not fuse either. See
        `numba_gn.models._fusion` for the conditions.
        """
        graph = self._graph
        if graph is None or not self._fuse:
            return []
        return list(graph.fused_plan()[1])

    def _convert_call_inputs(self, inputs: Any) -> tuple[Any, Any]:
        """The inputs as Tensors, and their shapes.

        Functional: in flat order, each converted to its `Input`'s dtype and checked against
        its shape. Subclassed: one Tensor, or a list/tuple/dict of them.
        """
        if self._graph is not None:
            flat = self._standardize_inputs(inputs)
            return flat, [t.shape for t in flat]
        if isinstance(inputs, Mapping):
            x = {k: self._convert_input(v) for k, v in inputs.items()}
            return x, {k: t.shape for k, t in x.items()}
        if isinstance(inputs, (list, tuple)) and inputs and all(_is_array(v) for v in inputs):
            items = [self._convert_input(v) for v in inputs]
            return type(inputs)(items) if type(inputs) in (list, tuple) else items, [
                t.shape for t in items
            ]
        x = self._convert_input(inputs)
        return x, x.shape

    def _standardize_inputs(self, inputs: Any) -> _FlatInputs:
        """A functional model's inputs, flat: matched to the `Input`s, converted, checked."""
        graph = self._graph
        assert graph is not None
        struct = graph.inputs_struct
        names = [layer.name for layer in graph.input_layers]
        if isinstance(struct, dict):
            if not isinstance(inputs, Mapping):
                raise ValueError(
                    f"Model {self.name!r} takes a dict of inputs keyed by {sorted(struct)}, got "
                    f"a {type(inputs).__name__}."
                )
            _check_keys(inputs, sorted(struct), f"the inputs of model {self.name!r}")
            values = [inputs[k] for k in sorted(struct)]
            labels = [f"inputs[{k!r}]" for k in sorted(struct)]
        elif isinstance(struct, list) and len(struct) > 1:
            if isinstance(inputs, Mapping):
                _check_keys(inputs, names, f"the inputs of model {self.name!r}", extra_ok=True)
                values = [inputs[n] for n in names]
            elif isinstance(inputs, (list, tuple)) and len(inputs) == len(struct):
                values = list(inputs)
            else:
                got = (f"a {type(inputs).__name__} of {len(inputs)}"
                       if isinstance(inputs, (list, tuple)) else f"a {type(inputs).__name__}")
                raise ValueError(
                    f"Model {self.name!r} takes {len(struct)} inputs ({names}): a list of "
                    f"{len(struct)} arrays or a dict keyed by those names; got {got}."
                )
            labels = [f"inputs[{i}]" for i in range(len(struct))]
        else:  # one input
            if isinstance(inputs, Mapping):
                _check_keys(inputs, names, f"the inputs of model {self.name!r}", extra_ok=True)
                values = [inputs[names[0]]]
            elif isinstance(inputs, (list, tuple)) and len(inputs) == 1 and _is_array(inputs[0]):
                values = [inputs[0]]
            else:
                values = [inputs]
            labels = ["inputs"]
        out = _FlatInputs()
        for value, x, label, name in zip(values, graph.inputs, labels, names, strict=True):
            out.append(self._input_tensor(value, x, label, name))
        return out

    def _input_tensor(self, value: Any, ref: Any, label: str, name: str) -> Tensor:
        """One input as a Tensor of its `Input`'s dtype, its shape checked against it."""
        if isinstance(value, Tensor):
            t = value
        else:
            if type(value) is not np.ndarray:
                _args.check_not_masked(value, label, "Masks are not supported by models.")
            if value is None:
                raise ValueError(f"The input {name!r} of model {self.name!r} is None.")
            try:
                t = Tensor(np.asarray(value))
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"The input {name!r} of model {self.name!r} could not be converted to an "
                    f"array: {exc}"
                ) from None
        if t.dtype.kind not in "biuf":
            raise TypeError(
                f"The input {name!r} of model {self.name!r} must be numeric, got an array of "
                f"dtype {t.dtype}."
            )
        ref_shape = ref.shape
        if len(t.shape) != len(ref_shape) or any(
            r is not None and d != r for d, r in zip(t.shape, ref_shape, strict=True)
        ):
            raise ValueError(
                f"Input {name!r} of model {self.name!r} is incompatible with the model: "
                f"expected shape {ref_shape}, but the input has shape {t.shape}."
            )
        if t.dtype != ref.dtype:
            # Keras converts each input to its Input's dtype.
            t = _cast(t, ref.dtype)
        return t

    def _standardize_build_shape(self, input_shape: Any) -> Any:
        """One shape, a list of shapes or a dict of shapes (inputs of a model)."""
        if isinstance(input_shape, Mapping):
            return {k: _standardize_shape(v) for k, v in input_shape.items()}
        if isinstance(input_shape, (list, tuple)) and input_shape and all(
            isinstance(s, (list, tuple)) for s in input_shape
        ):
            return [_standardize_shape(s) for s in input_shape]
        return _standardize_shape(input_shape)

    def build(self, input_shape: Any = None) -> None:
        """Build a subclassed model by running `call` once on zeros of `input_shape`.

        `input_shape` is one shape, a list of shapes or a dict of them, as the inputs
        `call` takes; free dimensions (None) count 1. A functional model is built when
        made; a subclassed one also builds on its first call, `fit`, `evaluate` or
        `predict`.
        """
        if self._graph is not None or self._building_for_call or input_shape is None:
            return
        if all(layer.built for layer in self._sublayers()):
            return
        if not isinstance(input_shape, (list, dict)):
            self._infer_output_shape(input_shape, inside_build=True)
            return
        dtype = np.dtype(self.compute_dtype)

        def zeros(shape: Shape) -> Tensor:
            return Tensor(np.zeros(tuple(1 if d is None else d for d in shape), dtype))

        x = ({k: zeros(s) for k, s in input_shape.items()} if isinstance(input_shape, dict)
             else [zeros(s) for s in input_shape])
        kwargs = {"training": False} if self._call_takes_training else {}
        with no_record():
            self.call(x, **kwargs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output shape(s) for inputs of `input_shape`.

        A functional model follows its graph; a subclassed one is run once on zeros (unless
        the subclass defines this method).
        """
        return self._output_shape(input_shape)

    def _output_shape(self, input_shape: Any) -> Any:
        graph = self._graph
        if graph is not None:
            flat = (flatten_structure(input_shape)
                    if isinstance(input_shape, (list, dict)) and not _is_shape(input_shape)
                    else [input_shape])
            if len(flat) != len(graph.inputs):
                raise ValueError(
                    f"Model {self.name!r} has {len(graph.inputs)} inputs; got the shapes "
                    f"{input_shape!r}."
                )
            return graph.output_shapes([tuple(s) for s in flat])
        if type(self).compute_output_shape is not Model.compute_output_shape:
            return self.compute_output_shape(input_shape)
        return self._inferred_output_shape(input_shape)

    def _symbolic_output_dtype(self) -> str:
        graph = self._graph
        if graph is not None and graph.outputs:
            return graph.outputs[0].dtype
        return super()._symbolic_output_dtype()

    @property
    def input_dtype(self) -> str:
        """The dtype `fit`/`predict` cast float inputs to.

        A functional model's first `Input`'s (`_input_dtypes` has each input's).
        """
        graph = self._graph
        if graph is not None:
            return graph.inputs[0].dtype
        return self.compute_dtype

    @property
    def _input_dtypes(self) -> list[str] | None:
        """Each flat input's dtype (a functional model), else None (one dtype for all)."""
        graph = self._graph
        return None if graph is None else [x.dtype for x in graph.inputs]

    # -- what fit/evaluate/predict expect ---------------------------------------------------------

    def _data_structure(self, which: str) -> tuple[str, list[str]] | None:
        """What the model takes (`"x"`) or returns (`"y"`), for the training loop.

        `("single"|"list"|"dict", names)`; None when only the data can tell (subclassed).
        """
        graph = self._graph
        if graph is None:
            return None
        struct = graph.inputs_struct if which == "x" else graph.outputs_struct
        tensors = graph.inputs if which == "x" else graph.outputs
        layer_names = [t._keras_history.operation.name for t in tensors]
        if isinstance(struct, dict):
            return "dict", sorted(struct)
        if isinstance(struct, list) and len(struct) > 1:
            return "list", layer_names
        return "single", layer_names

    # -- weights -----------------------------------------------------------------------------------

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set every weight, in the order of `weights`; all are checked before any is set.

        A mismatch names the weight by its path in weight files (`"dense_1/kernel"`).
        """
        if isinstance(weights, (np.ndarray, Tensor)) or not isinstance(weights, Iterable):
            raise TypeError(
                f"set_weights() on model {self.name!r} takes a list of arrays, got "
                f"{type(weights).__name__}."
            )
        weights = list(weights)
        paths = self.weight_paths()
        if len(weights) != len(paths):
            raise ValueError(
                f"set_weights() on model {self.name!r} got {len(weights)} arrays for "
                f"{len(paths)} weights."
            )
        for (path, w), value in zip(paths, weights, strict=True):
            shape = getattr(value, "shape", None)
            if shape is not None and tuple(shape) != w.shape:
                raise ValueError(
                    f"set_weights(): weight {path!r} has shape {w.shape}, got {tuple(shape)}. "
                    "No weight was changed."
                )
        super().set_weights(weights)

    # -- summary -----------------------------------------------------------------------------------

    def summary(self, print_fn: Callable[[str], Any] | None = None) -> None:
        """Print each layer's name, type, output shape and parameter count, then the totals.

        The layout follows Keras's `model.summary()`. A functional model also shows what
        each layer is connected to (`dense[0][0]`: the layer, which of its calls, which
        output), one entry per input of each of its calls in this model; a subclassed model's
        output shapes are `?` (they are not recorded).
        """
        emit = print_fn or print
        graph = self._graph
        if graph is None:
            rows = [
                (f"{layer.name} ({type(layer).__name__})", "?",
                 f"{layer.count_params():,}" if layer.built else "0 (unbuilt)")
                for layer in self.layers
            ]
            note = None if self.built else (
                " The model is not built yet: call it on a batch, call build(input_shape) or "
                "fit it."
            )
            print_summary(self, ("Layer (type)", "Output Shape", "Param #"), rows, emit, note)
            return
        rows4 = []
        for layer in graph.operations:
            nodes = [n for n in layer._inbound_nodes if id(n) in graph.node_ids]
            shapes = [x.shape for n in nodes for x in n.outputs]
            shape = shapes[0] if len(set(shapes)) == 1 else "multiple"
            connected = ", ".join(
                f"{x._keras_history.operation.name}[{x._keras_history.node_index}]"
                f"[{x._keras_history.tensor_index}]"
                for n in nodes for x in n.input_tensors
            )
            rows4.append((f"{layer.name} ({type(layer).__name__})", str(shape),
                          f"{layer.count_params():,}", connected or "-"))
        print_summary(self, ("Layer (type)", "Output Shape", "Param #", "Connected to"), rows4,
                      emit)

    # -- configuration -----------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The model's config, in Keras's format.

        A functional model: Keras 3's functional config (`name`, `trainable`, `layers`
        with their `inbound_nodes`, `input_layers`, `output_layers`). A subclassed model:
        the base config (`name`, `trainable`, `dtype`).
        """
        graph = self._graph
        if graph is None:
            return super().get_config()
        config: dict[str, Any] = {"name": self.name, "trainable": self.trainable}
        config.update(graph.get_config(_entry_in_graph))
        return config

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], custom_objects: Mapping[str, Any] | None = None
    ) -> Model:
        """A model from `get_config` output (ours or Keras's).

        A functional config (with `layers`, `input_layers` and `output_layers`) is
        rebuilt as a functional model: each layer from its entry, by class name only (plus the
        classes given in `custom_objects`), then its calls replayed. Any other config goes to
        the class's constructor.
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"{cls.__name__}.from_config() takes a dict, got "
                            f"{type(config).__name__}.")
        if all(key in config for key in _FUNCTIONAL_KEYS):
            config = dict(config)
            unknown = sorted(set(config) - {*_FUNCTIONAL_KEYS, "trainable"})
            if unknown:
                raise TypeError(f"Unknown key(s) {unknown} in a functional model config.")
            inputs, outputs = graph_from_config(
                config,
                lambda entry: _config.layer_from_entry(
                    entry, extra_keys=("name", "inbound_nodes"), custom_objects=custom_objects
                ),
            )
            trainable = config.get("trainable", True)
            target = cls
            if cls is Model:
                from numba_gn.models.functional import Functional

                target = Functional
            return target(inputs, outputs, name=config["name"],  # type: ignore[call-arg]
                          trainable=True if trainable is None else trainable)
        try:
            return cls(**config)
        except TypeError as exc:
            raise TypeError(
                f"Unable to revive model {cls.__name__} from config {config!r}: {exc}. A "
                "subclassed model whose constructor takes other arguments must define "
                "get_config() and from_config()."
            ) from None

    def to_json(self, **kwargs: Any) -> str:
        """The model's config as a JSON string, in Keras's format.

        `model_from_json` reads it, ours and Keras's. `kwargs` go to `json.dumps`.
        """
        module, class_name, registered = _config.model_envelope(self)
        known = class_name in ("Functional", "Sequential")
        payload = {
            # A subclass is written as Keras writes an unregistered class: no module.
            "module": module if known else None,
            "class_name": class_name,
            "config": self.get_config(),
            "registered_name": registered if known else class_name,
            "build_config": {"input_shape": self._json_build_shape()},
            "compile_config": {},
        }
        return json.dumps(payload, **kwargs)

    # -- saving ----------------------------------------------------------------------------------

    def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        """Save the whole model to a `.keras` file, atomically (Keras's `model.save`).

        The file holds the config, the weights, the compile arguments and the optimizer and RNG
        states, so that `numba_gn.models.load_model(filepath)` gives a model that predicts,
        and trains on, exactly as this one would; see
        `numba_gn.models.saving` for the layout and the checks.

        Args:
            filepath: A file name ending in `.keras`.
            overwrite: False refuses to replace an existing file (`FileExistsError`).
        """
        from numba_gn.models.saving import save_model

        save_model(self, filepath, overwrite=overwrite)

    def _json_build_shape(self) -> Any:
        """The input shape(s) a subclassed model was built for (Keras's `build_config`)."""
        if self._graph is not None or not self.built or self._build_shape is None:
            return None
        return _config.jsonable_shape(self._build_shape)


def _is_shape(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in value
    )


def _entry_in_graph(layer: Layer) -> dict[str, Any]:
    """A layer's entry in a functional config, with the shape it was built for."""
    shape = None if isinstance(layer, InputLayer) else layer._build_shape
    if getattr(layer, "_graph", None) is not None:
        shape = None  # a functional model rebuilds from its own inputs
    return _config.layer_entry(layer, shape)


def _check_keys(value: Mapping[Any, Any], names: Sequence[str], what: str,
                extra_ok: bool = False) -> None:
    missing = [n for n in names if n not in value]
    extra = [] if extra_ok else [k for k in value if k not in names]
    if missing or extra:
        raise ValueError(
            f"The keys of {what} must be {list(names)}"
            + (f"; missing: {missing}" if missing else "")
            + (f"; unexpected: {extra}" if extra else "")
            + "."
        )
