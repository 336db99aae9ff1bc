"""Weights on disk: `.npz` (always) and Keras 3's `.weights.h5` (with h5py installed).

`save_weights` picks the format from the name: `*.weights.h5` is Keras 3's HDF5 weights
file (what `keras_model.save_weights("x.weights.h5")` writes, and reads back; this needs
h5py, imported only then, see `numba_gn.training._keras_layout`); any other `.h5`/`.hdf5`/
`.keras` name is refused (`model.save` writes `.keras` files); every other name gets an
`.npz` archive. `load_weights` goes by the content: an HDF5 file, an `.npz` archive, or a
`.keras` model archive (its weights only).

The `.npz` file is a plain zip archive with one NPY member per weight, keyed by the weight's
path (`"dense/kernel.npy"`), as `np.savez` writes it, so ``np.load(path,
allow_pickle=False)` reads it too. Together with `model.get_config()`` (JSON-able) this
rebuilds a model exactly::

    clone = Sequential.from_config(json.loads(json.dumps(model.get_config())))
    clone.load_weights("weights.npz")

Loading treats the file as untrusted:

* nothing is ever unpickled, and nothing in the file is imported or evaluated;
* every member's NPY header (dtype, shape) and length are checked against the model's weight
  *before* its data is read, so a header claiming petabytes allocates nothing and a
  decompression bomb is never inflated past the size the model's weight needs;
* every weight is read and checked before the first is assigned, so a file that fails leaves
  the model's weights as they were.

Every problem with the file's contents is a `ValueError` naming the file and, where there is
one, the member, with one of these words saying what is wrong: `not an .npz`, `duplicate`,
`missing`/`unexpected` (names that do not match the model), `not NPY data`,
`truncated`, `oversized`, `corrupt`, `would need pickle` (object arrays),
`wrong dtype`, `wrong shape`. A path that does not exist raises `FileNotFoundError` (and
an unreadable one `PermissionError`), as `open` does; a directory raises `ValueError`.

Saving is atomic (`numba_gn._atomic`): the file is written to a temporary file in the
destination's folder and moved over the destination only when complete, so a failed (or
killed) save leaves any existing file untouched and no partial file behind.
"""

from __future__ import annotations

import io
import math
import os
import stat
import zipfile
import zlib
from collections.abc import Sequence
from typing import IO, Any, BinaryIO

import numpy as np

from numba_gn._atomic import atomic_write

try:
    from lzma import LZMAError
except ImportError:  # Python built without lzma: zipfile then cannot open LZMA members at all
    LZMAError = zipfile.BadZipFile  # type: ignore[assignment,misc]

__all__ = [
    "MEMBER_ERRORS",
    "Spec",
    "assign_all",
    "check_regular_file",
    "load_weights",
    "numeric_arrays",
    "open_zip",
    "read_npz",
    "save_weights",
    "specs_of",
    "write_npz",
]

_NPY_MAGIC = b"\x93NUMPY"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# numpy refuses to parse longer headers by default; checking first means we never read one.
_MAX_HEADER_LEN = 10_000
# What reading a damaged zip member can raise (bad CRC, broken deflate/bz2/lzma stream, a
# local header that disagrees with the central directory, encryption, unknown compression).
MEMBER_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    LZMAError,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
)
# What opening a damaged zip archive can raise.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError)
_KINDS = {
    "b": "boolean",
    "i": "integer",
    "u": "unsigned integer",
    "f": "floating-point",
    "c": "complex",
    "U": "non-numeric string",
    "S": "non-numeric bytes",
    "V": "non-numeric structured/void",
    "M": "non-numeric datetime",
    "m": "non-numeric timedelta",
    "O": "object",
}
# The members of a .keras archive that hold weights (ours; Keras's own with h5py).
_KERAS_WEIGHTS_NPZ = "model.weights.npz"
_KERAS_WEIGHTS_H5 = "model.weights.h5"

#: An expected array: its name in the archive, its shape and its dtype.
Spec = tuple[str, tuple[int, ...], np.dtype]


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


def _file_name(path: Any) -> str:
    """`path` as a `str` file name, or a `TypeError` naming the argument."""
    try:
        name = os.fspath(path)
    except TypeError:
        raise TypeError(
            f"`path` must be a str or os.PathLike, got {type(path).__name__}: {path!r}."
        ) from None
    return os.fsdecode(name)


