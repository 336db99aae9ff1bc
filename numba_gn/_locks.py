"""Objects that hold locks and can still be copied and pickled."""

from __future__ import annotations

import threading
from typing import Any


class FreshLocks:
    """Mixin: the locks named in `_lock_names` are not copied; copies get locks of their own.

    A lock can be neither deep-copied nor pickled, and a copy must not share its original's: the
    copy's state is its own. Each class lists the re-entrant locks it makes in `__init__`;
    names from every class in the hierarchy are handled.
    """

    _lock_names: tuple[str, ...] = ()

    def _every_lock_name(self) -> set[str]:
        return {n for cls in type(self).__mro__ for n in cls.__dict__.get("_lock_names", ())}

    def __getstate__(self) -> dict[str, Any]:
        """The instance dict without its locks."""
        state = self.__dict__.copy()
        for name in self._every_lock_name():
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a copied or unpickled object with new locks."""
        self.__dict__.update(state)
        for name in self._every_lock_name():
            setattr(self, name, threading.RLock())
