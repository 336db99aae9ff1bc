"""Per-thread recording state: which tapes are recording in the current thread.

Kept in its own module so that `function` (which records) and `tape` (which pushes
and pops tapes) share it without importing each other.
"""

from __future__ import annotations

import threading


class _TapeState(threading.local):
    """`active`: the tapes recording in this thread, outermost first (empty: record nothing)."""

    def __init__(self) -> None:
        self.active: list = []


#: The one instance; every thread sees its own `active` list.
STATE = _TapeState()
