"""Whole-model files (`.keras`) and the registry of the caller's own classes.

`model.save("net.keras")` (or [save_model][numba_gn.models.saving.save_model]) writes one zip
archive in Keras 3's `.keras` layout, with numba_gn's weights container and the training
state Keras keeps elsewhere:

`metadata.json`
    `{"numba_gn_version": ..., "date_saved": "2025-01-31@12:00:00"}`.
`config.json`
    The model as `model.to_json()` writes it (Keras's format: `module`, `class_name`,
    `config`, `registered_name`, `build_config`), with `compile_config`: Keras's keys
    (`optimizer`, `loss`, `loss_weights`, `metrics`, ...), empty for a model that was
    never compiled.
`model.weights.npz`
    Every weight as one NPY member (an `.npz` archive, as `np.savez` writes and
    `np.load(..., allow_pickle=False)` reads), keyed by Keras's weight paths
    (`"layers/dense/vars/0"`: the layout of Keras's `model.weights.h5`, see
    [numba_gn.training._keras_layout][]); Keras writes an HDF5 file here instead.
`optimizer.npz` (compiled models)
    The optimizer's step count (`iterations`) and each weight's slot arrays
    (`slots/<weight path>/<k>`, e.g. Adam's moments): `fit` continues where it stopped.
`rng_states.json` (when a layer has a random generator, e.g. `Dropout`)
    `{"<layer path>": {"<attribute>": <bit generator state>}}`, layers named by the same
    paths (`"layers/dropout"`): the next dropout masks are the ones the saved model would
    have drawn.

So `fit(..., initial_epoch=k)` on a loaded model continues bit for bit what the saved model's
training would have done (with `fit`'s own shuffling seeded by `seed`).

[load_model][numba_gn.models.saving.load_model] reads these files back, and also `.keras`
files written by Keras when they hold layers numba_gn has (their `model.weights.h5` needs
h5py; Keras's optimizer state in it is not read). The file is untrusted:

* nothing is unpickled, imported or evaluated: classes are looked up by name only, in the
  built-in tables, in the registry (`register_serializable`) or in `custom_objects`; a
  config naming any other class (say ``"module": "os",
  "class_name": "system"``) is refused;
* every array's header is checked against the model before its data is read;
* a truncated, corrupted or tampered file is a `ValueError` naming the file and what is wrong.

Saving is atomic ([numba_gn._atomic][]): a failed or killed save leaves an existing file as it
was.
"""

from __future__ import annotations

import datetime
import inspect
import json
import os
import threading
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from numba_gn._atomic import atomic_write
from numba_gn.layers.base import Layer
from numba_gn.models import _config
from numba_gn.params._registry import check_config_module
from numba_gn.training import _keras_layout
from numba_gn.training import losses as losses_mod
from numba_gn.training import metrics as metrics_mod
from numba_gn.training import optimizers as optimizers_mod
from numba_gn.training import saving as weights_io

__all__ = [
    "get_registered_name",
    "get_registered_object",
    "load_model",
    "register_serializable",
    "save_model",
]

T = TypeVar("T")

METADATA = "metadata.json"
CONFIG = "config.json"
WEIGHTS = "model.weights.npz"
KERAS_WEIGHTS_H5 = "model.weights.h5"
OPTIMIZER = "optimizer.npz"
RNG_STATES = "rng_states.json"
# JSON members are small; a larger one is refused before it is read (a zip bomb, or not ours).
_MAX_JSON_BYTES = 64 * 2**20

# -- the registry ---------------------------------------------------------------------------------

_registry_lock = threading.Lock()
_REGISTERED_OBJECTS: dict[str, Any] = {}
_REGISTERED_NAMES: dict[Any, str] = {}


