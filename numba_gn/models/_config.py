"""Layer entries of model configs: which classes a config may name, and how entries are read.

One lookup for every model config (`Sequential`'s `layers`, a functional model's
`layers`, `model_from_json`): the public layers of `numba_gn.layers` plus the models, found
by class name only. Nothing named in a config is ever imported; a class outside the table is
accepted only when the caller hands it over in `custom_objects`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from numba_gn.layers.base import Layer
from numba_gn.layers.input_layer import InputLayer
from numba_gn.params._registry import check_config_envelope, check_config_keys

__all__ = [
    "jsonable_shape", "layer_classes", "layer_entry", "layer_from_entry", "model_envelope"
]

# What Keras writes in the "module"/"registered_name" of a model's entry.
_MODEL_MODULES = {
    "Sequential": ("keras", None),
    "Functional": ("keras.src.models.functional", "Functional"),
}


def layer_classes() -> dict[str, type[Layer]]:
    """Every layer class a config may name: the public layers and the models (by class name)."""
    import numba_gn.layers as public
    from numba_gn.models.functional import Functional
    from numba_gn.models.model import Model
    from numba_gn.models.sequential import Sequential

    classes = (getattr(public, name) for name in public.__all__)
    return {
        c.__name__: c
        for c in classes
        if isinstance(c, type) and issubclass(c, Layer) and c is not Layer
    } | {
        "InputLayer": InputLayer,
        "Sequential": Sequential,
        "Functional": Functional,
        "Model": Model,
    }


def _class_name(layer: Layer) -> str:
    """The class name a config gives `layer`: a model built from tensors is "Functional"."""
    if getattr(layer, "_graph", None) is not None:
        return "Functional"
    return type(layer).__name__


def model_envelope(layer: Layer) -> tuple[str, str, str | None]:
    """`(module, class_name, registered_name)` as Keras serializes `layer`."""
    name = _class_name(layer)
    module, registered = _MODEL_MODULES.get(name, ("keras.layers", None))
    return module, name, registered


def layer_entry(layer: Layer, input_shape: Any) -> dict[str, Any]:
    """Keras's entry for `layer` in a model config.

    `input_shape` goes in `build_config` (none for an `InputLayer` or when None).
    """
    module, class_name, registered = model_envelope(layer)
    entry: dict[str, Any] = {
        "module": module,
        "class_name": class_name,
        "config": layer.get_config(),
        "registered_name": registered,
    }
    if input_shape is not None and not isinstance(layer, InputLayer):
        entry["build_config"] = {"input_shape": jsonable_shape(input_shape)}
    return entry


def jsonable_shape(shape: Any) -> Any:
    """A shape, or a list or dict of shapes, with lists for tuples (as JSON gives them back)."""
    if isinstance(shape, dict):
        return {k: jsonable_shape(v) for k, v in shape.items()}
    if isinstance(shape, (list, tuple)) and any(isinstance(s, (list, tuple)) for s in shape):
        return [jsonable_shape(s) for s in shape]
    return list(shape)


def layer_from_entry(
    entry: Mapping[str, Any],
    extra_keys: tuple[str, ...] = (),
    custom_objects: Mapping[str, Any] | None = None,
) -> Layer:
    """The layer a `{"module", "class_name", "config", ...}` entry describes (name lookup).

    `extra_keys` are further keys the entry may carry (a functional model's `name` and
    `inbound_nodes`); `custom_objects` maps class names to the caller's own layer classes.
    """
    if not isinstance(entry, Mapping) or "class_name" not in entry:
        raise ValueError(f"A layer entry needs 'class_name' and 'config', got {entry!r}.")
    # Keras also writes how a layer was built and compiled; models rebuild from their own
    # input shapes, so those are accepted and not needed.
    keys = ("build_config", "compile_config", *extra_keys)
    name = entry["class_name"]
    custom = dict(custom_objects or {})
    if isinstance(name, str) and name in custom:
        check_config_keys(entry, "layer", extra_keys=keys)
        cls = custom[name]
        if not (isinstance(cls, type) and issubclass(cls, Layer)):
            raise TypeError(
                f"custom_objects[{name!r}] must be a Layer subclass, got {cls!r}."
            )
    else:
        check_config_envelope(entry, "layer", extra_keys=keys)
        classes = layer_classes()
        if not isinstance(name, str) or name not in classes:
            raise ValueError(
                f"Unknown layer class {name!r} in a config; known: {sorted(classes)}."
            )
        cls = classes[name]
    inner = entry.get("config")
    inner = {} if inner is None else inner
    if not isinstance(inner, Mapping):
        raise TypeError(
            f"The config of layer {name!r} must be a dict, got {type(inner).__name__}: {inner!r}."
        )
    if custom and hasattr(cls, "_graph"):  # a model: its own layers may be custom too
        return cls.from_config(dict(inner), custom_objects=custom)  # type: ignore[call-arg]
    return cls.from_config(dict(inner))
