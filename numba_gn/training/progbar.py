"""A one-line-per-epoch progress bar in Keras's style, and the ``History`` that ``fit`` returns.

On a terminal the line is redrawn in place (carriage return) at most every 0.05 s; elsewhere (a log
file, CI) only the finished line of each epoch is written, so logs stay short::

    Epoch 3/10
    24/24 [==============================] 0.4s 16ms/step - accuracy: 0.9651 - loss: 0.1300
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["History", "Progbar"]


class History:
    """What ``fit`` returns: per-epoch values of the loss and metrics.

    ``history`` maps "loss", metric names and their "val_" versions to one value per epoch;
    ``epoch`` lists the epoch indices (from 0).
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict[str, Any] = {}

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        """Record the logs of one finished epoch."""
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class Progbar:
    """Progress of one epoch: ``update(step, logs)`` after each step, ``finish(logs)`` at the end.

    Parameters
    ----------
    total : int
        Number of steps in the epoch.
    stream : text stream, default ``sys.stdout``
    width : int, default 30
        Characters in the bar.
    """

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(int(total), 1)
        self.stream = stream if stream is not None else sys.stdout
        self.width = width
        self.start = time.perf_counter()
        self._last_draw = 0.0
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = bool(isatty and isatty())

    def _line(self, step: int, logs: dict[str, float], finished: bool) -> str:
        n = len(str(self.total))
        filled = int(self.width * step / self.total)
        if finished or filled >= self.width:
            bar = "=" * self.width
        else:
            bar = "=" * max(filled - 1, 0) + ">" + "." * (self.width - max(filled, 1))
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(step, 1)
        if finished:
            timing = f"{_duration(elapsed)} {_per_step(per_step)}"
        else:
            timing = f"ETA {per_step * (self.total - step):.1f}s"
        parts = [f"{step:>{n}}/{self.total} [{bar}] {timing}"]
        parts += [f"{k}: {_fmt(v)}" for k, v in sorted(logs.items())]
        return " - ".join(parts)

    def update(self, step: int, logs: dict[str, float]) -> None:
        """Redraw after ``step`` steps (only on a terminal, at most 20 times a second)."""
        if not self.dynamic:
            return
        now = time.perf_counter()
        if now - self._last_draw < 0.05 and step < self.total:
            return
        self._last_draw = now
        self.stream.write("\r" + self._line(step, logs, finished=False) + "\x1b[K")
        self.stream.flush()

    def finish(self, logs: dict[str, float]) -> None:
        """Write the epoch's final line (with validation values, if any)."""
        prefix = "\r" if self.dynamic else ""
        suffix = "\x1b[K\n" if self.dynamic else "\n"
        self.stream.write(prefix + self._line(self.total, logs, finished=True) + suffix)
        self.stream.flush()


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds >= 1 else f"{seconds * 1e3:.0f}ms"


def _per_step(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.1f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def _fmt(value: float) -> str:
    return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.4e}"