def register_serializable(package: str = "Custom", name: str | None = None) -> Callable[[T], T]:
    """Register a class or function under `"package>name"`, as Keras's decorator does.

    This is Keras's `keras.saving.register_keras_serializable`. A registered class is found
    by [load_model][numba_gn.models.saving.load_model] without `custom_objects`, and saved
    configs name it by its registered name::

        @numba_gn.saving.register_serializable(package="my_package")
        class Block(numba_gn.layers.Layer):
            ...

        numba_gn.saving.get_registered_object("my_package>Block")  # Block

    Args:
        package: The first part of the key.
        name: The second part; default the class's (or function's) `__name__`.

    Returns:
        The decorator, which returns the object unchanged.

    Raises:
        TypeError: `package` or `name` is not a string.
        ValueError: (From the decorator) a class without `get_config()`, which could not be
            saved.
    """
    if not isinstance(package, str):
        raise TypeError(f"Argument `package` must be a string, got {package!r}.")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"Argument `name` must be a string or None, got {name!r}.")

    def decorator(arg: T) -> T:
        class_name = name if name is not None else getattr(arg, "__name__", None)
        if not isinstance(class_name, str):
            raise TypeError(
                f"Cannot register {arg!r}: it has no __name__; pass `name` to "
                "register_serializable."
            )
        registered_name = f"{package}>{class_name}"
        if inspect.isclass(arg) and not hasattr(arg, "get_config"):
            raise ValueError("Cannot register a class that does not have a get_config() method.")
        with _registry_lock:
            _REGISTERED_OBJECTS[registered_name] = arg
            _REGISTERED_NAMES[arg] = registered_name
        return arg

    return decorator


def get_registered_object(
    name: str,
    custom_objects: Mapping[str, Any] | None = None,
    module_objects: Mapping[str, Any] | None = None,
) -> Any:
    """The object registered as `name` (Keras's `keras.saving.get_registered_object`).

    Looked up in the registry, then in `custom_objects`, then in `module_objects`; None
    when none has it.
    """
    with _registry_lock:
        if name in _REGISTERED_OBJECTS:
            return _REGISTERED_OBJECTS[name]
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    if module_objects and name in module_objects:
        return module_objects[name]
    return None


def get_registered_name(obj: Any) -> str:
    """`"package>name"` of a registered object, else its `__name__` (Keras's rule)."""
    with _registry_lock:
        registered = _REGISTERED_NAMES.get(obj)
    return registered if registered is not None else obj.__name__


def _registered_name_of(obj: Any) -> str | None:
    with _registry_lock:
        try:
            return _REGISTERED_NAMES.get(obj)
        except TypeError:  # unhashable
            return None


# -- saving ---------------------------------------------------------------------------------------


def _file_name(path: Any, what: str = "filepath") -> str:
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(
            f"Argument `{what}` must be a str or os.PathLike, got {type(path).__name__}: "
            f"{path!r}."
        ) from None


def save_model(model: Any, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
    """Write `model` to a `.keras` file, atomically (Keras's `save_model`).

    The file holds the config, the weights, the compile arguments and the optimizer and RNG
    states; see the module docstring for the layout.

    Args:
        model: A built numba_gn model (`Sequential`, functional or subclassed).
        filepath: Must end in `.keras`.
        overwrite: False refuses to replace an existing file.

    Raises:
        ValueError: `filepath` does not end in `.keras` or is a directory; the model is not
            built, or cannot be described (a weight that is not numeric).
        FileExistsError: `overwrite` is false and the file exists.
        TypeError: Wrong argument types, or a config that is not JSON-able.
        OSError: From the file system; an existing file is then left as it was.
    """
    from numba_gn.models.model import Model

    if not isinstance(model, Model):
        raise TypeError(f"save_model() takes a numba_gn model, got {type(model).__name__}.")
    file = _file_name(filepath)
    if not isinstance(overwrite, (bool, np.bool_)):
        raise TypeError(f"Argument `overwrite` must be a bool, got {overwrite!r}.")
    if not file.endswith(".keras"):
        raise ValueError(
            "Invalid filepath extension for saving: a whole model is saved to a `.keras` file "
            f"(the weights alone: `save_weights`). Received: filepath={file}"
        )
    if os.path.isdir(file):
        raise ValueError(f"Cannot save the model to {file}: it is a directory.")
    if not overwrite and os.path.lexists(file):
        raise FileExistsError(f"{file} exists and `overwrite` is False.")
    # Everything is gathered (and can fail) before a file is created.
    paths = _keras_layout.keras_weight_paths(model)
    weights = weights_io.numeric_arrays(paths)
    config = _model_config(model)
    try:
        config_json = json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"The config of model {model.name!r} is not JSON-able: {exc}") from None
    from numba_gn import __version__

    metadata = {
        "numba_gn_version": __version__,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
    }
    optimizer = _optimizer_arrays(model, paths)
    rng_states = _rng_states(model)

    def write(fh: Any) -> None:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.writestr(METADATA, json.dumps(metadata))
            zf.writestr(CONFIG, config_json)
            with zf.open(WEIGHTS, "w", force_zip64=True) as member:
                weights_io.write_npz(member, weights)
            if optimizer is not None:
                with zf.open(OPTIMIZER, "w", force_zip64=True) as member:
                    weights_io.write_npz(member, optimizer)
            if rng_states:
                zf.writestr(RNG_STATES, json.dumps(rng_states))

    atomic_write(file, write)