def _short(names: Sequence[str], limit: int = 10) -> str:
    """A list for a message; a file can hold millions of names, a message should not."""
    shown = repr(list(names[:limit]))
    return shown if len(names) <= limit else f"{shown[:-1]}, ... ({len(names) - limit} more)]"


def _human(n: int) -> str:
    """`7.11 PiB`: sizes in messages."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.2f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    raise AssertionError("unreachable")


def numeric_arrays(named: Sequence[tuple[str, Any]], what: str = "Weight") -> list[
    tuple[str, np.ndarray]
]:
    """`(name, array)` for each `(name, variable)`; a non-numeric one is a `ValueError`."""
    arrays = []
    for name, w in named:
        arr = np.asarray(w.data if hasattr(w, "data") else w)
        if arr.dtype.kind not in "biufc" or arr.dtype.hasobject:
            raise ValueError(
                f"{what} {name!r} has dtype {arr.dtype}; only numeric arrays can be saved."
            )
        arrays.append((name, arr))
    return arrays


# -- saving ----------------------------------------------------------------------------------


def _save_format(file: str) -> str:
    """`"h5"` for Keras 3's `.weights.h5` names, else `"npz"`; other HDF5 names refused."""
    if file.endswith(".weights.h5"):
        return "h5"
    if file.endswith((".h5", ".hdf5")):
        # Keras 2's layout lives under these names, and Keras 3 refuses to write it: writing
        # Keras 3's layout (or an .npz) under such a name would mislead whoever reads it.
        raise ValueError(
            f"Cannot save weights to {file!s}: HDF5 weights are written in Keras 3's format, "
            "whose file names end in `.weights.h5`; use such a name, or any other (e.g. "
            "`.npz`) for an .npz archive."
        )
    if file.endswith(".keras"):
        raise ValueError(
            f"Cannot save weights to {file!s}: a `.keras` file holds a whole model; use "
            "`model.save(path)` for it, or a `.weights.h5` or `.npz` name for the weights."
        )
    return "npz"


def save_weights(model: Any, path: str | os.PathLike[str]) -> None:
    """Write the model's weights to `path` (exactly that name), atomically.

    A name ending in `.weights.h5` gets Keras 3's HDF5 weights file (needs h5py), any other
    name an `.npz` archive (see the module docstring). The file is written to a temporary
    file next to `path` and renamed over it only once complete: if anything fails, an
    existing file at `path` is left as it was and the temporary file is removed.

    Raises:
        ValueError: The model is not built, has duplicate weight paths or a non-numeric weight,
            `path` is a directory, or `path` is an HDF5 or `.keras` name other than
            `*.weights.h5`.
        ImportError: `path` ends in `.weights.h5` and h5py is not installed.
        TypeError: `path` is not a str or path-like.
        OSError: From the file system (missing folder, no permission, disk full).
    """
    file = _file_name(path)
    fmt = _save_format(file)
    # Everything that can fail on the model's side happens before a file is created.
    if fmt == "h5":
        from numba_gn.training import _keras_layout

        h5py = _keras_layout.require_h5py(f"Saving weights to {file!s}")
        entries = _keras_layout.keras_entries(model)
        if os.path.isdir(file):
            raise ValueError(f"Cannot save weights to {file!s}: it is a directory.")
        atomic_write(file, lambda fh: _keras_layout.write(h5py, fh, entries))
        return
    arrays = numeric_arrays(_paths(model))
    if os.path.isdir(file):
        raise ValueError(f"Cannot save weights to {file!s}: it is a directory.")
    atomic_write(file, lambda fh: write_npz(fh, arrays))


def write_npz(fh: IO[bytes], arrays: Sequence[tuple[str, np.ndarray]]) -> None:
    """The `np.savez` layout, written member by member without pickle, uncompressed."""
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays:
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


# -- loading ---------------------------------------------------------------------------------


