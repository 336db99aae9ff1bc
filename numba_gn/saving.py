"""Keras's `keras.saving` namespace: whole-model files and the registry of custom classes.

* [save_model][numba_gn.models.saving.save_model] /
  [load_model][numba_gn.models.saving.load_model] — a model in one `.keras` file
  (`model.save(path)` calls the first);
* [register_serializable][numba_gn.models.saving.register_serializable] — Keras's
  `register_keras_serializable`: `@register_serializable(package="Custom", name=None)`
  registers a class or function as `"package>name"`, so `load_model` finds it without
  `custom_objects`;
* [get_registered_object][numba_gn.models.saving.get_registered_object] /
  [get_registered_name][numba_gn.models.saving.get_registered_name] — look-ups in that
  registry.

The implementation is in `numba_gn.models.saving`.
"""

from numba_gn.models.saving import (
    get_registered_name,
    get_registered_object,
    load_model,
    register_serializable,
    save_model,
)

__all__ = [
    "get_registered_name",
    "get_registered_object",
    "load_model",
    "register_serializable",
    "save_model",
]