def _model_config(model: Any) -> dict[str, Any]:
    """`to_json()`'s envelope, registered names filled in, with the compile config."""
    config = json.loads(model.to_json())
    cls = type(model)
    registered = _registered_name_of(cls)
    if registered is not None:
        config["module"] = cls.__module__
        config["registered_name"] = registered
    _name_custom_layers(model, config.get("config"))
    config["compile_config"] = _compile_config(model)
    return config


def _builtin_layer_class(name: str) -> Any:
    return _config.layer_classes().get(name)


def _name_custom_layers(model: Any, inner: Any) -> None:
    """Give the entries of the caller's own layer classes Keras's module and registered name.

    The layer entries of a config name every class as a built-in one; a class that is not
    numba_gn's gets its registered name (`"Custom>Block"`, looked up in the registry on
    load) or, unregistered, its class name and module (`custom_objects` then supplies it).
    """
    if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
        return
    by_name = {layer.name: layer for layer in _all_layers_of(model)}
    for entry in inner["layers"]:
        if not isinstance(entry, dict):
            continue
        layer = by_name.get((entry.get("config") or {}).get("name"))
        if layer is None:
            continue
        cls = type(layer)
        registered = _registered_name_of(cls)
        if registered is not None:
            entry["module"] = cls.__module__
            entry["registered_name"] = registered
        elif _builtin_layer_class(entry.get("class_name")) is not cls and \
                getattr(layer, "_graph", None) is None:
            entry["module"] = cls.__module__
            entry["registered_name"] = cls.__name__
        _name_custom_layers(layer, entry.get("config"))


def _all_layers_of(model: Any) -> list[Layer]:
    layers = list(getattr(model, "layers", []))
    input_layer = getattr(model, "_input_layer", None)  # a Sequential's
    if input_layer is not None:
        layers.append(input_layer)
    return layers


def _builtin_loss_class(obj: Any) -> bool:
    return losses_mod._CLASSES.get(type(obj).__name__) is type(obj)


def _serialize_object(obj: Any, module: str, builtin: bool) -> Any:
    """Keras's envelope for a loss/metric/optimizer object or a function."""
    registered = _registered_name_of(type(obj) if not inspect.isroutine(obj) else obj)
    if inspect.isroutine(obj):
        return {
            "module": getattr(obj, "__module__", None),
            "class_name": "function",
            "config": obj.__name__,
            "registered_name": registered or obj.__name__,
        }
    cls = type(obj)
    config = obj.get_config() if callable(getattr(obj, "get_config", None)) else None
    if builtin and registered is None:
        return {"module": module, "class_name": cls.__name__, "config": config,
                "registered_name": None}
    return {
        "module": cls.__module__,
        "class_name": cls.__name__,
        "config": config,
        "registered_name": registered or cls.__name__,
    }


def _serialize_loss(loss: Any) -> Any:
    if loss is None:
        return None
    if isinstance(loss, list):
        return [_serialize_loss(item) for item in loss]
    if isinstance(loss, dict):
        return {key: _serialize_loss(item) for key, item in loss.items()}
    return _serialize_object(loss, "keras.losses", _builtin_loss_class(loss))


def _serialize_metric(metric: Any) -> Any:
    if metric is None or isinstance(metric, str):
        return metric
    if isinstance(metric, dict):
        return {key: _serialize_metric(item) for key, item in metric.items()}
    if isinstance(metric, (list, tuple)):
        return [_serialize_metric(item) for item in metric]
    cls = type(metric)
    if cls is metrics_mod.Accuracy and _registered_name_of(cls) is None:
        return {"module": "keras.metrics", "class_name": "Accuracy",
                "config": {"name": metric.name, "threshold": metric.threshold},
                "registered_name": None}
    if cls is metrics_mod.MeanMetricWrapper and \
            metrics_mod._FUNCTIONS.get(getattr(metric.fn, "__name__", "")) is metric.fn:
        return {"module": "keras.metrics", "class_name": "MeanMetricWrapper",
                "config": {"fn": metric.fn.__name__, "name": metric.name},
                "registered_name": None}
    return _serialize_object(metric, "keras.metrics", False)


