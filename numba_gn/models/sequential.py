"""`Sequential`: a stack of layers, each feeding the next, with Keras's model API.

Building, inspecting (`summary`), configuring, and training (`compile`/`fit`/`evaluate`/
`predict`, from [Trainer][numba_gn.training.model.Trainer]) follow Keras. An `Input(...)`
first declares the input shape, so that the model is built (and can be summarised) before it
sees data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from numba_gn.autograd import Tensor
from numba_gn.layers.base import Layer, Shape
from numba_gn.layers.input_layer import InputLayer
from numba_gn.layers.symbolic import KerasTensor
from numba_gn.models import _config, _fusion
from numba_gn.models._summary import print_summary
from numba_gn.models.model import Model

__all__ = ["Sequential"]


def _takes_training(layer: Layer) -> bool:
    """Whether `layer.call` has a `training` argument (set by Layer per class)."""
    return type(layer)._call_takes_training


class Sequential(Model):
    """A linear stack of layers.

    Parameters
    ----------
    layers : list of Layer, optional
        Added in order with `add`. An `Input(...)` (or an `InputLayer`) first builds
        the model at once; without one, the model builds on its first call (or `fit`,
        `evaluate`, `predict`) from the shape of the data.
    trainable : bool, default True
    name : str, optional
        Default "sequential", "sequential_1", ...

    Notes
    -----
    Any layer can be stacked, custom ones included: a layer without `compute_output_shape`
    has its output shape inferred by running it once on zeros (batch of 1) when the model
    builds.
    """

    # The stack is kept in these; sublayers come from `_layers` (see _sublayers).
    _untracked_attributes = Model._untracked_attributes | {
        "_layers", "_calls", "_output_shapes", "_input_layer", "_fusion_plan"
    }
    # `_calls` with each fusible GroupNorm + Activation pair as one call, and the pairs'
    # names; made on the first fused call after each change of the stack.
    _fusion_plan: tuple[list[tuple[Any, bool]], list[tuple[str, str | None, str]]] | None = None
    # One input array, as a layer takes it (not a model's list or dict of inputs).
    _takes_input_structure = False
    _convert_call_inputs = Layer._convert_call_inputs
    _standardize_build_shape = Layer._standardize_build_shape

    def __init__(
        self,
        layers: Iterable[Layer] | None = None,
        trainable: bool = True,
        name: str | None = None,
    ) -> None:
        # No autocast of its own: each layer casts its input to its own compute dtype, so a
        # float64 model is not squeezed through float32 at the door.
        super().__init__(name=name, trainable=trainable, autocast=False)
        self._layers: list[Layer] = []
        self._input_layer: InputLayer | None = None
        self._output_shapes: list[Shape] = []
        self._calls: list[tuple[Layer, bool]] = []
        if layers is None:
            return
        # A lone layer or a string would otherwise be iterated (or fail) with a message that
        # does not say which argument is wrong.
        if isinstance(layers, (Layer, KerasTensor, str, bytes, Mapping)) or not isinstance(
            layers, Iterable
        ):
            raise TypeError(
                "Argument `layers` of Sequential must be a list of Layer instances (or None). "
                f"Received: layers={layers!r} (of type {type(layers).__name__})"
            )
        for layer in layers:
            self.add(layer)

    # -- structure ---------------------------------------------------------------------------------

    @property
    def layers(self) -> list[Layer]:
        """The layers, in order (without the InputLayer, as Keras)."""
        return list(self._layers)

    def add(self, layer: Layer | KerasTensor, rebuild: bool = True) -> None:
        """Append `layer`; names must be unique within the model (they key saved weights).

        `layer` may also be what `Input(...)` returns (first only), as in Keras: its
        `InputLayer` declares the input shape and builds the model. On a built model the new
        layer is built at once (unless `rebuild` is false); if that fails, the layer is not
        added and the model is unchanged.
        """
        if not isinstance(rebuild, (bool, np.bool_)):
            raise TypeError(
                f"Argument `rebuild` of Sequential.add() must be a bool. Received: "
                f"rebuild={rebuild!r} (of type {type(rebuild).__name__})"
            )
        if isinstance(layer, KerasTensor):
            history = layer._keras_history
            origin = None if history is None else history.operation
            if not isinstance(origin, InputLayer):
                raise TypeError(
                    "A symbolic tensor can be added to a Sequential model only when it comes "
                    f"straight from `Input()`; {layer!r} was made by "
                    f"{getattr(origin, 'name', None)!r}."
                )
            layer = origin
        if not isinstance(layer, Layer):
            raise TypeError(
                f"Only Layer instances can be added to a Sequential model, got {layer!r}."
            )
        if layer is self or any(inner is self for inner in layer._flatten_layers()):
            raise ValueError(
                f"Cannot add model {layer.name!r} to Sequential model {self.name!r}: a model "
                "cannot contain itself."
            )
        # Under the build lock: a first call building the model in another thread reads the
        # layer list, and must see it either before or after this change, never in between.
        with self._build_lock:
            if isinstance(layer, InputLayer):
                if self._layers or self._input_layer is not None:
                    raise ValueError(
                        "An InputLayer can only be the first layer of a Sequential."
                    )
                self.build(layer.batch_shape)
                self._input_layer = layer
                return
            if any(existing.name == layer.name for existing in self._layers):
                raise ValueError(
                    "All layers added to a Sequential model should have unique names. Name "
                    f"{layer.name!r} is already the name of a layer in this model. Update the "
                    "`name` argument to pass a unique name."
                )
            self._layers.append(layer)
            self._calls.append((layer, _takes_training(layer)))
            self._fusion_plan = None
            if self.built and rebuild:
                try:
                    self._build_layers(self._build_shape)  # type: ignore[arg-type]
                except BaseException:
                    self._layers.pop()
                    self._calls.pop()
                    raise

    def pop(self, rebuild: bool = True) -> Layer:
        """Remove and return the last layer.

        `rebuild` is accepted for Keras compatibility: the remaining layers keep their
        weights, so there is nothing to rebuild.
        """
        if not isinstance(rebuild, (bool, np.bool_)):
            raise TypeError(
                f"Argument `rebuild` of Sequential.pop() must be a bool. Received: "
                f"rebuild={rebuild!r} (of type {type(rebuild).__name__})"
            )
        with self._build_lock:
            if not self._layers:
                raise IndexError(f"There are no layers in the Sequential model {self.name!r}.")
            self._calls.pop()
            layer = self._layers.pop()
            self._fusion_plan = None
            self._output_shapes = self._output_shapes[: len(self._layers)]
            return layer

    def build(self, input_shape: Shape) -> None:
        """Build every layer in turn from `input_shape` (the batch dimension may be None)."""
        self._build_layers(input_shape)

    def _build_layers(self, input_shape: Shape) -> None:
        # Reentrant lock: also called from build(), which holds it. The scope names the
        # weights "sequential/dense/kernel" whether add() or build() builds them.
        with self._build_lock, self._open_name_scope():
            shape: Shape = (None, *tuple(input_shape)[1:])
            shapes = []
            for layer in self._layers:
                if not layer.built:
                    layer.build(shape)
                shape = layer._output_shape(shape)
                shapes.append(shape)
            self._output_shapes = shapes

    # -- calling -----------------------------------------------------------------------------------

    def call(self, inputs: Tensor, training: bool = False) -> Tensor:
        """Run the layers in order; `training` reaches every layer, nested ones included.

        A `GroupNormalization` followed by an `Activation` runs as one fused op unless the
        model was compiled with `fuse=False` (see `fused_layers`).
        """
        return _fusion.run_with(self._fuse, lambda fuse: self._run(inputs, training, fuse))

    def _run(self, x: Tensor, training: bool, fuse: bool) -> Tensor:
        calls = self._fused_calls()[0] if fuse else self._calls
        for layer, takes_training in calls:
            x = layer(x, training=training) if takes_training else layer(x)
        return x

    def _fused_calls(
        self,
    ) -> tuple[list[tuple[Any, bool]], list[tuple[str, str | None, str]]]:
        plan = self._fusion_plan
        if plan is None:
            plan = self._fusion_plan = _fusion.plan_sequence(list(self._calls))
        return plan

    @property
    def fused_layers(self) -> list[tuple[str, str | None, str]]:
        """The layer pairs this model runs as one fused GroupNorm op (read-only).

        One `(group_norm_name, None, activation_name)` tuple per `GroupNormalization` layer
        directly followed by an `Activation` layer whose function the fused op has ("linear",
        "relu", "leaky_relu", "silu"/"swish", "sigmoid", "gelu"), when their dtype policies
        compute in float32 or float64. Empty when the model was compiled with `fuse=False`.
        A call whose data would be cast between the two layers runs them unfused.
        """
        if not self._fuse:
            return []
        return list(self._fused_calls()[1])

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The shape after the last layer (inferred by a run for layers without their own)."""
        shape = tuple(input_shape)
        for layer in self._layers:
            shape = layer._output_shape(shape)
        return shape

    @property
    def input_dtype(self) -> str:
        """The compute dtype of the first layer: what `fit`/`predict` cast float inputs to."""
        return self._layers[0].compute_dtype if self._layers else self.compute_dtype

    @property
    def output_shape(self) -> Shape:
        """Output shape of the built model (batch dimension None)."""
        if not self.built or not self._output_shapes:
            raise ValueError(f"Sequential model {self.name!r} is not built yet.")
        return self._output_shapes[-1]

    def _data_structure(self, which: str) -> tuple[str, list[str]]:
        """One input array and one target array."""
        return "single", []

    def _symbolic_output_dtype(self) -> str:
        return self._layers[-1].compute_dtype if self._layers else self.compute_dtype

    # -- weights: the union of the layers' ---------------------------------------------------------

    def _sublayers(self) -> list[Layer]:
        """The stacked layers, in order, then any layer a subclass tracks in an attribute."""
        stacked = list(getattr(self, "_layers", ()))
        ids = {id(layer) for layer in stacked}
        return stacked + [layer for layer in self._tracked_layers if id(layer) not in ids]

    # -- summary -----------------------------------------------------------------------------------

    def summary(self, print_fn: Callable[[str], Any] | None = None) -> None:
        """Print each layer's name, type, output shape and parameter count, then the totals.

        The layout follows Keras's `model.summary()`; `print_fn` receives each line. A model
        not built yet is listed as Keras lists it: output shapes `?`, parameters
        `0 (unbuilt)`, followed by a line saying how to build it.
        """
        built = self.built and len(self._output_shapes) == len(self._layers)
        shapes: list[Any] = list(self._output_shapes) if built else ["?"] * len(self._layers)
        rows = [
            (
                f"{layer.name} ({type(layer).__name__})",
                str(shape),
                f"{layer.count_params():,}" if layer.built else "0 (unbuilt)",
            )
            for layer, shape in zip(self._layers, shapes, strict=True)
        ]
        note = None if built else (
            " The model is not built yet: call it on a batch, call build(input_shape), "
            "start it with an Input, or fit it."
        )
        print_summary(self, ("Layer (type)", "Output Shape", "Param #"), rows,
                      print_fn or print, note)

    # -- configuration -----------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """Keras's Sequential config: name, trainable, dtype, the layers' configs, input shape.

        JSON-serialisable (tuples become lists); `from_config` reads it back, and also
        reads Keras's own Sequential configs for the layers numba_gn has.
        """
        layers = []
        if self._input_layer is not None:
            layers.append(_config.layer_entry(self._input_layer, None))
        for layer, shape in zip(self._layers, self._input_shapes(), strict=True):
            layers.append(_config.layer_entry(layer, shape))
        config = {**Layer.get_config(self), "layers": layers}
        if self.built:
            config["build_input_shape"] = self._build_shape
        return config

    def _json_build_shape(self) -> Any:
        return None if not self.built or self._build_shape is None else list(self._build_shape)

    def _input_shapes(self) -> list[Shape | None]:
        if not self.built or len(self._output_shapes) != len(self._layers):
            return [None] * len(self._layers)
        first: Shape = (None, *tuple(self._build_shape or ())[1:])
        return [first, *self._output_shapes[:-1]]

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], custom_objects: Mapping[str, Any] | None = None
    ) -> Sequential:
        """Rebuild the model from `get_config` output (ours or Keras's).

        Layers are looked up by class name only (nothing is imported; `custom_objects` maps
        further class names to the caller's own layer classes); the model is built when the
        config has an input shape.
        """
        from numba_gn.layers import dtype_policy

        if not isinstance(config, Mapping):
            raise TypeError(
                f"Sequential.from_config() takes a dict, got {type(config).__name__}."
            )
        config = dict(config)
        entries = config.pop("layers", [])
        if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
            raise TypeError(
                f"'layers' of a Sequential config must be a list of layer entries, got "
                f"{type(entries).__name__}: {entries!r}."
            )
        build_shape = config.pop("build_input_shape", None)
        # Sequential computes nothing itself, but a policy from a foreign module is refused
        # here as everywhere else rather than silently dropped.
        dtype_policy.get(config.pop("dtype", None))
        model = cls(name=config.pop("name", None), trainable=config.pop("trainable", True))
        if config:
            raise TypeError(f"Unknown key(s) {sorted(config)} in a Sequential config.")
        for entry in entries:
            model.add(_config.layer_from_entry(entry, custom_objects=custom_objects),
                      rebuild=False)
        if build_shape is not None and not model.built:
            model.build(tuple(build_shape))
        elif model.built:
            model._build_layers(model._build_shape)  # type: ignore[arg-type]
        return model
