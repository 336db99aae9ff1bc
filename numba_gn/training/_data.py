"""The arrays of one argument of `fit`/`evaluate`/`predict` (`x` or `y`), batched.

An argument is one array, or (for a model with several inputs or outputs) a list/tuple of
arrays or a dict of them. [Data][numba_gn.training._data.Data] keeps the arrays flat, checked
(numeric, a sample axis, as many samples in each), and rebuilds the argument's structure for
each batch, so that every input of a sample stays with its other inputs and its targets.

Which structure is expected comes from the model (`model._data_structure("x")`): one array,
a list with one array per name, or a dict keyed by the names. A model that cannot say (a
subclassed one) gets what the data is: a dict, a list/tuple of arrays, else one array.

Sample weights ([sample_weights][numba_gn.training._data.sample_weights] from `sample_weight`,
[class_weights][numba_gn.training._data.class_weights] from `class_weight`, with Keras's
rules) are a `Data` in the structure of the targets, so that a batch of them is taken with
the same indices as the batch of `x` and `y`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from numba_gn import _checks
from numba_gn.autograd import Tensor

__all__ = ["Data", "class_weights", "data_array", "sample_weights", "to_data"]

#: `("single" | "list" | "dict", names)`: what a model takes or returns.
Structure = tuple[str, Sequence[str]]


def _as_array(x: Any) -> np.ndarray:
    return np.asarray(x.data if isinstance(x, Tensor) else x)


def data_array(value: Any, name: str) -> np.ndarray:
    """`value` as a numeric ndarray with a sample axis; ValueError/TypeError naming it."""
    if value is None:
        raise TypeError(f"Argument `{name}` is required; received None.")
    try:
        arr = _as_array(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise ValueError(f"Argument `{name}` could not be converted to an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"Argument `{name}` must hold numbers, got an array of dtype {arr.dtype}."
        )
    if arr.ndim == 0:
        raise ValueError(
            f"Argument `{name}` must have a sample axis (rank >= 1), got a scalar: {arr!r}."
        )
    return arr


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, Tensor))


class Data:
    """One argument's arrays, flat, with the structure to rebuild a batch of them.

    Attributes:
        arrays: The checked arrays, in flat order (a dict's by sorted key).
        kind: `"single"`, `"list"` or `"dict"`.
        keys: The dict keys (`"dict"`), in flat order.
        labels: How messages name each array (`"x"`, `"x[1]"`, `"x['a']"`).
        container: `list` or `tuple` for a `"list"` argument.
    """

    __slots__ = ("arrays", "kind", "keys", "labels", "container")

    def __init__(self, arrays: list[np.ndarray], kind: str, keys: Sequence[str] = (),
                 labels: Sequence[str] = (), container: type = list) -> None:
        self.arrays = arrays
        self.kind = kind
        self.keys = list(keys)
        self.labels = list(labels)
        self.container = container

    def __len__(self) -> int:
        return len(self.arrays[0])

    def take(self, index: Any) -> Any:
        """The samples at `index` (a slice or an index array), in the argument's structure."""
        if self.kind == "single":
            return self.arrays[0][index]
        return self.pack([a[index] for a in self.arrays])

    def pack(self, parts: list[Any]) -> Any:
        """`parts` (one per array) in the argument's structure."""
        if self.kind == "single":
            return parts[0]
        if self.kind == "dict":
            return dict(zip(self.keys, parts, strict=True))
        return self.container(parts)

    def subset(self, index: Any) -> Data:
        """A `Data` of the samples at `index`."""
        return Data([a[index] for a in self.arrays], self.kind, self.keys, self.labels,
                    self.container)


def to_data(
    value: Any,
    name: str,
    what: str,
    structure: Structure | None,
    prepare: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> Data:
    """`value` checked against `structure` (None: taken as it is) into a `Data`.

    Args:
        value: The argument.
        name: `"x"` or `"y"`.
        what: The method (`"fit"`), for messages.
        structure: What the model takes (`"x"`) or returns (`"y"`), or None.
        prepare: Applied to each array with its flat index (casting inputs).

    Raises:
        ValueError, TypeError: Naming the argument and, within it, the array at fault.
    """
    kind, names = structure if structure is not None else (None, ())
    container: type = list
    if kind is None:
        if isinstance(value, Mapping):
            kind = "dict"
            names = sorted(value)
        elif isinstance(value, (list, tuple)) and value and all(_is_array(v) for v in value):
            kind = "list"
            names = [f"{name}[{i}]" for i in range(len(value))]
        else:
            kind = "single"
    if kind == "single":
        if isinstance(value, Mapping) and len(names) == 1 and set(value) == set(names):
            value = value[names[0]]
        elif isinstance(value, (list, tuple)) and len(value) == 1 and _is_array(value[0]):
            value = value[0]
        leaves, labels, keys = [value], [name], []
    elif kind == "list":
        if isinstance(value, Mapping):
            missing = [n for n in names if n not in value]
            if missing:
                raise ValueError(
                    f"Argument `{name}` of {what}() has no entry for {missing}; a dict `{name}` "
                    f"must be keyed by {list(names)}."
                )
            leaves = [value[n] for n in names]
        elif isinstance(value, (list, tuple)) and len(value) == len(names):
            leaves = list(value)
            container = type(value) if type(value) in (list, tuple) else list
        else:
            got = (f"{type(value).__name__} of {len(value)}"
                   if isinstance(value, (list, tuple)) else type(value).__name__)
            raise ValueError(
                f"Argument `{name}` of {what}() must be a list of {len(names)} arrays (one per "
                f"model {'input' if name == 'x' else 'output'}: {list(names)}) or a dict keyed "
                f"by those names; got a {got}."
            )
        labels, keys = [f"{name}[{i}]" for i in range(len(names))], []
    else:  # dict
        if not isinstance(value, Mapping):
            raise ValueError(
                f"Argument `{name}` of {what}() must be a dict keyed by {sorted(names)}; got a "
                f"{type(value).__name__}."
            )
        keys = sorted(names, key=str)
        missing = [k for k in keys if k not in value]
        extra = [k for k in value if k not in keys]
        if missing or extra:
            raise ValueError(
                f"The keys of argument `{name}` of {what}() must be {keys}"
                + (f"; missing: {missing}" if missing else "")
                + (f"; unexpected: {extra}" if extra else "")
                + "."
            )
        leaves = [value[k] for k in keys]
        labels = [f"{name}[{k!r}]" for k in keys]
    arrays = [data_array(v, label) for v, label in zip(leaves, labels, strict=True)]
    if prepare is not None:
        arrays = [prepare(a, i) for i, a in enumerate(arrays)]
    if len({len(a) for a in arrays}) > 1:
        counts = ", ".join(f"{label}: {len(a)}" for label, a in zip(labels, arrays, strict=True))
        raise ValueError(
            f"All arrays of argument `{name}` of {what}() must have the same number of "
            f"samples, got {counts}."
        )
    return Data(arrays, kind, keys, labels, container)


# -- sample weights -------------------------------------------------------------------------------


def _weight_array(value: Any, label: str, what: str, target: np.ndarray) -> np.ndarray:
    """One output's sample weights: numeric, finite, one per sample (or per sample and step)."""
    w = data_array(value, label)
    if len(w) != len(target):
        raise ValueError(
            f"Argument `{label}` of {what}() has {len(w)} samples, but `x` and `y` have "
            f"{len(target)}."
        )
    # (samples,), or the leading axes of the per-sample losses, e.g. (samples, steps) for a
    # sequence output; trailing axes of 1 are squeezed as Keras does.
    shape = w.shape[1:]
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    if shape and shape != target.shape[1:1 + len(shape)]:
        raise ValueError(
            f"Argument `{label}` of {what}() has shape {w.shape}: expected one weight per "
            f"sample, shape ({len(target)},), or per sample and step of targets of shape "
            f"{target.shape}."
        )
    if not np.all(np.isfinite(w)):
        raise ValueError(f"Argument `{label}` of {what}() holds NaN or infinite weights.")
    return w


def sample_weights(value: Any, y: Data, what: str, structure: Structure | None) -> Data | None:
    """`sample_weight` checked against the targets `y`, in their structure (None: none).

    With one output: one array. With several (Keras's rules): one array per output, as a
    list or dict like `y`, or one array of shape `(samples,)` or `(samples, 1)` used for
    every output.

    Raises:
        ValueError, TypeError: Naming `sample_weight` (and, within it, the array at fault).
    """
    if value is None:
        return None
    if y.kind == "single":
        if isinstance(value, (list, tuple)) and len(value) == 1 and _is_array(value[0]):
            value = value[0]
        w = _weight_array(value, "sample_weight", what, y.arrays[0])
        return Data([w], "single", (), ["sample_weight"])
    per_output = isinstance(value, Mapping) or (
        isinstance(value, (list, tuple)) and bool(value) and all(_is_array(v) for v in value)
    )
    if not per_output:
        w = data_array(value, "sample_weight")
        if not (w.ndim == 1 or (w.ndim == 2 and w.shape[1] == 1)):
            raise ValueError(
                "For a model with multiple outputs, when providing a single `sample_weight` "
                "array, it should only have one scalar score per sample (i.e. shape "
                f"`(num_samples,)`), got shape {w.shape}. If you want to use non-scalar sample "
                "weights, pass a `sample_weight` argument with one array per model output."
            )
        arrays = [_weight_array(w, "sample_weight", what, t) for t in y.arrays]
        return Data(arrays, y.kind, y.keys, ["sample_weight"] * len(arrays), y.container)
    if structure is None or structure[0] != y.kind:
        structure = (y.kind, y.keys if y.kind == "dict" else y.labels)
    data = to_data(value, "sample_weight", what, structure)
    if len(data.arrays) != len(y.arrays):
        raise ValueError(
            f"You should provide one `sample_weight` array per output in `y`: got "
            f"{len(data.arrays)} for {len(y.arrays)} outputs."
        )
    arrays = [_weight_array(w, label, what, t)
              for w, label, t in zip(data.arrays, data.labels, y.arrays, strict=True)]
    return Data(arrays, y.kind, y.keys, data.labels, y.container)


def class_weights(class_weight: Any, y: Data, what: str) -> Data | None:
    """Sample weights from `class_weight` (a dict class index -> weight), Keras's rules.

    Only for one output. Each sample weighs `class_weight.get(label, 1.0)`, its label being
    the target rounded to an int (targets of shape `(samples,)` or `(samples, 1)`) or the
    index of its largest entry (one-hot targets, `(samples, classes)`).

    Raises:
        TypeError: Not a dict, or a key that is not an int or a weight that is not a number.
        ValueError: Several outputs, targets of another rank, or a weight that is not finite.
    """
    if class_weight is None:
        return None
    if not isinstance(class_weight, Mapping):
        raise TypeError(
            "Argument `class_weight` must be a dict mapping class indices (ints) to weights, "
            f"got {_checks.show(class_weight)} (of type {type(class_weight).__name__})."
        )
    table: dict[int, float] = {}
    for key, weight in class_weight.items():
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, numbers.Integral):
            raise TypeError(
                f"The keys of argument `class_weight` must be class indices (ints), got "
                f"{_checks.show(key)} (of type {type(key).__name__})."
            )
        table[int(key)] = _checks.real(weight, f"class_weight[{int(key)}]")
    if y.kind != "single":
        raise ValueError("`class_weight` is only supported for Models with a single output.")
    labels = y.arrays[0]
    if labels.ndim == 2:
        labels = labels[:, 0] if labels.shape[1] == 1 else np.argmax(labels, axis=-1)
    elif labels.ndim != 1:
        raise ValueError(
            "Argument `class_weight` needs targets of shape (samples,), (samples, 1) or "
            f"(samples, classes); got `y` of shape {y.arrays[0].shape}."
        )
    labels = np.round(labels).astype(np.int64)
    weights = np.ones(len(labels), dtype=np.float32)  # Keras's floatx
    for cls, weight in table.items():
        weights[labels == cls] = weight
    return Data([weights], "single", (), ["class_weight"])
