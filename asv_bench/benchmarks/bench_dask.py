"""``numba_gn.dask``: lazy group normalization of Dask arrays, next to ``dask.array`` reductions.

The input is ``common.get_x("channels-first", size, "float32")`` (the same numbers as
``bench_groupnorm``), channel axis 1, 32 groups, affine, as a Dask array chunked

* ``batch``: one sample per chunk, one chunk along every other axis (one task of the in-memory
  ``numba_gn.group_norm`` per chunk);
* ``blocks``: one sample per chunk and the channel and height axes halved too (per-block
  partial statistics, a tree merge, then one output task per block).

Classes:

* ``DaskGroupNorm.time_forward`` / ``time_forward_backward``: ``numba_gn.dask.group_norm``
  (and ``group_norm_backward`` from its statistics), graph building included, persisted with the
  threaded scheduler (results stay in memory as chunks); ``time_build_graph``: building the
  graph alone (argument checks and graph construction, no computation);
* ``DaskReductions.time_forward``: the same group norm written with ``dask.array`` reductions
  (mean and variance of the array reshaped to ``(N, G, C/G, H, W)``), on the same chunks.

Without Dask every class is skipped with the reason ``Dask not installed: pip install
numba_gn[dask]``. Schedulers other than the threaded one, and out-of-core runs, are measured by
``numba-gn bench --dask``, whose clusters do not fit asv's repeated timing.
"""

from . import common
from .common import GROUPS, Benchmark

try:
    import dask
    import dask.array as da

    import numba_gn.dask as gn_dask
    from numba_gn.cli.bench_dask import group_norm_reductions
except ImportError:  # Dask not installed, or a commit older than numba_gn.dask
    da = None

DASK_MISSING = "Dask not installed: pip install numba_gn[dask]"
#: ``common.SIZES`` up to 32 MiB: the large size only repeats ``medium`` with longer tasks.
SIZES = ["tiny", "small", "medium"]
CHUNKINGS = ["batch", "blocks"]


def _chunks(shape, chunking):
    n, c, h, w = shape
    if chunking == "batch":
        return (1, c, h, w)
    return (1, max(1, c // 2), max(1, h // 2), w)


class _DaskBench(Benchmark):
    params = [SIZES, CHUNKINGS]
    param_names = ["size", "chunking"]
    timeout = 300

    def setup(self, size, chunking):
        if da is None:
            raise NotImplementedError(DASK_MISSING)
        x = common.get_x("channels-first", size, "float32")
        self.gamma, self.beta = common.get_params("channels-first", size, "float32")
        self.x = da.from_array(x, chunks=_chunks(x.shape, chunking))
        # asv runs setup before every sample: compiling/loading the kernels once is enough.
        common.once((type(self).__name__, size, chunking), self._warm)

    def _warm(self):
        raise NotImplementedError  # pragma: no cover - every subclass defines it


class DaskGroupNorm(_DaskBench):
    """``numba_gn.dask.group_norm`` (and its backward) with the threaded scheduler."""

    def _forward(self):
        return gn_dask.group_norm(
            self.x, GROUPS, self.gamma, self.beta, axis=1, return_stats=True
        )

    def _warm(self):
        y, mean, rstd = self._forward()
        grads = gn_dask.group_norm_backward(y, self.x, mean, rstd, GROUPS, self.gamma, axis=1)
        dask.compute(y, *grads, scheduler="threads")

    def time_build_graph(self, size, chunking):
        self._forward()

    def time_forward(self, size, chunking):
        self._forward()[0].persist(scheduler="threads")

    def time_forward_backward(self, size, chunking):
        y, mean, rstd = self._forward()
        grads = gn_dask.group_norm_backward(y, self.x, mean, rstd, GROUPS, self.gamma, axis=1)
        dask.compute(*grads, scheduler="threads")


class DaskReductions(_DaskBench):
    """The same forward written with ``dask.array`` reductions, on the same chunks."""

    def _warm(self):
        self.time_forward(None, None)

    def time_forward(self, size, chunking):
        group_norm_reductions(self.x, GROUPS, self.gamma, self.beta).persist(scheduler="threads")
