"""Shared parameters, seeded cached data and helpers of the asv suite.

Must not be changed -- only appended: the names and shapes below define what past results
measured, so changing one makes a benchmark's history incomparable (numpy's rule).
"""

import os

# Same setting as ``numba-gn bench`` (see numba_gn/cli/bench.py): idle GNU OpenMP threads
# otherwise go to sleep between calls, and waking them adds ~0.1 ms on a shared VM. It must be
# in the environment before the first parallel launch loads libgomp; the user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "active")

import functools  # noqa: E402

import numpy as np  # noqa: E402

GROUPS = 32
EPSILON = 1e-3
SEED = 20240607

#: size name -> channels-last shape (N, H, W, C); each layout rearranges the same numbers.
SIZES = {
    "tiny": (2, 8, 8, 32),  # 16 KiB in float32: per-call overhead
    "small": (4, 32, 32, 64),  # 1 MiB: fits in cache
    "medium": (8, 64, 64, 256),  # 32 MiB: the speed targets' shape
    "large": (16, 64, 64, 512),  # 128 MiB (>= 100 MB): out of every cache
}
LAYOUTS = ["channels-last", "channels-first", "middle axis", "tuple axis"]
#: PyTorch normalises axis 1 only: peers run on the two layouts models actually use.
PEER_LAYOUTS = ["channels-last", "channels-first"]
DTYPES = ["float32", "float64", "float16"]
#: peak memory: "tiny" gives the interpreter's baseline to subtract from the others
MEMORY_SIZES = ["tiny", "medium", "large"]


class Benchmark:
    """Base class of every benchmark class (numpy's convention; a hook for shared settings)."""


def is_xslow() -> bool:
    """Run every combination (``NUMBA_GN_ASV_ALL=1``), not just the default, bearable set."""
    return os.environ.get("NUMBA_GN_ASV_ALL", "0") not in ("", "0")


def skip_slow(size: str, dtype: str) -> None:
    """Large arrays run in float32 only by default (asv shows the others as n/a)."""
    if size == "large" and dtype != "float32" and not is_xslow():
        raise NotImplementedError("large arrays: float32 only unless NUMBA_GN_ASV_ALL=1")


def layout_shape(layout: str, size: str) -> tuple[tuple[int, ...], int | tuple[int, ...]]:
    """``(shape, axis)`` of ``size`` arranged in ``layout``."""
    n, h, w, c = SIZES[size]
    if layout == "channels-last":
        return (n, h, w, c), -1
    if layout == "channels-first":
        return (n, c, h, w), 1
    if layout == "middle axis":
        return (n, h, c, w), 2
    if layout == "tuple axis":  # Keras axis=(-2, -1): channels spread over two trailing axes
        return (n, h, w, 8, c // 8), (3, 4)
    raise ValueError(layout)


def channel_shape(layout: str, size: str) -> tuple[int, ...]:
    """Shape of gamma and beta for ``layout``."""
    shape, axis = layout_shape(layout, size)
    axes = (axis,) if isinstance(axis, int) else axis
    return tuple(shape[a] for a in axes)


def _rng(*key: object) -> np.random.Generator:
    # A stable seed per (factory, arguments): the same data in every process and every run.
    return np.random.default_rng([SEED, *(ord(ch) for ch in repr(key))])


def _normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype == "float64":
        return rng.standard_normal(shape)
    return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)


@functools.lru_cache(maxsize=4)
def get_x(layout: str, size: str, dtype: str) -> np.ndarray:
    """Standard-normal input of ``size`` in ``layout`` (cached; never modify it)."""
    shape, _ = layout_shape(layout, size)
    return _normal(_rng("x", layout, size, dtype), shape, dtype)


@functools.lru_cache(maxsize=4)
def get_dy(layout: str, size: str, dtype: str) -> np.ndarray:
    """Standard-normal upstream gradient for :func:`get_x` (cached; never modify it)."""
    shape, _ = layout_shape(layout, size)
    return _normal(_rng("dy", layout, size, dtype), shape, dtype)


@functools.lru_cache(maxsize=4)
def get_params(layout: str, size: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``(gamma, beta)`` near (1, 0), in the dtype computations run in (float32 for float16)."""
    rng = _rng("params", layout, size, dtype)
    pdtype = "float32" if dtype == "float16" else dtype
    cs = channel_shape(layout, size)
    gamma = (1.0 + 0.1 * rng.standard_normal(cs)).astype(pdtype)
    beta = (0.1 * rng.standard_normal(cs)).astype(pdtype)
    return gamma, beta


def empty_like_touched(x: np.ndarray) -> np.ndarray:
    """A preallocated output with its pages already faulted in (np.empty maps them lazily)."""
    out = np.empty_like(x)
    out.fill(0)
    return out


_done: set = set()


def once(key: object, fn) -> None:
    """Call ``fn()`` the first time ``key`` is seen in this process.

    asv re-runs ``setup`` before every timed sample; compiling/warming once is enough.
    """
    if key not in _done:
        fn()
        _done.add(key)