def _compile_config(model: Any) -> dict[str, Any]:
    """Keras's `compile_config` for a compiled model, `{}` otherwise."""
    if getattr(model, "optimizer", None) is None or getattr(model, "loss", None) is None:
        return {}
    optimizer = model.optimizer
    return {
        "optimizer": _serialize_object(
            optimizer, "keras.optimizers",
            optimizers_mod._CLASSES.get(type(optimizer).__name__) is type(optimizer),
        ),
        "loss": _serialize_loss(model.loss),
        "loss_weights": model.loss_weights,
        "metrics": _serialize_metric(model._metric_spec),
        "weighted_metrics": None,
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": False,
    }


def _optimizer_arrays(
    model: Any, paths: list[tuple[str, Any]]
) -> list[tuple[str, np.ndarray]] | None:
    """The optimizer's step count and slot arrays, keyed by weight path (None: not compiled)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or getattr(model, "loss", None) is None:
        return None
    state = optimizer.get_state([w for _, w in paths])
    arrays = [("iterations", np.array(state["iterations"], dtype=np.int64))]
    for (path, _), slots in zip(paths, state["slots"], strict=True):
        for k, arr in enumerate(slots or ()):
            arrays.append((f"slots/{path}/{k}", arr))
    return arrays


def layer_paths(model: Any) -> list[tuple[str, Layer]]:
    """`("layers/dropout", layer)` for the model (`""`) and every layer: Keras's paths."""
    return [(group[: -len("vars")].rstrip("/"), layer)
            for group, layer in _keras_layout.keras_entries(model)]


def _generators(layer: Layer) -> dict[str, np.random.Generator]:
    return {
        name: value for name, value in sorted(vars(layer).items())
        if isinstance(value, np.random.Generator)
    }


def _rng_states(model: Any) -> dict[str, dict[str, Any]]:
    """`{layer path: {attribute: bit generator state}}` for the layers with generators."""
    out = {}
    for path, layer in layer_paths(model):
        gens = _generators(layer)
        if gens:
            out[path] = {name: gen.bit_generator.state for name, gen in gens.items()}
    return out


# -- loading --------------------------------------------------------------------------------------


class _Archive:
    """The open `.keras` zip, with checked access to its members."""

    def __init__(self, file: str) -> None:
        self.file = file
        weights_io.check_regular_file(file, "a .keras model file")
        self.fh = open(file, "rb")  # noqa: SIM115 - closed by close()
        try:
            head = self.fh.read(4)
            self.fh.seek(0)
            if head[:4] != b"PK\x03\x04" and head[:4] != b"PK\x05\x06":
                raise self.error(
                    "not a .keras file (not a zip archive"
                    + ("; it is an HDF5 file: Keras 2's .h5 models are not read)"
                       if head == b"\x89HDF" else ")")
                )
            try:
                self.zf = weights_io.open_zip(self.fh, file, "a .keras model file")
            except ValueError as exc:
                raise self.error(str(exc).replace(" No weight was changed.", "").rstrip(".")
                                 .replace(f"{file} is ", "")) from None
            names = [info.filename for info in self.zf.infolist()]
            duplicated = sorted({n for n in names if names.count(n) > 1})
            if duplicated:
                raise self.error(f"tampered (duplicate members {duplicated})")
            self.names = set(names)
        except BaseException:
            self.fh.close()
            raise

    def error(self, problem: str) -> ValueError:
        return ValueError(f"Cannot load the model from {self.file}: {problem.rstrip('.')}.")

    def close(self) -> None:
        if hasattr(self, "zf"):
            self.zf.close()
        self.fh.close()

    def json(self, name: str, required: bool = True) -> Any:
        if name not in self.names:
            if required:
                raise self.error(f"missing member {name!r} (not a .keras model file?)")
            return None
        info = self.zf.getinfo(name)
        if info.file_size > _MAX_JSON_BYTES:
            raise self.error(f"member {name!r} is implausibly large ({info.file_size} bytes)")
        try:
            with self.zf.open(info) as member:
                data = member.read(_MAX_JSON_BYTES + 1)
        except weights_io.MEMBER_ERRORS as exc:
            raise self.error(f"member {name!r} is corrupt ({type(exc).__name__}: {exc})") \
                from None
        if len(data) > _MAX_JSON_BYTES:
            raise self.error(f"member {name!r} is implausibly large")
        try:
            return json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise self.error(f"member {name!r} is not valid JSON ({exc})") from None

    def npz(self, name: str, specs: list[weights_io.Spec], required: bool = True,
            ) -> dict[str, np.ndarray]:
        label = f"Model file {self.file} (member {name!r})"
        try:
            with self.zf.open(name) as member, weights_io.open_zip(
                member, f"Model file {self.file} (member {name!r})", "an .npz archive"
            ) as inner:
                return weights_io.read_npz(inner, label, specs, required)
        except weights_io.MEMBER_ERRORS as exc:
            raise self.error(f"member {name!r} is corrupt ({type(exc).__name__}: {exc})") \
                from None