def load_weights(model: Any, path: str | os.PathLike[str]) -> None:
    """Assign the weights stored at `path` to the model, all or nothing.

    `path` is an `.npz` archive written by `save_weights`, a Keras 3
    `.weights.h5` file (needs h5py), or a `.keras` model archive (its weights). Every
    array is checked (dtype, shape, length) and read before any weight is assigned; nothing is
    unpickled. Float arrays of another precision are cast to the weight's dtype; big-endian
    and Fortran-ordered `.npz` members are accepted.

    Raises:
        ValueError: The file does not hold weights matching the model (the message names the
            file, the member and the problem), or `path` is a directory. No weight is
            changed.
        ImportError: The file is HDF5 and h5py is not installed.
        FileNotFoundError: `path` does not exist.
        TypeError: `path` is not a str or path-like.
    """
    paths = _paths(model)
    file = _file_name(path)
    check_regular_file(file, "an .npz or .weights.h5 weights file")
    with open(file, "rb") as fh:
        head = fh.read(len(_HDF5_SIGNATURE))
        fh.seek(0)
        if head == _HDF5_SIGNATURE:
            from numba_gn.training import _keras_layout

            pairs = _keras_layout.read(model, fh, f"Weights file {file!s}")
        elif file.endswith((".h5", ".hdf5")):
            raise ValueError(
                f"Weights file {file!s} is not an HDF5 file (it starts with {head!r}, not the "
                "HDF5 signature): truncated or not a .weights.h5 file. No weight was changed."
            )
        else:
            pairs = _read_npz_or_keras(model, fh, file, paths, head)
    assign_all(pairs)


def assign_all(pairs: Sequence[tuple[Any, np.ndarray]]) -> None:
    """Assign each checked array to its variable; on an interruption put every one back."""
    variables = [w for w, _ in pairs]
    # The arrays were checked against these very variables, so assign cannot refuse them; the
    # snapshot keeps "all or nothing" true even if it is interrupted part way.
    previous = [np.array(w.data, copy=True) for w in variables]
    try:
        for w, arr in pairs:
            w.assign(arr)
    except BaseException:
        for w, old in zip(variables, previous, strict=True):
            np.copyto(w.data, old)
        raise


def check_regular_file(file: str, what: str) -> None:
    """`FileNotFoundError` for a missing file (as `open`), `ValueError` for a non-file."""
    mode = os.stat(file).st_mode  # FileNotFoundError for a missing file, as open() gives
    if stat.S_ISDIR(mode):
        raise ValueError(f"{file!s} is a directory, not {what}. No weight was changed.")
    if not stat.S_ISREG(mode):
        # A FIFO or device would block or never end: only regular files are read.
        raise ValueError(
            f"{file!s} is not a regular file, so not {what}. No weight was changed."
        )


def _read_npz_or_keras(
    model: Any, fh: BinaryIO, file: str, paths: list[tuple[str, Any]], head: bytes
) -> list[tuple[Any, np.ndarray]]:
    """The weights of an `.npz` archive, or of the weights member of a `.keras` archive."""
    if head[: len(_NPY_MAGIC)] == _NPY_MAGIC:
        raise ValueError(
            f"{file!s} holds a single array (.npy), not an .npz archive of named weights. "
            "No weight was changed."
        )
    label = f"Weights file {file!s}"
    with open_zip(fh, file, "an .npz weights file") as archive:
        names = set(archive.namelist())
        if "config.json" in names and _KERAS_WEIGHTS_NPZ in names:
            # A .keras model archive: its weights member is an .npz keyed by Keras's paths.
            from numba_gn.training import _keras_layout

            keras_paths = _keras_layout.keras_weight_paths(model)
            inner_label = f"{label} (member {_KERAS_WEIGHTS_NPZ!r})"
            with archive.open(_KERAS_WEIGHTS_NPZ) as member, open_zip(
                member, f"{file!s} (member {_KERAS_WEIGHTS_NPZ!r})", "an .npz weights archive"
            ) as inner:
                values = read_npz(inner, inner_label, specs_of(keras_paths))
            return [(w, values[name]) for name, w in keras_paths]
        elif "config.json" in names and _KERAS_WEIGHTS_H5 in names:
            # A .keras archive written by Keras: HDF5 weights in Keras's layout.
            from numba_gn.training import _keras_layout

            with archive.open(_KERAS_WEIGHTS_H5) as member:
                return _keras_layout.read(model, member, f"{label} (member {_KERAS_WEIGHTS_H5!r})")
        else:
            values = read_npz(archive, label, specs_of(paths))
    return [(w, values[name]) for name, w in paths]


def specs_of(paths: Sequence[tuple[str, Any]]) -> list[Spec]:
    """`(name, shape, dtype)` of each `(name, variable)`: what `read_npz` expects."""
    out = []
    for name, w in paths:
        data = np.asarray(w.data)
        out.append((name, tuple(data.shape), data.dtype))
    return out


