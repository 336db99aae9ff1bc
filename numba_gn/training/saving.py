"""Weights on disk as ``.npz``: one array per weight, keyed ``"layer_name/weight_name"``.

The file is a plain zip archive with one NPY member per weight (``"dense/kernel.npy"``), as
``np.savez`` writes it, so ``np.load(path, allow_pickle=False)`` reads it too. Together with
``model.get_config()`` (JSON-able) this rebuilds a model exactly::

    clone = Sequential.from_config(json.loads(json.dumps(model.get_config())))
    clone.load_weights("weights.npz")

Loading treats the file as untrusted:

* nothing is ever unpickled, and nothing in the file is imported or evaluated;
* every member's NPY header (dtype, shape) and length are checked against the model's weight
  *before* its data is read, so a header claiming petabytes allocates nothing and a
  decompression bomb is never inflated past the size the model's weight needs;
* every weight is read and checked before the first is assigned, so a file that fails leaves
  the model's weights as they were.

Every problem with the file's contents is a ``ValueError`` naming the file and, where there is
one, the member, with one of these words saying what is wrong: ``not an .npz``, ``duplicate``,
``missing``/``unexpected`` (names that do not match the model), ``not NPY data``,
``truncated``, ``oversized``, ``corrupt``, ``would need pickle`` (object arrays),
``wrong dtype``, ``wrong shape``. A path that does not exist raises ``FileNotFoundError`` (and
an unreadable one ``PermissionError``), as ``open`` does; a directory raises ``ValueError``.

Saving is atomic: the archive is written to a temporary file in the destination's folder and
moved over the destination only when complete, so a failed save leaves any existing file
untouched and no partial file behind.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import secrets
import stat
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np

try:
    from lzma import LZMAError
except ImportError:  # Python built without lzma: zipfile then cannot open LZMA members at all
    LZMAError = zipfile.BadZipFile  # type: ignore[assignment,misc]

__all__ = ["load_weights", "save_weights"]

_NPY_MAGIC = b"\x93NUMPY"
# numpy refuses to parse longer headers by default; checking first means we never read one.
_MAX_HEADER_LEN = 10_000
# What reading a damaged zip member can raise (bad CRC, broken deflate/bz2/lzma stream, a
# local header that disagrees with the central directory, encryption, unknown compression).
_MEMBER_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    LZMAError,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
)
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
    """``path`` as a ``str`` file name, or a ``TypeError`` naming the argument."""
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
    """``7.11 PiB``: sizes in messages."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.2f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    raise AssertionError("unreachable")


# -- saving ----------------------------------------------------------------------------------


def save_weights(model: Any, path: str | os.PathLike[str]) -> None:
    """Write the model's weights to ``path`` (exactly that name), atomically.

    The archive is written to a temporary file next to ``path`` and renamed over it only once
    complete: if anything fails, an existing file at ``path`` is left as it was and the
    temporary file is removed.

    Raises
    ------
    ValueError
        The model is not built, has duplicate weight paths or a non-numeric weight, or ``path``
        is a directory.
    TypeError
        ``path`` is not a str or path-like.
    OSError
        From the file system (missing folder, no permission, disk full).
    """
    # Everything that can fail on the model's side happens before a file is created.
    arrays = []
    for name, w in _paths(model):
        arr = np.asarray(w.data)
        if arr.dtype.kind not in "biufc" or arr.dtype.hasobject:
            raise ValueError(
                f"Weight {name!r} has dtype {arr.dtype}; only numeric weights can be saved."
            )
        arrays.append((name, arr))
    file = _file_name(path)
    if os.path.isdir(file):
        raise ValueError(f"Cannot save weights to {file!s}: it is a directory.")
    # Through a symlink the rename must replace the target, not the link.
    target = os.path.realpath(file)
    folder = os.path.dirname(target)
    # Same folder as the target: os.replace is only atomic within one file system.
    tmp = os.path.join(folder, f".{os.path.basename(target)[:100]}.{secrets.token_hex(8)}.tmp")
    try:
        # "x": never clobber a file we did not create; plain open (not mkstemp) so the final
        # file gets the usual permissions rather than mkstemp's owner-only ones.
        with open(tmp, "xb") as fh:
            _write_archive(fh, arrays)
            fh.flush()
            os.fsync(fh.fileno())  # the rename must not land before the data does
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_archive(fh: BinaryIO, arrays: list[tuple[str, np.ndarray]]) -> None:
    """The ``np.savez`` layout, written member by member without pickle."""
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays:
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


# -- loading ---------------------------------------------------------------------------------