def load_model(
    filepath: str | os.PathLike[str],
    custom_objects: Mapping[str, Any] | None = None,
    compile: bool = True,  # noqa: A002 - Keras's argument name
) -> Any:
    """A model from a `.keras` file (Keras's `keras.models.load_model`).

    Restores the architecture, the weights, the compile arguments and the optimizer and RNG
    states. Classes are found by name in numba_gn's built-in tables, in the registry
    ([register_serializable][numba_gn.models.saving.register_serializable]) and in
    `custom_objects`, which wins over both; nothing named in the file is ever imported.

    Args:
        filepath: A `.keras` file written by `model.save` (or by Keras, for the layers
            numba_gn has; its optimizer state is then not restored).
        custom_objects: `{name: class or function}` for the caller's own layers, models,
            losses and metrics, by class name or registered name.
        compile: Whether to compile the model as it was saved and restore its optimizer state;
            False gives an uncompiled model.

    Returns:
        The model, built, with the saved weights.

    Raises:
        ValueError: The file is not a readable `.keras` file, is truncated, corrupted or
            tampered with, or names a class that is not known (the message names the file and
            what is wrong).
        FileNotFoundError: The file does not exist.
        ImportError: The file holds Keras's HDF5 weights and h5py is not installed.
        TypeError: Wrong argument types.
    """
    file = _file_name(filepath)
    if custom_objects is not None and not isinstance(custom_objects, Mapping):
        raise TypeError(
            "Argument `custom_objects` of load_model() must be a dict or None, got "
            f"{type(custom_objects).__name__}."
        )
    if not isinstance(compile, (bool, np.bool_)):
        raise TypeError(f"Argument `compile` of load_model() must be a bool, got {compile!r}.")
    custom = dict(custom_objects or {})
    archive = _Archive(file)
    try:
        return _load(archive, custom, bool(compile))
    except RecursionError:
        raise archive.error("its config nests objects too deeply") from None
    finally:
        archive.close()


def _load(archive: _Archive, custom: dict[str, Any], compile: bool) -> Any:  # noqa: A002
    metadata = archive.json(METADATA)
    if not isinstance(metadata, dict):
        raise archive.error(f"{METADATA!r} must hold a JSON object")
    config = archive.json(CONFIG)
    if not isinstance(config, dict) or "class_name" not in config:
        raise archive.error(
            f"{CONFIG!r} must hold a serialized model (a JSON object with 'class_name' and "
            "'config')"
        )
    # Keras marks objects shared within its config with an id (its dtype policies, for one);
    # the models numba_gn rebuilds share nothing but layers, which configs name anyway.
    config = _without_shared_object_ids(config)
    model = _rebuild(archive, config, custom)
    try:
        paths = _keras_layout.keras_weight_paths(model)
    except ValueError as exc:
        raise archive.error(str(exc).rstrip(".")) from None
    if WEIGHTS in archive.names:
        values = archive.npz(WEIGHTS, weights_io.specs_of(paths))
        pairs = [(w, values[name]) for name, w in paths]
    elif KERAS_WEIGHTS_H5 in archive.names:
        with archive.zf.open(KERAS_WEIGHTS_H5) as member:
            pairs = _keras_layout.read(model, member, f"Model file {archive.file} "
                                            f"(member {KERAS_WEIGHTS_H5!r})")
    else:
        raise archive.error(f"missing member {WEIGHTS!r} (the weights)")
    rng = _checked_rng_states(archive, model)
    compile_config = config.get("compile_config")
    optimizer_state = None
    if compile and compile_config:
        _compile(archive, model, compile_config, custom)
        if OPTIMIZER in archive.names:
            optimizer_state = _checked_optimizer_state(archive, model, paths)
    # Everything is checked: now the state is set.
    weights_io.assign_all(pairs)
    if optimizer_state is not None:
        model.optimizer.set_state(optimizer_state, [w for _, w in paths])
    for gen, state in rng:
        gen.bit_generator.state = state
    return model


def _without_shared_object_ids(value: Any) -> Any:
    """`value` without the `shared_object_id` keys of Keras's serialized objects."""
    if isinstance(value, dict):
        return {
            k: _without_shared_object_ids(v) for k, v in value.items()
            if not (k == "shared_object_id" and "class_name" in value)
        }
    if isinstance(value, list):
        return [_without_shared_object_ids(v) for v in value]
    return value


