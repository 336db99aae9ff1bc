"""Keras 3's weight layout, and its `.weights.h5` files (h5py, imported lazily).

Keras 3 saves a model's weights by walking it (its `keras.saving` code) and
storing each layer's own variables (trainable first, then non-trainable) under
`"<path>/vars/0"`, `"<path>/vars/1"`, ... (in a `.weights.h5` file: datasets of the group
`"<path>/vars"`, whose attribute `name` is the layer's name; the model's own group is
`"vars"`). A layer's `<path>` is where the walk met it:

* a `Sequential` or functional model first lists its `layers` (`InputLayer`s included
  for a functional model), as `"layers/<name>"`, where `<name>` is the snake_case class
  name, made unique in that list by `_1`, `_2`, ... (`layers/dense`, `layers/dense_1`):
  the layers' own names do not appear, so the same architecture built twice has the same
  paths;
* then every attribute of the object that holds a layer, or a list, tuple or dict of them
  (nested containers are `container`, `container_1`, ...), sorted by name with private
  names last, as `"<attribute>"` or `"<attribute>/<name>"`; a subclassed model's
  `layers` is one of them; the attributes numba_gn's own base classes set are skipped, as
  Keras skips those of its base classes;
* a layer met a second time is skipped (it was saved where it was first met).

The weights are addressed by position, never by their names (which may be automatic and
differ between two builds of one architecture).
[keras_entries][numba_gn.training._keras_layout.keras_entries] computes the walk on numba_gn
models. `.keras` files key their weights by these paths
([keras_weight_paths][numba_gn.training._keras_layout.keras_weight_paths]), and HDF5 files go
both ways: Keras's `model.load_weights` reads what
[write][numba_gn.training._keras_layout.write] writes, and
[read][numba_gn.training._keras_layout.read] reads what Keras's
`model.save_weights("x.weights.h5")` writes. Groups Keras writes for things numba_gn has no
counterpart of (`optimizer`, metrics) are ignored when read; a group for a layer the model
does not have is `unexpected`. The file is untrusted: links, external and virtual datasets
are refused, and every dataset's dtype and shape are checked against the model's weight before
any data is read.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

from numba_gn.layers.base import Layer
from numba_gn.params._registry import to_snake_case

__all__ = ["keras_entries", "keras_weight_paths", "read", "require_h5py", "write"]

# (group path of the layer's variables, the layer)
Entry = tuple[str, Layer]


def require_h5py(what: str) -> ModuleType:
    """The h5py module, or an `ImportError` saying `what` needs it and how to get it."""
    try:
        import h5py
    except ImportError:
        raise ImportError(
            f"{what} needs h5py, which is not installed (Keras 3's `.weights.h5` format is "
            "HDF5). Install it with `pip install h5py` (or `pip install numba_gn[h5]`), or "
            "use an `.npz` file name."
        ) from None
    return h5py


# -- the walk ------------------------------------------------------------------------------------


@functools.cache
def _internal_attributes(kind: str) -> frozenset[str]:
    """Attributes numba_gn's own classes set on every `kind` of object: never walked.

    `kind` is `"layer"`, `"model"` or `"sequential"`; Keras skips the attributes of its
    base classes by kind in the same way. Reference objects are made with explicit names, so
    that no automatic name (`dense_3`) is used up.
    """
    from numba_gn.models.model import Model
    from numba_gn.models.sequential import Sequential

    class _Bare(Model):
        def call(self, inputs: Any) -> Any:
            return inputs

    names = set(vars(Layer(name="_ref")))
    if kind == "model":
        names.update(vars(_Bare(name="_ref")), {"_graph"})
    elif kind == "sequential":
        names.update(vars(Sequential(name="_ref")))
    return frozenset(names)


def _name_key(name: str) -> str:
    """Keras's order: private attributes last."""
    return f"~{name}" if name.startswith("_") else name


def _children(obj: Layer) -> Iterator[tuple[str, Any]]:
    from numba_gn.models.model import Model
    from numba_gn.models.sequential import Sequential

    if isinstance(obj, Sequential) or getattr(obj, "_graph", None) is not None:
        # Keras lists a Sequential's or functional model's layers first.
        yield "layers", obj.layers
    kind = ("sequential" if isinstance(obj, Sequential)
            else "model" if isinstance(obj, Model) else "layer")
    internal = _internal_attributes(kind)
    names = {n for n in vars(obj) if n not in internal and not n.startswith("__")}
    if isinstance(obj, Model):
        names.add("layers")
    for name in sorted(names, key=_name_key):
        try:
            value = getattr(obj, name)
        except Exception:  # noqa: BLE001 - a property that fails is skipped, as Keras does
            continue
        yield name, value