def load_weights(model: Any, path: str | os.PathLike[str]) -> None:
    """Assign the weights stored at ``path`` to the model, all or nothing.

    Every member is checked (NPY header, dtype, shape, length) and read before any weight is
    assigned; nothing is unpickled. Float members of another precision are cast to the
    weight's dtype; big-endian and Fortran-ordered members are accepted.

    Raises
    ------
    ValueError
        The file is not a numeric ``.npz`` archive matching the model (the message names the
        file, the member and the problem), or ``path`` is a directory. No weight is changed.
    FileNotFoundError
        ``path`` does not exist.
    TypeError
        ``path`` is not a str or path-like.
    """
    paths = _paths(model)
    file = _file_name(path)
    values = _read_weights(file, paths)
    variables = [w for _, w in paths]
    # The arrays were checked against these very variables, so assign cannot refuse them; the
    # snapshot keeps "all or nothing" true even if it is interrupted part way.
    previous = [np.array(w.data, copy=True) for w in variables]
    try:
        for w, arr in zip(variables, values, strict=True):
            w.assign(arr)
    except BaseException:
        for w, old in zip(variables, previous, strict=True):
            np.copyto(w.data, old)
        raise


def _read_weights(file: str, paths: list[tuple[str, Any]]) -> list[np.ndarray]:
    """Every weight's array from the archive at ``file``, after checking all of them."""
    mode = os.stat(file).st_mode  # FileNotFoundError for a missing file, as open() gives
    if stat.S_ISDIR(mode):
        raise ValueError(
            f"{file!s} is a directory, not an .npz weights file. No weight was changed."
        )
    if not stat.S_ISREG(mode):
        # A FIFO or device would block or never end: only regular files are read.
        raise ValueError(
            f"{file!s} is not a regular file, so not an .npz weights file. "
            "No weight was changed."
        )
    with open(file, "rb") as fh:
        if fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
            raise ValueError(
                f"{file!s} holds a single array (.npy), not an .npz archive of named weights. "
                "No weight was changed."
            )
        fh.seek(0)
        try:
            archive = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ValueError(
                f"{file!s} is not an .npz weights file (not a readable zip archive: {exc}). "
                "No weight was changed."
            ) from None
        with archive:
            members = _members(archive, file, [name for name, _ in paths])
            # Headers of all members first: a bad last member is found before any data is read.
            layouts = [
                _check_header(archive, members[name], file, w) for name, w in paths
            ]
            return [
                _read_data(archive, members[name], file, layout)
                for (name, _), layout in zip(paths, layouts, strict=True)
            ]


def _members(archive: zipfile.ZipFile, file: str, expected: list[str]) -> dict[str, Any]:
    """``{weight name: ZipInfo}``, after checking the names are exactly the model's."""
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
            f"Weights file {file!s} has duplicate member(s) {_short(duplicates)}. "
            "No weight was changed."
        )
    wanted = set(expected)
    missing = [n for n in expected if n not in members]
    unexpected = [n for n in members if n not in wanted]
    if missing or unexpected:
        raise ValueError(
            f"Weights file {file!s} does not match the model: missing {_short(missing)}, "
            f"unexpected {_short(unexpected)}. No weight was changed."
        )
    return members


def _refuse(file: str, info: zipfile.ZipInfo, problem: str) -> ValueError:
    return ValueError(
        f"Weights file {file!s}, member {info.filename!r}: {problem}. No weight was changed."
    )


def _check_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, file: str, weight: Any
) -> tuple[int, tuple[int, ...], np.dtype]:
    """Check one member's NPY header and length against ``weight``, reading no array data.

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
    except _MEMBER_ERRORS as exc:
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
    want = np.asarray(weight.data).dtype
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
    want_shape = np.shape(weight.data)
    if tuple(shape) != want_shape:
        raise _refuse(
            file, info, f"wrong shape {tuple(shape)}; the model's weight has shape {want_shape}"
        )
    return offset, tuple(shape), dtype


def _read_data(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    file: str,
    layout: tuple[int, tuple[int, ...], np.dtype],
) -> np.ndarray:
    """The array of a member whose header :func:`_check_header` accepted."""
    _, shape, dtype = layout
    try:
        with archive.open(info) as member:
            arr = np.lib.format.read_array(member, allow_pickle=False)
            # Reading on to the end makes zipfile check the CRC of everything read.
            trailing = member.read(1)
    except ValueError as exc:
        # numpy's "EOF: reading array data ..." when the stream ends before its length
        raise _refuse(file, info, f"truncated ({exc})") from None
    except _MEMBER_ERRORS as exc:
        raise _refuse(file, info, f"corrupt ({type(exc).__name__}: {exc})") from None
    if trailing or arr.shape != shape or arr.dtype != dtype:
        # The stream disagrees with the header and length checked a moment ago.
        raise _refuse(file, info, "corrupt (the data does not match the checked header)")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr
