"""Models: `Model` (functional and subclassed), `Sequential`, and reading model configs.

* [Model][numba_gn.models.Model] — `Model(inputs, outputs)` on symbolic tensors (the
  functional API, a [Functional][numba_gn.models.functional.Functional] model), or subclassed
  with a `call` of its own;
* [Sequential][numba_gn.models.Sequential] — a stack of layers;
* [model_from_json][numba_gn.models.model_from_json] — a model from `model.to_json()` (ours or
  Keras's);
* [load_model][numba_gn.models.saving.load_model] /
  [save_model][numba_gn.models.saving.save_model] — whole models in `.keras` files
  (`model.save(path)`).

Models sit above layers and the training loop: each mixes in
[Trainer][numba_gn.training.model.Trainer] for `compile`/`fit`/`evaluate`/`predict`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from numba_gn.models.functional import Functional
from numba_gn.models.model import Model
from numba_gn.models.saving import load_model, save_model
from numba_gn.models.sequential import Sequential
from numba_gn.params._registry import check_config_envelope

__all__ = ["Model", "Sequential", "load_model", "model_from_json", "save_model"]

_MODEL_CLASSES = {"Functional": Functional, "Model": Model, "Sequential": Sequential}


def model_from_json(
    json_string: str | bytes, custom_objects: Mapping[str, Any] | None = None
) -> Model:
    """A model (uncompiled, with new weights) from the JSON of `model.to_json()`.

    Reads our `to_json()` and Keras's, for `Sequential` and functional models made of the
    layers numba_gn has. Nothing named in the JSON is imported: classes are looked up by
    name among numba_gn's layers and models, and `custom_objects` (a dict of class name to
    `Layer` subclass) adds the caller's own layer classes.

    Args:
        json_string: The JSON text.
        custom_objects: Optional `{class_name: class}` for custom layers.

    Raises:
        TypeError: `json_string` is not a string.
        ValueError: The text is not JSON, or not a model config numba_gn can rebuild (the
            message says which class or key).
    """
    if not isinstance(json_string, (str, bytes, bytearray)):
        raise TypeError(
            "Argument `json_string` of model_from_json() must be a JSON string, got "
            f"{type(json_string).__name__}."
        )
    if custom_objects is not None and not isinstance(custom_objects, Mapping):
        raise TypeError(
            "Argument `custom_objects` of model_from_json() must be a dict or None, got "
            f"{type(custom_objects).__name__}."
        )
    try:
        config = json.loads(json_string)
    except ValueError as exc:
        raise ValueError(f"model_from_json(): the text is not valid JSON ({exc}).") from None
    if not isinstance(config, Mapping) or "class_name" not in config:
        raise ValueError(
            "model_from_json(): expected a serialized model (a JSON object with 'class_name' "
            f"and 'config'), got {type(config).__name__}."
        )
    check_config_envelope(config, "model", extra_keys=("build_config", "compile_config"))
    name = config["class_name"]
    if name not in _MODEL_CLASSES:
        raise ValueError(
            f"model_from_json(): unknown model class {name!r}; known: {sorted(_MODEL_CLASSES)} "
            "(a subclassed model cannot be rebuilt from its JSON)."
        )
    inner = config.get("config")
    if not isinstance(inner, Mapping):
        raise ValueError(f"model_from_json(): the 'config' of {name!r} must be an object.")
    return _MODEL_CLASSES[name].from_config(inner, custom_objects=custom_objects)