# -- resolving names ------------------------------------------------------------------------------


def _resolve(
    archive: _Archive, entry: Mapping[str, Any], custom: Mapping[str, Any], what: str
) -> Any:
    """The class (or function) an entry's `registered_name`/`class_name` names, or None.

    `custom_objects` first, then the registry; None means "look in the built-in table".
    """
    class_name = entry.get("class_name")
    registered = entry.get("registered_name")
    if class_name == "function":
        # Keras writes a function's name in "config".
        names = [registered, entry.get("config")]
    else:
        names = [registered, class_name]
    for name in names:
        if isinstance(name, str) and name in custom:
            return custom[name]
    if isinstance(registered, str):
        found = get_registered_object(registered)
        if found is not None:
            return found
    return None


def _unknown(archive: _Archive, entry: Mapping[str, Any], what: str) -> ValueError:
    module = entry.get("module")
    return archive.error(
        f"unknown {what} {entry.get('class_name')!r}"
        + (f" (registered name {entry['registered_name']!r})"
           if isinstance(entry.get("registered_name"), str) else "")
        + (f" from module {module!r}, which is never imported" if module else "")
        + "; register the class with numba_gn.saving.register_serializable() or pass it in "
        "`custom_objects`"
    )


def _prepare_layer_entries(
    archive: _Archive, inner: Any, custom: dict[str, Any], depth: int = 0
) -> None:
    """Point the entries of registered classes at them, through `custom` (in place).

    The config readers look a layer entry up by `class_name` in `custom_objects`; an
    entry whose `registered_name` is registered (or given in `custom_objects`) gets that
    name as its `class_name` and the class in `custom`, so a registered `Dense` of the
    caller's never shadows the built-in one.
    """
    if depth > 100:
        raise archive.error("the config nests models more than 100 deep")
    if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
        return
    builtin = _config.layer_classes()
    for entry in inner["layers"]:
        if not isinstance(entry, dict):
            continue
        registered = entry.get("registered_name")
        if isinstance(registered, str) and ">" in registered:
            found = custom.get(registered) or get_registered_object(registered)
            if found is None and entry.get("class_name") not in custom:
                raise _unknown(archive, entry, "layer class")
            if found is not None:
                _check_class(archive, found, Layer, registered, "layer")
                custom[registered] = found
                entry["class_name"] = registered
        name = entry.get("class_name")
        if not isinstance(name, str) or (name not in custom and name not in builtin):
            raise _unknown(archive, entry, "layer class")
        _prepare_layer_entries(archive, entry.get("config"), custom, depth + 1)


def _check_class(archive: _Archive, obj: Any, base: type, name: str, what: str) -> None:
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise archive.error(
            f"{name!r} names {obj!r}, which is not a {base.__name__} subclass, as a {what}"
        )


def _model_class(archive: _Archive, config: Mapping[str, Any], custom: Mapping[str, Any]) -> Any:
    from numba_gn.models.model import Model

    found = _resolve(archive, config, custom, "model")
    if found is not None:
        _check_class(archive, found, Model, str(config.get("class_name")), "model")
        return found
    name = config.get("class_name")
    if not isinstance(name, str) or name not in ("Functional", "Model", "Sequential"):
        raise _unknown(archive, config, "model class")
    try:
        check_config_module(config, "model", " Pass custom_objects to use your own class.")
    except ValueError as exc:
        raise archive.error(str(exc).rstrip(".")) from None
    return _config.layer_classes()[name]


def _rebuild(archive: _Archive, config: dict[str, Any], custom: dict[str, Any]) -> Any:
    """The model described by `config.json`, built."""
    unknown_keys = sorted(
        set(config) - {"module", "class_name", "config", "registered_name", "build_config",
                       "compile_config"}
    )
    if unknown_keys:
        raise archive.error(f"unknown key(s) {unknown_keys} in {CONFIG!r}")
    cls = _model_class(archive, config, custom)
    inner = config.get("config")
    inner = {} if inner is None else inner
    if not isinstance(inner, dict):
        raise archive.error(f"the 'config' of the model in {CONFIG!r} must be an object")
    _prepare_layer_entries(archive, inner, custom)
    try:
        if _takes_custom_objects(cls.from_config):
            model = cls.from_config(inner, custom_objects=custom)
        else:  # a subclass's own from_config(config)
            model = cls.from_config(inner)
    except (ValueError, TypeError, KeyError) as exc:
        raise archive.error(f"the model cannot be rebuilt from {CONFIG!r}: {exc}") from None
    if not model.built:
        build = config.get("build_config") or {}
        shape = build.get("input_shape") if isinstance(build, dict) else None
        if shape is not None:
            try:
                model.build(_shape_from_json(shape))
            except (ValueError, TypeError) as exc:
                raise archive.error(
                    f"the model cannot be built for the input shape {shape!r} of its "
                    f"build_config: {exc}"
                ) from None
    if not model.built:
        raise archive.error(
            "the model is not built by its config (no input shape in 'build_config')"
        )
    return model


