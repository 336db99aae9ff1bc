"""Name scopes: where a new `Variable` gets its `path` from.

Keras's rule: a Variable created while layers are building or calling is named after them,
`"block/dense/kernel"`; outside any layer its path is its name. Layers open a scope (their
name) around `build` and `call`; the stack is per thread, so layers building in several
threads at once each see their own.

A scope may carry the absolute path of its layer's parent (recorded when the layer first
opened a scope): the path then restarts from there, so a layer keeps its place in the
hierarchy wherever it is called from later, as in Keras.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

__all__ = ["Scope", "current_path", "name_scope", "stack"]


class _Local(threading.local):
    def __init__(self) -> None:
        self.stack: list[Scope] = []  # each thread starts with an empty stack


_local = _Local()


class Scope(NamedTuple):
    """One open scope: a name, the object that opened it, the absolute path it restarts from."""

    name: str
    caller: Any = None
    parent: str | None = None


def stack() -> list[Scope]:
    """The open scopes of the calling thread, innermost last (layers push and pop directly)."""
    return _local.stack


def current_path() -> str:
    """The `"/"`-joined names of the open scopes of this thread (`""` when none is open)."""
    entries = _local.stack
    if not entries:
        return ""
    parts: list[str] = []
    for entry in entries:
        if entry.parent is not None:
            parts = [p for p in entry.parent.split("/") if p]
        parts.append(entry.name)
    return "/".join(parts)


class name_scope:  # noqa: N801 - a context manager used like a function, as Keras's
    """Open a scope `name` for the Variables created inside the `with` block.

    Parameters
    ----------
    name : str
        The scope's name (a layer's name).
    caller : object, optional
        The object opening the scope. A scope opened again by the same caller with the same
        name directly inside its own is not repeated (a layer's `add_weight` inside its
        `build`), as Keras deduplicates.
    parent : str, optional
        An absolute path the scope restarts from instead of the enclosing scopes.
    """

    __slots__ = ("_entry", "_pushed")

    def __init__(self, name: str, caller: Any = None, parent: str | None = None) -> None:
        self._entry = Scope(name, caller, parent)
        self._pushed = False

    def __enter__(self) -> name_scope:
        entries = _local.stack
        entry = self._entry
        if entries and entry.caller is not None:
            top = entries[-1]
            if top.caller is entry.caller and top.name == entry.name:
                return self
        entries.append(entry)
        self._pushed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pushed:
            _local.stack.pop()
            self._pushed = False
