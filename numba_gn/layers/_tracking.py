"""Lists and dicts that tell the layer holding them when layers or Variables come and go.

A list or dict assigned to a layer attribute (`self.blocks = [Dense(4), Dense(4)]`) is
replaced by a `TrackedList` / `TrackedDict` copy, as Keras does, so that a layer
appended or stored later (`self.blocks.append(Dense(2))`) is tracked too, and one removed is
untracked. The containers only report changes; the owner (a
`Layer`) decides what is tracked (see `Layer.__setattr__`).

A container keeps its owner in its `__dict__`, not in what it is rebuilt from, so copying or
pickling the container alone or with its layer rebuilds it without replaying the changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, SupportsIndex

__all__ = ["TrackedDict", "TrackedList"]


def _rebuild_list(items: list[Any]) -> TrackedList:
    out = TrackedList.__new__(TrackedList)
    list.extend(out, items)
    out._owner = None  # the state that follows sets the owner
    return out


def _rebuild_dict(items: dict[Any, Any]) -> TrackedDict:
    out = TrackedDict.__new__(TrackedDict)
    dict.update(out, items)
    out._owner = None
    return out


class _Reporting:
    """What both tracked containers share: wrapping what comes in, reporting changes."""

    _owner: Any

    def _adopt(self, value: Any) -> tuple[Any, list[Any]]:
        if self._owner is None:
            return value, []
        return self._owner._wrap_for_tracking(value)

    def _report(self, added: list[Any], removed: Iterable[Any]) -> None:
        if self._owner is not None:
            self._owner._tracking_changed(added, self._owner._trackables_in(removed))


class TrackedList(_Reporting, list):
    """A `list` that reports added and removed values to the layer owning it."""

    def __init__(self, values: Iterable[Any] = (), owner: Any = None) -> None:
        super().__init__(values)
        self._owner = owner

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple:  # type: ignore[override]
        return _rebuild_list, (list(self),), {"_owner": self._owner}

    # Each mutator wraps what comes in (nested lists and dicts become tracked too), applies the
    # change as list does, then reports it.

    def append(self, value: Any) -> None:
        """Append `value`, tracking the layers and Variables in it."""
        value, found = self._adopt(value)
        super().append(value)
        self._report(found, ())

    def insert(self, index: SupportsIndex, value: Any) -> None:
        """Insert `value` before `index`, tracking the layers and Variables in it."""
        value, found = self._adopt(value)
        super().insert(index, value)
        self._report(found, ())

    def extend(self, values: Iterable[Any]) -> None:
        """Append every value, tracking the layers and Variables in them."""
        adopted, found = self._adopt(list(values))
        super().extend(adopted)
        self._report(found, ())

    def __iadd__(self, values: Iterable[Any]) -> TrackedList:  # type: ignore[override,misc]
        self.extend(values)
        return self

    def __imul__(self, n: SupportsIndex) -> TrackedList:  # type: ignore[override,misc]
        removed = list(self) if int(n) <= 0 else []
        super().__imul__(n)
        self._report([], removed)
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        old = self[index]
        value, found = self._adopt(list(value) if isinstance(index, slice) else value)
        super().__setitem__(index, value)
        self._report(found, old if isinstance(index, slice) else [old])

    def __delitem__(self, index: Any) -> None:
        old = self[index]
        super().__delitem__(index)
        self._report([], old if isinstance(index, slice) else [old])

    def pop(self, index: SupportsIndex = -1) -> Any:
        """Remove and return the value at `index`, untracking what no attribute holds."""
        value = super().pop(index)
        self._report([], [value])
        return value

    def remove(self, value: Any) -> None:
        """Remove the first occurrence of `value`, untracking what no attribute holds."""
        index = next((i for i, v in enumerate(self) if v is value), None)
        if index is None:
            index = self.index(value)  # ValueError when absent, as list
        del self[index]

    def clear(self) -> None:
        """Remove every value, untracking what no attribute holds."""
        removed = list(self)
        super().clear()
        self._report([], removed)


class TrackedDict(_Reporting, dict):
    """A `dict` that reports added and removed values to the layer owning it."""

    def __init__(self, values: Any = (), owner: Any = None) -> None:
        super().__init__(values)
        self._owner = owner

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple:  # type: ignore[override]
        return _rebuild_dict, (dict(self),), {"_owner": self._owner}

    def __setitem__(self, key: Any, value: Any) -> None:
        removed = [self[key]] if key in self else []
        value, found = self._adopt(value)
        super().__setitem__(key, value)
        self._report(found, removed)

    def __delitem__(self, key: Any) -> None:
        value = self[key]
        super().__delitem__(key)
        self._report([], [value])

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """`self[key]`, first set to `default` (tracked) when missing."""
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Set every item of a mapping or of key/value pairs, as dict does, tracking them."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[override,misc]
        self.update(other)
        return self

    _missing = object()

    def pop(self, key: Any, default: Any = _missing) -> Any:
        """Remove `key` and return its value (or `default`), untracking it if unheld."""
        if key not in self:
            if default is TrackedDict._missing:
                raise KeyError(key)
            return default
        value = super().pop(key)
        self._report([], [value])
        return value

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return the last item, untracking its value if no attribute holds it."""
        key, value = super().popitem()
        self._report([], [value])
        return key, value

    def clear(self) -> None:
        """Remove every item, untracking what no attribute holds."""
        removed = list(self.values())
        super().clear()
        self._report([], removed)