_END_RECORD = b"PK\x05\x06"
_END_RECORD_SIZE = 22


def _has_end_record_at_end(fh: IO[bytes]) -> bool:
    """Whether the file ends with a zip end-of-archive record (and its comment).

    zipfile looks for that record anywhere in the last 64 KiB: in a truncated archive it may
    find the record of a *nested* zip (a `.keras` file holds `.npz` archives) and read
    that one's members as the file's. A complete archive ends exactly where its record ends.
    """
    size = fh.seek(0, os.SEEK_END)
    tail_len = min(size, _END_RECORD_SIZE + 0xFFFF)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    fh.seek(0)
    pos = tail.rfind(_END_RECORD)
    while pos >= 0:
        if pos + _END_RECORD_SIZE <= len(tail):
            comment = int.from_bytes(tail[pos + 20: pos + 22], "little")
            if pos + _END_RECORD_SIZE + comment == len(tail):
                return True
        pos = tail.rfind(_END_RECORD, 0, pos)
    return False


def open_zip(fh: IO[bytes], file: str, what: str) -> zipfile.ZipFile:
    """`fh` as a zip archive, or a `ValueError` saying the file is not `what`."""
    try:
        if not _has_end_record_at_end(fh):
            raise zipfile.BadZipFile(
                "no end-of-archive record at the end of the file: truncated?"
            )
        return zipfile.ZipFile(fh)
    except _ARCHIVE_ERRORS as exc:
        raise ValueError(
            f"{file!s} is not {what} (not a readable zip archive: {exc}). "
            "No weight was changed."
        ) from None


def read_npz(
    archive: zipfile.ZipFile, label: str, specs: Sequence[Spec], required: bool = True
) -> dict[str, np.ndarray]:
    """The arrays named in `specs` from an `.npz` archive, after checking all of them.

    Every member's NPY header (dtype kind, shape) and length are checked against its spec
    before any data is read; a member no spec names is `unexpected`. With `required`
    false, members may be missing (they are then absent from the result).

    Args:
        archive: The open archive.
        label: Names the file in messages (`"Weights file w.npz"`).
        specs: `(name, shape, dtype)` of each array (the name without `.npy`).
        required: Whether every spec must have its member.

    Raises:
        ValueError: Naming the file, the member and what is wrong.
    """
    members = _members(archive, label, [name for name, _, _ in specs], required)
    present = [spec for spec in specs if spec[0] in members]
    # Headers of all members first: a bad last member is found before any data is read.
    layouts = [
        _check_header(archive, members[name], label, shape, dtype)
        for name, shape, dtype in present
    ]
    return {
        name: _read_data(archive, members[name], label, layout)
        for (name, _, _), layout in zip(present, layouts, strict=True)
    }


def _members(
    archive: zipfile.ZipFile, label: str, expected: list[str], required: bool = True
) -> dict[str, Any]:
    """`{name: ZipInfo}`, after checking the names are exactly the expected ones."""
    members: dict[str, zipfile.ZipInfo] = {}
    duplicates = []
    for info in archive.infolist():
        # np.savez stores "name" as "name.npy"; np.load accepts either spelling.
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if key in members:
            duplicates.append(info.filename)
        else:
            members[key] = info
    if duplicates:
        # zipfile would silently pick one of them: which weight gets loaded would be a guess.
        raise ValueError(
            f"{label} has duplicate member(s) {_short(duplicates)}. No weight was changed."
        )
    wanted = set(expected)
    missing = [n for n in expected if n not in members] if required else []
    unexpected = [n for n in members if n not in wanted]
    if missing or unexpected:
        raise ValueError(
            f"{label} does not match the model: missing {_short(missing)}, "
            f"unexpected {_short(unexpected)}. No weight was changed."
        )
    return members


def _refuse(label: str, info: zipfile.ZipInfo, problem: str) -> ValueError:
    return ValueError(f"{label}, member {info.filename!r}: {problem}. No weight was changed.")


