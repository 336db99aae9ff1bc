"""The table `model.summary()` prints: one row per layer, then the parameter totals."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["print_summary"]


def print_summary(
    model: Any,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    emit: Callable[[str], Any],
    note: str | None = None,
) -> None:
    """Print `rows` under `header` in Keras's layout, then the model's parameter totals.

    The third column (the parameter counts) is right-aligned, the others left-aligned; `note`
    (when given) follows the totals.
    """
    table = [tuple(header), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) + 2 for i in range(len(header))]
    widths[2] = max(widths[2], 12)
    line = "─" * (sum(widths) + 2)

    def fmt(r: tuple[str, ...]) -> str:
        cells = [
            f"{c:>{widths[i]}}" if i == 2 else f"{c:<{widths[i]}}" for i, c in enumerate(r)
        ]
        if len(cells) > 3:  # a gap between the counts and the column after them
            cells[3] = "  " + cells[3]
        return f" {''.join(cells).rstrip() if len(cells) > 3 else ''.join(cells)} "

    emit(f'Model: "{model.name}"')
    emit(line)
    emit(fmt(table[0]))
    emit("═" * len(line))
    for r in table[1:]:
        emit(fmt(r))
    emit(line)
    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
    total = model.count_params()
    size = sum(v.data.nbytes for v in model.weights)
    t_size = sum(v.data.nbytes for v in model.trainable_weights)
    emit(f" Total params: {total:,} ({_bytes(size)})")
    emit(f" Trainable params: {trainable:,} ({_bytes(t_size)})")
    emit(f" Non-trainable params: {total - trainable:,} ({_bytes(size - t_size)})")
    if note:
        emit(note)


def _bytes(n: float) -> str:
    """Keras's size format: `20.41 KB`."""
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GB"
