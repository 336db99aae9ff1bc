"""``Sequential``: a stack of layers, each feeding the next, with Keras's model API.

Building, inspecting (``summary``), configuring, and training (``compile``/``fit``/``evaluate``/
``predict``, from :class:`~numba_gn.training.model.Trainer`) follow Keras.

``InputLayer``/``Input`` only declare the input shape (so a model can be built and summarised
before it sees data); they compute nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from numba_gn import _checks
from numba_gn.autograd import Tensor
from numba_gn.layers.base import Layer, Shape
from numba_gn.params._registry import check_config_envelope
from numba_gn.training.model import Trainer

__all__ = ["Input", "InputLayer", "Sequential"]


class InputLayer(Layer):
    """Declares the input shape of a :class:`Sequential` model; passes its input through.

    Keras's rules: exactly one of ``shape`` and ``batch_shape`` is given, ``batch_size`` only
    with ``shape``; a shape's entries are ints >= 0 or ``None`` (unknown), never floats or
    strings. Stricter than Keras, since no array could have such a shape: a shape is a list or
    tuple (not a set, string or other iterable), bools are not dimensions, the batch size is at
    least 1, no dimension exceeds ``sys.maxsize``, ``batch_shape`` has a batch axis, and there
    are at most 64 axes with the batch axis (NumPy's limit). Every violation is a ``ValueError``
    (as in Keras) naming the argument, or the entry (``shape[1]``) at fault.

    Parameters
    ----------
    shape : tuple, optional
        Shape of one sample (without the batch axis).
    batch_size : int, optional
        A fixed batch size (>= 1); ``None``, the default, leaves it open.
    dtype : dtype or DTypePolicy, optional
    batch_shape : tuple, optional
        The full shape with the batch axis (instead of ``shape``/``batch_size``).
    name : str, optional
    sparse, ragged, optional : bool, default False
        Accepted for Keras compatibility at ``False`` (or ``None``, Keras's default for
        ``sparse`` and ``ragged``) only: ``True`` raises ``NotImplementedError`` naming the
        argument, and anything that is not a bool a ``TypeError``.
    """

    def __init__(
        self,
        shape: Sequence[int | None] | None = None,
        batch_size: int | None = None,
        dtype: Any = None,
        batch_shape: Sequence[int | None] | None = None,
        name: str | None = None,
        sparse: bool | None = False,
        ragged: bool | None = False,
        optional: bool = False,
    ) -> None:
        # Flags first: a truthy string such as "False" must not read as a request for an
        # unsupported feature, nor a falsy 0 pass for False.
        for flag, value, none_ok in (
            ("sparse", sparse, True),
            ("ragged", ragged, True),
            ("optional", optional, False),
        ):
            if value is None and none_ok:
                continue
            if _checks.boolean(value, flag):
                raise NotImplementedError(
                    f"InputLayer: `{flag}=True` is not supported: every input of a numba_gn "
                    f"model is one dense NumPy array. Received: {flag}={value!r}"
                )
        if shape is not None and batch_shape is not None:
            raise ValueError(
                "You cannot pass both `shape` and `batch_shape` at the same time. Received: "
                f"shape={_checks.show(shape)}, batch_shape={_checks.show(batch_shape)}"
            )
        if batch_size is not None and batch_shape is not None:
            raise ValueError(
                "You cannot pass both `batch_size` and `batch_shape` at the same time. "
                f"Received: batch_size={_checks.show(batch_size)}, "
                f"batch_shape={_checks.show(batch_shape)}"
            )
        if batch_shape is not None:
            dims = _standardize_shape(batch_shape, "batch_shape", max_ndim=_checks.MAX_NDIM)
            if not dims:  # Sequential builds from it and replaces its first axis
                raise ValueError(
                    "`batch_shape` must include the batch axis (`None` for any batch size). "
                    "Received: batch_shape=()"
                )
            if dims[0] is not None:
                _checks.integer(dims[0], "batch_shape[0]", low=1)
        elif shape is not None:
            # The batch axis is added in front: one axis fewer is left for the sample.
            sample = _standardize_shape(shape, "shape", max_ndim=_checks.MAX_NDIM - 1)
            if batch_size is not None:
                batch_size = _checks.integer(batch_size, "batch_size", low=1,
                                             type_error=ValueError)
            dims = (batch_size, *sample)
        else:
            raise ValueError("InputLayer needs a `shape` (or `batch_shape`) argument.")
        super().__init__(name=name, dtype=dtype)
        self.batch_shape: Shape = dims

    def call(self, inputs: Tensor) -> Tensor:
        """The input, unchanged."""
        return inputs

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The input shape."""
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for InputLayer."""
        return {
            "batch_shape": self.batch_shape,
            "dtype": self.dtype,
            "sparse": False,
            "ragged": False,
            "name": self.name,
            "optional": False,
        }


def _standardize_shape(value: object, name: str, *, max_ndim: int) -> Shape:
    """``value`` as a shape tuple (ints >= 0 and Nones), else a ``ValueError`` naming ``name``.

    Keras's ``standardize_shape`` rules (a ``ValueError`` for anything that is not a shape),
    stricter on bools, ints too large for an array dimension and the number of axes.
    """
    # Only ordered containers: a set or dict has no order of axes, a string is not a shape
    # even when its characters are digits.
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ValueError(
            f"`{name}` must be a tuple or list of ints >= 0 or None, got "
            f"{name}={_checks.show(value)} (of type {type(value).__name__})."
        )
    if len(value) > max_ndim:
        raise ValueError(
            f"`{name}` has {len(value)} axes; at most {max_ndim} are possible (NumPy arrays have "
            f"at most {_checks.MAX_NDIM}, the batch axis included). Received: "
            f"{name}={_checks.show(value)}"
        )
    return tuple(
        None if d is None
        else _checks.integer(d, f"{name}[{i}]", low=0, type_error=ValueError)
        for i, d in enumerate(value)
    )


def Input(
    shape: Sequence[int | None],
    batch_size: int | None = None,
    dtype: Any = None,
    name: str | None = None,
) -> InputLayer:
    """An :class:`InputLayer` for the first position of a :class:`Sequential` model.

    ``shape`` (one sample's shape, without the batch axis) and ``batch_size`` (``None`` or an
    int >= 1) are checked by :class:`InputLayer`, with a ``ValueError`` naming the argument.
    """
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name)


def _takes_training(layer: Layer) -> bool:
    """Whether ``layer.call`` has a ``training`` argument (set by Layer per class)."""
    return type(layer)._call_takes_training


class Sequential(Trainer, Layer):
    """A linear stack of layers.

    Parameters
    ----------
    layers : list of Layer, optional
        Added in order with :meth:`add`. An :class:`InputLayer` first builds the model at once;
        without one, the model builds on its first call (or ``fit``, ``evaluate``,
        ``predict``) from the shape of the data.
    trainable : bool, default True
    name : str, optional
        Default "sequential", "sequential_1", ...

    Notes
    -----
    Any layer can be stacked, custom ones included: a layer without ``compute_output_shape``
    has its output shape inferred by running it once on zeros (batch of 1) when the model
    builds.
    """

    # The stack is kept in these; sublayers come from `_layers` (see _sublayers).
    _untracked_attributes = Layer._untracked_attributes | {
        "_layers", "_calls", "_output_shapes", "_input_layer"
    }

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
        if isinstance(layers, (Layer, str, bytes, Mapping)) or not isinstance(layers, Iterable):
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

    def add(self, layer: Layer, rebuild: bool = True) -> None:
        """Append ``layer``; names must be unique within the model (they key saved weights).

        On a built model the new layer is built at once (unless ``rebuild`` is false); if that
        fails, the layer is not added and the model is unchanged.
        """
        if not isinstance(rebuild, (bool, np.bool_)):
            raise TypeError(
                f"Argument `rebuild` of Sequential.add() must be a bool. Received: "
                f"rebuild={rebuild!r} (of type {type(rebuild).__name__})"
            )
        if not isinstance(layer, Layer):
            raise TypeError(
                f"Only Layer instances can be added to a Sequential model, got {layer!r}."
            )
        if layer is self or (isinstance(layer, Sequential) and _contains(layer, self)):
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
            if self.built and rebuild:
                try:
                    self._build_layers(self._build_shape)  # type: ignore[arg-type]
                except BaseException:
                    self._layers.pop()
                    self._calls.pop()
                    raise

    def pop(self, rebuild: bool = True) -> Layer:
        """Remove and return the last layer.

        ``rebuild`` is accepted for Keras compatibility: the remaining layers keep their
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
            self._output_shapes = self._output_shapes[: len(self._layers)]
            return layer

    def build(self, input_shape: Shape) -> None:
        """Build every layer in turn from ``input_shape`` (the batch dimension may be None)."""
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
        """Run the layers in order; ``training`` reaches every layer, nested ones included."""
        x = inputs
        for layer, takes_training in self._calls:
            x = layer(x, training=training) if takes_training else layer(x)
        return x

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The shape after the last layer (inferred by a run for layers without their own)."""
        shape = tuple(input_shape)
        for layer in self._layers:
            shape = layer._output_shape(shape)
        return shape

    @property
    def input_dtype(self) -> str:
        """The compute dtype of the first layer: what ``fit``/``predict`` cast float inputs to."""
        return self._layers[0].compute_dtype if self._layers else self.compute_dtype

    @property
    def output_shape(self) -> Shape:
        """Output shape of the built model (batch dimension None)."""
        if not self.built or not self._output_shapes:
            raise ValueError(f"Sequential model {self.name!r} is not built yet.")
        return self._output_shapes[-1]

    # -- weights: the union of the layers' ---------------------------------------------------------

    def _sublayers(self) -> list[Layer]:
        """The stacked layers, in order, then any layer a subclass tracks in an attribute."""
        stacked = list(getattr(self, "_layers", ()))
        ids = {id(layer) for layer in stacked}
        return stacked + [layer for layer in self._tracked_layers if id(layer) not in ids]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set every weight, in the order of :attr:`weights`; all are checked before any is set.

        A mismatch names the weight by its path in weight files (``"dense_1/kernel"``).
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

        The layout follows Keras's ``model.summary()``; ``print_fn`` receives each line. A model
        not built yet is listed as Keras lists it: output shapes ``?``, parameters
        ``0 (unbuilt)``, followed by a line saying how to build it.
        """
        emit = print_fn or print
        rows = [("Layer (type)", "Output Shape", "Param #")]
        built = self.built and len(self._output_shapes) == len(self._layers)
        shapes: list[Any] = list(self._output_shapes) if built else ["?"] * len(self._layers)
        rows += [
            (
                f"{layer.name} ({type(layer).__name__})",
                str(shape),
                f"{layer.count_params():,}" if layer.built else "0 (unbuilt)",
            )
            for layer, shape in zip(self._layers, shapes, strict=True)
        ]
        w = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        w[2] = max(w[2], 12)
        line = "─" * (sum(w) + 2)

        def fmt(r: tuple[str, str, str]) -> str:
            return f" {r[0]:<{w[0]}}{r[1]:<{w[1]}}{r[2]:>{w[2]}} "

        emit(f'Model: "{self.name}"')
        emit(line)
        emit(fmt(rows[0]))
        emit("═" * len(line))
        for r in rows[1:]:
            emit(fmt(r))
        emit(line)
        trainable = sum(math.prod(v.shape) for v in self.trainable_weights)
        total = self.count_params()
        size = sum(v.data.nbytes for v in self.weights)
        t_size = sum(v.data.nbytes for v in self.trainable_weights)
        emit(f" Total params: {total:,} ({_bytes(size)})")
        emit(f" Trainable params: {trainable:,} ({_bytes(t_size)})")
        emit(f" Non-trainable params: {total - trainable:,} ({_bytes(size - t_size)})")
        if not built:
            emit(
                " The model is not built yet: call it on a batch, call build(input_shape), "
                "start it with an Input, or fit it."
            )

    # -- configuration -----------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """Keras's Sequential config: name, trainable, dtype, the layers' configs, input shape.

        JSON-serialisable (tuples become lists); :meth:`from_config` reads it back, and also
        reads Keras's own Sequential configs for the layers numba_gn has.
        """
        layers = []
        if self._input_layer is not None:
            layers.append(_layer_entry(self._input_layer, None))
        for layer, shape in zip(self._layers, self._input_shapes(), strict=True):
            layers.append(_layer_entry(layer, shape))
        config = {**super().get_config(), "layers": layers}
        if self.built:
            config["build_input_shape"] = self._build_shape
        return config

    def _input_shapes(self) -> list[Shape | None]:
        if not self.built or len(self._output_shapes) != len(self._layers):
            return [None] * len(self._layers)
        first: Shape = (None, *tuple(self._build_shape or ())[1:])
        return [first, *self._output_shapes[:-1]]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Sequential:
        """Rebuild the model from :meth:`get_config` output (ours or Keras's).

        Layers are looked up by class name only (nothing is imported); the model is built
        when the config has an input shape.
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
            model.add(_layer_from_entry(entry), rebuild=False)
        if build_shape is not None and not model.built:
            model.build(tuple(build_shape))
        elif model.built:
            model._build_layers(model._build_shape)  # type: ignore[arg-type]
        return model


def _contains(model: Sequential, target: Layer) -> bool:
    """Whether ``target`` is ``model`` or sits anywhere inside it (nested models included)."""
    if model is target:
        return True
    return any(
        layer is target or (isinstance(layer, Sequential) and _contains(layer, target))
        for layer in model._layers
    )


def _layer_entry(layer: Layer, input_shape: Shape | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "module": "keras.layers",
        "class_name": type(layer).__name__,
        "config": layer.get_config(),
        "registered_name": None,
    }
    if input_shape is not None and not isinstance(layer, InputLayer):
        entry["build_config"] = {"input_shape": input_shape}
    return entry


def _layer_classes() -> dict[str, type[Layer]]:
    """Every layer class a config may name: the public layers (looked up, never imported)."""
    import numba_gn.layers as public

    classes = (getattr(public, name) for name in public.__all__)
    return {
        c.__name__: c
        for c in classes
        if isinstance(c, type) and issubclass(c, Layer) and c is not Layer
    } | {"InputLayer": InputLayer, "Sequential": Sequential}


def _layer_from_entry(entry: Mapping[str, Any]) -> Layer:
    """The layer a ``{"module", "class_name", "config", ...}`` entry describes (name lookup)."""
    if not isinstance(entry, Mapping) or "class_name" not in entry:
        raise ValueError(f"A layer entry needs 'class_name' and 'config', got {entry!r}.")
    # Keras also writes how a layer was built and compiled; the model rebuilds from its own
    # input shape, so those are accepted and not needed.
    check_config_envelope(entry, "layer", extra_keys=("build_config", "compile_config"))
    classes = _layer_classes()
    name = entry["class_name"]
    if not isinstance(name, str) or name not in classes:
        raise ValueError(f"Unknown layer class {name!r} in a config; known: {sorted(classes)}.")
    inner = entry.get("config")
    inner = {} if inner is None else inner
    if not isinstance(inner, Mapping):
        raise TypeError(
            f"The config of layer {name!r} must be a dict, got {type(inner).__name__}: {inner!r}."
        )
    return classes[name].from_config(dict(inner))


def _bytes(n: float) -> str:
    """Keras's size format: ``20.41 KB``."""
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GB"
