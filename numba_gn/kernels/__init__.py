"""Numba kernels on canonical flat views (no validation here: see `numba_gn.functional`).

* `numba_gn.kernels.slab`: channels-first-like data, a group is `A` contiguous runs;
* `numba_gn.kernels.rows`: channels-last-like data, vectorised across whole rows.

Every parallel kernel has a serial twin computing the same bits; all options live in
`numba_gn._jit`.
"""

from numba_gn.kernels import rows, slab
from numba_gn.kernels._common import LANES, PIECE

__all__ = ["LANES", "PIECE", "rows", "slab"]
