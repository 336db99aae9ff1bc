"""Weights on disk as ``.npz``: one array per weight, keyed ``"layer_name/weight_name"``.

Reading never unpickles (``allow_pickle=False``), and a file is checked completely — names,
numeric dtypes, shapes — before any weight is assigned, so a bad file leaves the model as it
was. Together with ``model.get_config()`` (JSON-able) this rebuilds a model exactly::

    clone = Sequential.from_config(json.loads(json.dumps(model.get_config())))
    clone.load_weights("weights.npz")
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from typing import Any

import numpy as np

__all__ = ["load_weights", "save_weights"]


def _paths(model: Any) -> list[tuple[str, Any]]:
    if not getattr(model, "built", True):
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} is not built yet: call it on a batch or "
            "build(input_shape) before saving or loading weights."
        )
    paths = model.weight_paths()
    names = [p for p, _ in paths]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"Weight names must be unique to be saved; duplicated: {dup}.")
    return paths


def save_weights(model: Any, path: str | os.PathLike[str]) -> None:
    """Write the model's weights to ``path`` (exactly that name; written atomically)."""
    arrays = {name: np.asarray(w.data) for name, w in _paths(model)}
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_weights(model: Any, path: str | os.PathLike[str]) -> None:
    """Assign the weights stored at ``path`` to the model.

    Raises ``ValueError``, changing nothing, when names, dtypes or shapes do not match.
    """
    paths = _paths(model)
    with open(os.fspath(path), "rb") as fh:  # ours to close, whatever np.load does
        try:
            values = _read_checked(np.load(fh, allow_pickle=False), paths, path)
        except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            # damaged/empty/truncated files: name the file instead of a bare zip error
            raise ValueError(
                f"{path!s} is not a readable .npz weights file ({type(exc).__name__}: {exc}). "
                "No weight was changed."
            ) from None
        except ValueError as exc:
            if str(path) in str(exc):
                raise
            # np.load's own refusals: a pickle, text, an .npy of objects
            raise ValueError(
                f"{path!s} is not a numeric .npz weights file: {exc}. No weight was changed."
            ) from None
    for (_, w), arr in zip(paths, values, strict=True):
        w.assign(arr)


def _read_checked(archive: Any, paths: list[tuple[str, Any]], path: Any) -> list[np.ndarray]:
    """Every weight's array from ``archive``, after checking names, dtypes and shapes."""
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!s} holds a single array, not an .npz archive of named weights.")
    with archive:
        expected = [name for name, _ in paths]
        stored = list(archive.files)
        missing = [n for n in expected if n not in stored]
        unexpected = [n for n in stored if n not in expected]
        if missing or unexpected:
            raise ValueError(
                f"Weights file {path!s} does not match the model: missing {missing}, "
                f"unexpected {unexpected}. No weight was changed."
            )
        values = []
        for name, w in paths:
            try:
                arr = archive[name]
            except ValueError as exc:  # object arrays need pickle: refused
                raise ValueError(
                    f"Weight {name!r} in {path!s} cannot be read without pickle ({exc}); "
                    "only numeric arrays are accepted. No weight was changed."
                ) from None
            if arr.dtype.kind not in "biuf":
                raise ValueError(
                    f"Weight {name!r} in {path!s} has non-numeric dtype {arr.dtype}. "
                    "No weight was changed."
                )
            if arr.shape != w.shape:
                raise ValueError(
                    f"Weight {name!r} has shape {w.shape} in the model but {arr.shape} in "
                    f"{path!s}. No weight was changed."
                )
            values.append(arr)
    return values