def _takes_custom_objects(method: Any) -> bool:
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return "custom_objects" in params or any(
        p.kind is p.VAR_KEYWORD for p in params.values()
    )


def _shape_from_json(shape: Any) -> Any:
    """A `build_config` input shape (JSON lists) as `build` takes it (tuples)."""
    if isinstance(shape, dict):
        return {k: _shape_from_json(v) for k, v in shape.items()}
    if isinstance(shape, list) and shape and all(isinstance(s, (list, dict)) for s in shape):
        return [_shape_from_json(s) for s in shape]
    if isinstance(shape, list):
        return tuple(shape)
    raise TypeError(f"not a shape: {shape!r}")


# -- compile --------------------------------------------------------------------------------------


def _instantiate(archive: _Archive, found: Any, entry: Mapping[str, Any], what: str) -> Any:
    if not isinstance(found, type):
        if callable(found):
            return found
        raise archive.error(f"the {what} {entry.get('class_name')!r} resolves to {found!r}, "
                            "neither a class nor a function")
    inner = entry.get("config")
    inner = {} if inner is None else inner
    if not isinstance(inner, dict):
        raise archive.error(f"the config of {what} {entry.get('class_name')!r} must be an object")
    from_config = getattr(found, "from_config", None)
    return from_config(dict(inner)) if callable(from_config) else found(**inner)


def _deserialize_loss(archive: _Archive, value: Any, custom: Mapping[str, Any]) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [_deserialize_loss(archive, item, custom) for item in value]
    if isinstance(value, str):
        if value in custom:
            found = custom[value]
            return found() if isinstance(found, type) else found
        return losses_mod.get(value)
    if isinstance(value, dict) and "class_name" not in value:
        return {key: _deserialize_loss(archive, item, custom) for key, item in value.items()}
    if isinstance(value, dict):
        found = _resolve(archive, value, custom, "loss")
        if found is not None:
            return _instantiate(archive, found, value, "loss")
        if value.get("class_name") == "function":
            raise _unknown(archive, {**value, "class_name": value.get("config")}, "loss function")
        return losses_mod.deserialize(dict(value))
    raise archive.error(f"cannot read the loss {value!r} of the compile config")


_METRIC_CLASSES: dict[str, Callable[..., Any]] = {
    "Accuracy": metrics_mod.Accuracy,
    "MeanMetricWrapper": lambda fn, name: metrics_mod.MeanMetricWrapper(
        metrics_mod._FUNCTIONS[fn], name
    ),
}


