"""The progress bar of `fit`/`evaluate`/`predict`, in the format of Keras's `Progbar`.

`numba_gn.callbacks.ProgbarLogger` draws one per epoch (and one per `evaluate`/`predict`
call). The lines are Keras's (`keras.utils.Progbar`):

* verbose 1, while running (on a terminal only): the step count, the bar, the estimated time
  left and the time per step, then every log value::

      12/24 ━━━━━━━━━━━━━━━━━━━━ 1s 16ms/step - accuracy: 0.9102 - loss: 0.2611

  and when the epoch ends the same line with the time the epoch took instead of the estimate.
  On a terminal the line is redrawn in place (carriage return, at most every `interval`
  seconds); elsewhere (a log file, CI, a `StringIO`) only the final line of each epoch is
  written, so logs hold one line per epoch and no control characters.
* verbose 2: one line per epoch, when it ends::

      24/24 - 0s - 16ms/step - accuracy: 0.9651 - loss: 0.1300 - val_loss: 0.1420

Values `v` are written as `f"{v:.4f}"` when `abs(v) > 1e-3`, else as `f"{v:.4e}"` (Keras;
Keras's verbose-2 line compares `v` rather than `abs(v)`, which writes every negative value
in exponent form: here both lines use `abs(v)`). The time per step leaves out the first step
once there are more (it includes one-off work such as compiling kernels), as Keras does.
"""

from __future__ import annotations

import codecs
import math
import sys
import time
from collections.abc import Mapping
from typing import TextIO

__all__ = ["Progbar"]

_BAR = "━"  # Keras's bar character
_ASCII_BAR = "="  # for streams whose encoding cannot write it


class Progbar:
    """The progress of one epoch (or one `evaluate`/`predict` pass), drawn on a text stream.

    Call `update(step, logs)` after each step (1-based), then `finish(logs)` once.

    Args:
        total: The number of steps (>= 1).
        stream: Where to write; None (default) means `sys.stdout`.
        width: Characters in the bar (Keras's default, 20).
        verbose: 1 (a bar, redrawn while running on a terminal) or 2 (one line at the end);
            0 writes nothing.
        interval: Least time between two redraws on a terminal, in seconds.
        unit_name: The unit of the time per step ("step": "16ms/step").
    """

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        width: int = 20,
        verbose: int = 1,
        interval: float = 0.05,
        unit_name: str = "step",
    ) -> None:
        self.total = max(int(total), 1)
        self.stream = stream if stream is not None else sys.stdout
        self.width = int(width)
        self.verbose = int(verbose)
        self.interval = float(interval)
        self.unit_name = unit_name
        isatty = getattr(self.stream, "isatty", None)
        try:
            self.dynamic = bool(isatty and isatty())
        except (ValueError, OSError):  # a closed stream
            self.dynamic = False
        self.bar_char = _BAR if _can_encode(self.stream, _BAR) else _ASCII_BAR
        self.start = time.perf_counter()
        self._time_after_first_step: float | None = None
        self._last_draw = 0.0
        self._prev_width = 0
        self._seen = 0

    # -- timing ------------------------------------------------------------------------------------

    def _time_per_step(self, current: int, now: float) -> float:
        """Keras's estimate: from the end of the first step on once past it."""
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            per_step = (now - self._time_after_first_step) / (current - 1)
        else:
            per_step = (now - self.start) / current
        if current == 1 and self._time_after_first_step is None:
            self._time_after_first_step = now
        return per_step

    # -- lines -------------------------------------------------------------------------------------

    def _count(self, current: int) -> str:
        digits = int(math.log10(self.total)) + 1
        return f"{current:>{digits}d}/{self.total}"

    def _bar_line(self, current: int, logs: Mapping[str, float], finalize: bool,
                  now: float, per_step: float) -> tuple[str, int]:
        """The verbose-1 line and its printed width (without the colour codes)."""
        count = self._count(current)
        filled = min(int(self.width * current / self.total), self.width)
        if finalize:
            when = f"{now - self.start:.0f}s"
        else:
            when = _eta(per_step * (self.total - current))
        plain_bar = self.bar_char * self.width
        values = "".join(f" - {k}: {_fmt(v)}" for k, v in logs.items())
        tail = f" {when}{_per_unit(per_step, self.unit_name)}{values}"
        width = len(count) + 1 + len(plain_bar) + len(tail)
        if self.dynamic:  # Keras's colours: bold count and time, green done, white to do
            bar = (
                f"\x1b[1m{count}\x1b[0m "
                + (f"\x1b[32m{self.bar_char * filled}\x1b[0m" if filled else "")
                + f"\x1b[37m{self.bar_char * (self.width - filled)}\x1b[0m"
                + f" \x1b[1m{when}\x1b[0m{_per_unit(per_step, self.unit_name)}{values}"
            )
            return bar, width
        return f"{count} {plain_bar}{tail}", width

    # -- drawing -----------------------------------------------------------------------------------

    def update(self, step: int, logs: Mapping[str, float]) -> None:
        """Record that `step` steps are done; redraw (verbose 1, on a terminal only)."""
        now = time.perf_counter()
        per_step = self._time_per_step(step, now)
        self._seen = step
        if self.verbose != 1 or not self.dynamic:
            return
        if now - self._last_draw < self.interval and step < self.total:
            return
        self._last_draw = now
        line, width = self._bar_line(step, logs, False, now, per_step)
        self._draw(line, width, end="")

    def finish(self, logs: Mapping[str, float]) -> None:
        """Write the final line (with the validation values, if any)."""
        if self.verbose not in (1, 2):
            return
        now = time.perf_counter()
        per_step = self._time_per_step(self.total, now)
        if self.verbose == 2:
            values = "".join(f" - {k}: {_fmt(v)}" for k, v in logs.items())
            self.stream.write(
                f"{self._count(self.total)} - {now - self.start:.0f}s -"
                f"{_per_unit(per_step, self.unit_name)}{values}\n"
            )
            self.stream.flush()
            return
        line, width = self._bar_line(self.total, logs, True, now, per_step)
        self._draw(line, width, end="\n")

    def _draw(self, line: str, width: int, end: str) -> None:
        if self.dynamic:
            # Back to the line start; spaces cover what is left of a longer previous line.
            pad = " " * max(self._prev_width - width, 0)
            self.stream.write("\r" + line + pad + end)
            self._prev_width = 0 if end else width
        else:
            self.stream.write(line + end)
        self.stream.flush()


def _can_encode(stream: object, text: str) -> bool:
    encoding = getattr(stream, "encoding", None)
    if not isinstance(encoding, str):
        return True  # an in-memory text stream: anything goes
    try:
        codecs.lookup(encoding)
        text.encode(encoding)
    except (LookupError, UnicodeError):
        return False
    return True


def _eta(seconds: float) -> str:
    """Keras's ETA: "h:mm:ss" past an hour, "m:ss" past a minute, else "Ns"."""
    if seconds > 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds > 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(seconds)}s"


def _per_unit(seconds: float, unit: str) -> str:
    """Keras's time per step: " 2s/step", " 16ms/step" or " 350us/step"."""
    if seconds >= 1 or seconds == 0:
        return f" {seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f" {seconds * 1e3:.0f}ms/{unit}"
    return f" {seconds * 1e6:.0f}us/{unit}"


def _fmt(value: float) -> str:
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"
