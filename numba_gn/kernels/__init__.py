"""Numba kernels on canonical flat views (no validation here: see :mod:`numba_gn.functional`).

* :mod:`numba_gn.kernels.slab`: channels-first-like data, a group is ``A`` contiguous runs;
* :mod:`numba_gn.kernels.rows`: channels-last-like data, vectorised across whole rows.

Every parallel kernel has a serial twin computing the same bits; all options live in
:mod:`numba_gn._jit`.
"""

from numba_gn.kernels import rows, slab
from numba_gn.kernels._common import LANES, PIECE

__all__ = ["LANES", "PIECE", "rows", "slab"]