def _deserialize_metric(archive: _Archive, value: Any, custom: Mapping[str, Any]) -> Any:
    if value is None or (isinstance(value, str) and value not in custom):
        return value
    if isinstance(value, str):
        found = custom[value]
        return found() if isinstance(found, type) else found
    if isinstance(value, list):
        return [_deserialize_metric(archive, item, custom) for item in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {key: _deserialize_metric(archive, item, custom) for key, item in value.items()}
    if isinstance(value, dict):
        found = _resolve(archive, value, custom, "metric")
        if found is not None:
            return _instantiate(archive, found, value, "metric")
        name = value.get("class_name")
        check_config_module(value, "metric", " Pass custom_objects to use your own class.")
        if name not in _METRIC_CLASSES:
            raise _unknown(archive, value, "metric")
        inner = value.get("config") or {}
        if not isinstance(inner, dict):
            raise archive.error(f"the config of metric {name!r} must be an object")
        return _METRIC_CLASSES[name](**inner)
    raise archive.error(f"cannot read the metric {value!r} of the compile config")


def _deserialize_optimizer(archive: _Archive, value: Any, custom: Mapping[str, Any]) -> Any:
    if isinstance(value, dict) and "class_name" in value:
        found = _resolve(archive, value, custom, "optimizer")
        if found is not None:
            _check_class(archive, found, optimizers_mod.Optimizer,
                         str(value.get("class_name")), "optimizer")
            return _instantiate(archive, found, value, "optimizer")
        return optimizers_mod.deserialize(dict(value))
    return optimizers_mod.get(value)


_COMPILE_KEYS = {
    "optimizer", "loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly",
    "steps_per_execution", "jit_compile",
}


def _compile(
    archive: _Archive, model: Any, config: Any, custom: Mapping[str, Any]
) -> None:
    if not isinstance(config, dict):
        raise archive.error(f"the 'compile_config' in {CONFIG!r} must be an object")
    unknown = sorted(set(config) - _COMPILE_KEYS)
    if unknown:
        raise archive.error(f"unknown key(s) {unknown} in the 'compile_config'")
    if config.get("weighted_metrics"):
        raise archive.error("the compile config has `weighted_metrics`, which numba_gn lacks")
    try:
        optimizer = _deserialize_optimizer(archive, config.get("optimizer", "rmsprop"), custom)
        loss = _deserialize_loss(archive, config.get("loss"), custom)
        metrics = _deserialize_metric(archive, config.get("metrics"), custom)
        model.compile(optimizer=optimizer, loss=loss, loss_weights=config.get("loss_weights"),
                      metrics=metrics)
    except (ValueError, TypeError, KeyError) as exc:
        hint = "; pass `compile=False` to load the model uncompiled"
        if isinstance(exc, ValueError) and str(exc).startswith(
            f"Cannot load the model from {archive.file}:"
        ):
            raise ValueError(f"{str(exc).rstrip('.')}{hint}.") from None
        raise archive.error(
            f"the model cannot be compiled from its 'compile_config' ({exc}){hint}"
        ) from None


# -- optimizer and RNG state ----------------------------------------------------------------------


def _checked_optimizer_state(
    archive: _Archive, model: Any, paths: list[tuple[str, Any]]
) -> dict[str, Any]:
    optimizer = model.optimizer
    specs: list[weights_io.Spec] = [("iterations", (), np.dtype(np.int64))]
    counts = {}
    for path, w in paths:
        data = np.asarray(w.data)
        n = optimizer.slot_count(w) if data.dtype.kind == "f" else 0
        counts[path] = n
        specs.extend((f"slots/{path}/{k}", data.shape, data.dtype) for k in range(n))
    values = archive.npz(OPTIMIZER, specs, required=False)
    if "iterations" not in values:
        raise archive.error(f"member {OPTIMIZER!r} lacks 'iterations'")
    iterations = int(values["iterations"])
    if iterations < 0:
        raise archive.error(f"member {OPTIMIZER!r} holds a negative step count {iterations}")
    slots = []
    for path, _ in paths:
        have = [f"slots/{path}/{k}" in values for k in range(counts[path])]
        if any(have) and not all(have):
            raise archive.error(
                f"member {OPTIMIZER!r} holds only some of the {counts[path]} slot arrays of "
                f"weight {path!r}"
            )
        slots.append(tuple(values[f"slots/{path}/{k}"] for k in range(counts[path]))
                     if all(have) and have else None)
    return {"iterations": iterations, "slots": slots}


def _checked_rng_states(archive: _Archive, model: Any) -> list[tuple[np.random.Generator, Any]]:
    """`(generator, state)` for each saved state, each tried on a scratch generator first."""
    states = archive.json(RNG_STATES, required=False)
    if states is None:
        return []
    if not isinstance(states, dict):
        raise archive.error(f"{RNG_STATES!r} must hold a JSON object")
    layers = dict(layer_paths(model))
    out = []
    for path, entry in states.items():
        layer = layers.get(path)
        if layer is None:
            raise archive.error(f"{RNG_STATES!r} names a layer {path!r} the model does not have")
        gens = _generators(layer)
        if not isinstance(entry, dict) or set(entry) - set(gens):
            raise archive.error(
                f"{RNG_STATES!r}: the states of layer {path!r} must be an object keyed by its "
                f"generators {sorted(gens)}, got {str(entry)[:200]}"
            )
        for name, state in entry.items():
            gen = gens[name]
            scratch = type(gen.bit_generator)()
            try:
                if not isinstance(state, dict) or \
                        state.get("bit_generator") != type(gen.bit_generator).__name__:
                    raise ValueError(f"not a {type(gen.bit_generator).__name__} state")
                scratch.state = state
            except (ValueError, TypeError, OverflowError, KeyError) as exc:
                raise archive.error(
                    f"{RNG_STATES!r}: bad generator state for {path}.{name} ({exc})"
                ) from None
            out.append((gen, scratch.state))
    return out