def _unique(name: str, used: dict[str, int]) -> str:
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _walk(obj: Layer, path: str, visited: set[int], out: list[Entry]) -> None:
    if id(obj) in visited:
        return
    visited.add(id(obj))
    out.append((f"{path}/vars" if path else "vars", obj))
    for attr, child in _children(obj):
        child_path = f"{path}/{attr}" if path else attr
        if isinstance(child, Layer):
            _walk(child, child_path, visited, out)
        elif isinstance(child, (list, tuple, dict)):
            _walk_container(child, child_path, visited, out, set())


def _walk_container(
    container: Any, path: str, visited: set[int], out: list[Entry], containers: set[int]
) -> None:
    if id(container) in containers:
        return
    containers.add(id(container))
    used: dict[str, int] = {}
    items = list(container.values()) if isinstance(container, dict) else list(container)
    for item in items:
        if isinstance(item, Layer):
            name = _unique(to_snake_case(type(item).__name__), used)
            _walk(item, f"{path}/{name}", visited, out)
        elif isinstance(item, (list, tuple, dict)):
            name = _unique("container", used)
            _walk_container(item, f"{path}/{name}", visited, out, containers)


def keras_entries(model: Any) -> list[Entry]:
    """`("layers/dense/vars", layer)` for the model and each layer, in Keras's walk order.

    Raises:
        ValueError: The model is not built, or a weight is not reachable by the walk (held
            somewhere Keras would not look), so the file could not hold it.
    """
    if not getattr(model, "built", True):
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} is not built yet: call it on a batch or "
            "build(input_shape) before saving or loading weights."
        )
    out: list[Entry] = []
    _walk(model, "", set(), out)
    reached = {id(w) for _, layer in out for w in layer._own_weights()}
    unreached = [path for path, w in model.weight_paths() if id(w) not in reached]
    if unreached:
        raise ValueError(
            f"Weight(s) {unreached} of model {model.name!r} are not held by a layer reachable "
            "through the model's layers or attributes, so Keras's .weights.h5 layout has no "
            "place for them; use an .npz file."
        )
    return out


def keras_weight_paths(model: Any) -> list[tuple[str, Any]]:
    """`("layers/dense/vars/0", variable)` for every weight, in Keras's walk order."""
    return [
        (f"{group}/{i}", w)
        for group, layer in keras_entries(model)
        for i, w in enumerate(layer._own_weights())
    ]


# -- writing -------------------------------------------------------------------------------------


def write(h5py: ModuleType, fh: Any, entries: list[Entry]) -> None:
    """Write every entry's own weights to the open binary file `fh`, in Keras's layout."""
    arrays = []
    for group_path, layer in entries:
        values = []
        for w in layer._own_weights():
            arr = np.asarray(w.data)
            if arr.dtype.kind not in "biuf":
                raise ValueError(
                    f"Weight {w.path!r} has dtype {arr.dtype}; only real numeric weights can "
                    "be saved in a .weights.h5 file."
                )
            values.append(arr)
        arrays.append((group_path, layer.name, values))
    with h5py.File(fh, "w") as f:
        for group_path, name, values in arrays:
            group = f.require_group(group_path)
            group.attrs["name"] = name
            for i, arr in enumerate(values):
                group.create_dataset(str(i), data=arr)


# -- reading -------------------------------------------------------------------------------------


def _refuse(label: str, where: str, problem: str) -> ValueError:
    return ValueError(f"{label}, {where}: {problem}. No weight was changed.")