def _check_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, file: str, want_shape: tuple[int, ...],
    want: np.dtype,
) -> tuple[int, tuple[int, ...], np.dtype]:
    """Check one member's NPY header and length against the spec, reading no array data.

    Returns the header's length in bytes, the shape and the dtype.
    """
    size = info.file_size  # uncompressed length, from the central directory
    try:
        with archive.open(info) as member:
            magic = member.read(8)
            if not magic:
                raise _refuse(file, info, "not NPY data (the member is empty)")
            if magic[:6] != _NPY_MAGIC[: len(magic[:6])]:
                raise _refuse(file, info, f"not NPY data (starts with {magic[:6]!r})")
            if len(magic) < 8:
                raise _refuse(file, info, "truncated (the member ends inside the NPY magic)")
            version = (magic[6], magic[7])
            if version == (1, 0):
                len_bytes, parse = 2, np.lib.format.read_array_header_1_0
            elif version == (2, 0):
                len_bytes, parse = 4, np.lib.format.read_array_header_2_0
            else:
                # 3.0 only adds UTF-8 field names of structured dtypes, never a weight's.
                major, minor = version
                raise _refuse(file, info, f"not NPY data (unsupported version {major}.{minor})")
            length_field = member.read(len_bytes)
            if len(length_field) < len_bytes:
                raise _refuse(file, info, "truncated (the member ends inside the NPY header)")
            header_len = int.from_bytes(length_field, "little")
            if header_len > _MAX_HEADER_LEN:
                raise _refuse(
                    file, info, f"not NPY data (a header of {header_len} bytes is implausible)"
                )
            offset = 8 + len_bytes + header_len
            if offset > size:
                raise _refuse(file, info, "truncated (the member ends inside the NPY header)")
            header = member.read(header_len)
            if len(header) < header_len:
                raise _refuse(file, info, "truncated (the member ends inside the NPY header)")
    except MEMBER_ERRORS as exc:
        raise _refuse(file, info, f"corrupt ({type(exc).__name__}: {exc})") from None
    try:
        # numpy parses the header dict with ast.literal_eval: no code runs.
        shape, _fortran_order, dtype = parse(io.BytesIO(length_field + header))
    except (ValueError, TypeError, SyntaxError) as exc:
        raise _refuse(file, info, f"not NPY data (malformed header: {exc})") from None

    if any(d < 0 for d in shape):
        raise _refuse(file, info, f"not NPY data (negative dimension in shape {shape})")
    if dtype.hasobject:
        raise _refuse(
            file, info, f"would need pickle to read (dtype {dtype} holds Python objects); "
            "only numeric arrays are read"
        )
    if dtype.kind != want.kind or dtype.fields is not None or dtype.subdtype is not None:
        raise _refuse(
            file, info, f"wrong dtype {dtype} ({_KINDS.get(dtype.kind, dtype.kind)}); the "
            f"model's weight is {want} ({_KINDS.get(want.kind, want.kind)})"
        )
    # Python ints: a header claiming (10**15,) costs nothing to check.
    data_len = math.prod(shape) * dtype.itemsize
    if size < offset + data_len:
        raise _refuse(
            file, info, f"truncated (the header claims shape {shape} of {dtype}, "
            f"{_human(data_len)}, but the member holds {_human(size - offset)} of data)"
        )
    if size > offset + data_len:
        # Also the decompression-bomb guard: nothing past what the header accounts for is read.
        raise _refuse(
            file, info, f"oversized (the member is {_human(size)}, but its header and data "
            f"take {_human(offset + data_len)})"
        )
    if tuple(shape) != tuple(want_shape):
        raise _refuse(
            file, info, f"wrong shape {tuple(shape)}; the model's weight has shape "
            f"{tuple(want_shape)}"
        )
    return offset, tuple(shape), dtype


def _read_data(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    file: str,
    layout: tuple[int, tuple[int, ...], np.dtype],
) -> np.ndarray:
    """The array of a member whose header `_check_header` accepted."""
    _, shape, dtype = layout
    try:
        with archive.open(info) as member:
            arr = np.lib.format.read_array(member, allow_pickle=False)
            # Reading on to the end makes zipfile check the CRC of everything read.
            trailing = member.read(1)
    except ValueError as exc:
        # numpy's "EOF: reading array data ..." when the stream ends before its length
        raise _refuse(file, info, f"truncated ({exc})") from None
    except MEMBER_ERRORS as exc:
        raise _refuse(file, info, f"corrupt ({type(exc).__name__}: {exc})") from None
    if trailing or arr.shape != shape or arr.dtype != dtype:
        # The stream disagrees with the header and length checked a moment ago.
        raise _refuse(file, info, "corrupt (the data does not match the checked header)")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr
