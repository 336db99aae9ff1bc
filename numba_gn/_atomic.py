"""Atomic file writes: every file numba_gn writes goes through `atomic_write`.

A reader (or a process started after a crash, a power cut or a `SIGKILL`) sees either the
file as it was before the write or the complete new file, never a mix or a truncated one:

1. the content is written to a new temporary file in the destination's folder (`os.replace`
   is atomic only within one file system), opened with `"x"` so that no existing file is ever
   clobbered, and named `.<name>.<random>.tmp` (hidden, and never a name the library reads);
2. the temporary file is flushed and fsynced, so its data is on disk before the rename is;
3. `os.replace` moves it over the destination (through a symlink: over the link's target);
4. the folder is fsynced (best effort), so the rename itself survives a crash.

On any error (`KeyboardInterrupt` included) the temporary file is removed and an existing
destination is left untouched. Only a process killed outright between steps 1 and 3 can leave
a temporary file behind; the destination is then still the old file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["atomic_write", "fsync_folder", "temporary_name", "write_text"]


def temporary_name(target: str) -> str:
    """The temporary file's path for `target`: hidden, unique, in the same folder."""
    folder = os.path.dirname(target)
    # The name is cut so that the temporary name stays under the usual 255-byte limit.
    return os.path.join(folder, f".{os.path.basename(target)[:100]}.{secrets.token_hex(8)}.tmp")


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Write the file at `path` with `write(fh)`, atomically (see the module docstring).

    `fh` is a binary file opened for reading and writing (`"x+b"`: h5py and zipfile may
    seek and read back what they wrote); `write` must not close it.

    Args:
        path: The destination. A symlink is followed: its target is replaced.
        write: Called once with the open temporary file.

    Raises:
        OSError: From the file system (missing folder, no permission, disk full); whatever
            `write` raises. In every case the destination is unchanged and the temporary
            file removed.
    """
    target = os.path.realpath(os.fspath(path))
    tmp = temporary_name(target)
    try:
        # Plain open rather than mkstemp: the final file gets the usual permissions (umask),
        # not mkstemp's owner-only ones.
        with open(tmp, "x+b") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())  # the rename must not reach the disk before the data
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_folder(os.path.dirname(target))


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to the file at `path`, atomically."""
    data = text.encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data))


def fsync_folder(folder: str) -> None:
    """Fsync a folder so a rename in it is durable; best effort (not every platform can)."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