def _get(h5py: ModuleType, parent: Any, name: str, kind: str, label: str) -> Any:
    """`parent[name]` if it is a hard-linked `kind` ("group"/"dataset"), None if absent."""
    current = parent
    parts = name.split("/")
    for i, part in enumerate(parts):
        if part not in current:
            return None
        link = current.get(part, getlink=True)
        where = "/".join(parts[: i + 1])
        if not isinstance(link, h5py.HardLink):
            raise _refuse(label, f"{where!r}", f"not allowed ({type(link).__name__})")
        current = current[part]
        want = h5py.Dataset if (kind == "dataset" and i == len(parts) - 1) else h5py.Group
        if not isinstance(current, want):
            raise _refuse(
                label, f"{where!r}", f"corrupt (expected an HDF5 "
                f"{'dataset' if want is h5py.Dataset else 'group'}, found "
                f"{type(current).__name__})"
            )
    return current


def read(model: Any, fh: Any, label: str) -> list[tuple[Any, np.ndarray]]:
    """`(variable, array)` for every weight of `model`, from the HDF5 file `fh`.

    Every group and dataset is checked before any data is read; see the module docstring.

    Raises:
        ImportError: h5py is not installed.
        ValueError: Naming the file (`label`), the group or dataset, and what is wrong.
    """
    h5py = require_h5py(f"Loading {label}")
    entries = keras_entries(model)
    try:
        f = h5py.File(fh, "r")
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{label} is not a readable HDF5 file ({exc}). No weight was changed."
        ) from None
    with f:
        try:
            checked = _check_entries(h5py, f, entries, label)
            out = []
            for w, ds, where in checked:
                try:
                    arr = np.asarray(ds[()])
                except (OSError, ValueError, TypeError, RuntimeError) as exc:
                    raise _refuse(label, where, f"corrupt ({type(exc).__name__}: {exc})") \
                        from None
                out.append((w, arr))
        except (OSError, RuntimeError, KeyError) as exc:
            # h5py's errors on a damaged file (a truncated B-tree, a bad object header).
            raise ValueError(
                f"{label} is corrupt ({type(exc).__name__}: {exc}). No weight was changed."
            ) from None
    return out


def _check_entries(
    h5py: ModuleType, f: Any, entries: list[Entry], label: str
) -> list[tuple[Any, Any, str]]:
    """`(variable, dataset, where)` for every weight, each checked; nothing read yet."""
    checked = []
    missing = []
    consumed: set[str] = set()
    for group_path, layer in entries:
        own = layer._own_weights()
        group = _get(h5py, f, group_path, "group", label)
        if group is None:
            if own:
                missing.append(group_path)
            continue
        consumed.add(group_path)
        names = sorted(group.keys(), key=lambda k: (len(k), k))
        expected = [str(i) for i in range(len(own))]
        if names != expected:
            raise _refuse(
                label, f"group {group_path!r}",
                f"wrong number of weights: the file has {len(names)} ({names[:10]}), layer "
                f"{layer.name!r} has {len(own)} ({[w.name for w in own]})"
            )
        for i, w in enumerate(own):
            where = f"dataset {group_path}/{i!s}"
            ds = _get(h5py, group, str(i), "dataset", label)
            if ds.external:
                raise _refuse(label, where, "not allowed (external storage)")
            if ds.is_virtual:
                raise _refuse(label, where, "not allowed (a virtual dataset)")
            want = np.asarray(w.data)
            dtype = ds.dtype
            if dtype.kind != want.dtype.kind or dtype.fields is not None or dtype.hasobject:
                raise _refuse(
                    label, where, f"wrong dtype {dtype}; the model's weight {w.path!r} is "
                    f"{want.dtype}"
                )
            if tuple(ds.shape or ()) != want.shape:
                raise _refuse(
                    label, where, f"wrong shape {tuple(ds.shape or ())}; the model's weight "
                    f"{w.path!r} has shape {want.shape}"
                )
            checked.append((w, ds, where))
    if missing:
        raise ValueError(
            f"{label} does not match the model: missing the weights of {missing[:10]} "
            "(Keras's weight paths). No weight was changed."
        )
    roots = {path.split("/", 1)[0] for path, _ in entries if "/" in path}
    unexpected = []

    def visit(name: str, obj: Any) -> None:
        if (isinstance(obj, h5py.Group) and (name == "vars" or name.endswith("/vars")) and len(obj)
                and name not in consumed and name.split("/", 1)[0] in roots):
            unexpected.append(name)

    f.visititems(visit)
    if unexpected:
        raise ValueError(
            f"{label} does not match the model: unexpected weights at {sorted(unexpected)[:10]}"
            " (layers the model does not have). No weight was changed."
        )
    return checked
