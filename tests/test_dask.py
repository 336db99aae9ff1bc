"""`numba_gn.dask`: lazy group normalisation of Dask arrays, equal to the in-memory functions.

* Chunked along the batch axis only, forward and backward are the in-memory results bit for
  bit, for random chunkings (one-element and empty batch chunks included), layouts and dtypes.
* Chunked along any axes, the merged statistics and outputs match the float64 reference to
  1e-6 of the output scale (float32) at offsets up to 1e4 (and 1e6), backward included.
* NaN stays inside its (sample, group); empty arrays and empty chunks behave as in memory.
* Bad arguments raise the in-memory errors, word for word, when the graph is built.
* `numba_gn.group_norm` given a Dask array returns the lazy result.
* The threaded, processes and distributed schedulers give the same bits; distributed workers
  load every kernel from the disk cache; a task runs with one Numba thread unless the
  scheduler gives it more.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from reference import group_norm_backward_ref, group_norm_ref  # noqa: E402

import numba_gn  # noqa: E402
from numba_gn import _cache  # noqa: E402
from numba_gn import dask as gd  # noqa: E402

# See tests/test_properties.py: hypothesis's failure report imports a module that warns.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
DTYPES = (np.float16, np.float32, np.float64)


def _sync(*arrays):
    return dask.compute(*arrays, scheduler="sync")


# -- random problems -------------------------------------------------------------------------------


@st.composite
def _chunks(draw, n, *, allow_empty=False, cut=False):
    """A chunking of an axis of length `n`: random cuts (at least one if `cut`)."""
    if n == 0:
        return (0,)
    least = 1 if cut else 0
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), min_size=least, max_size=n - 1))) \
        if n > 1 else []
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    if allow_empty and draw(st.booleans()):  # a zero-length chunk somewhere
        sizes.insert(draw(st.integers(0, len(sizes))), 0)
    return tuple(sizes)


#: (rank, layout) of the drawn problems: each test runs every one (hypothesis alone would
#: favour the simplest).
LAYOUTS = [(2, "last"), (3, "last"), (3, "first"), (3, "tuple"), (4, "last"), (4, "first"),
           (4, "tuple")]


@st.composite
def problems(draw, ndim, layout, *, batch_only):
    """(x, groups, axis, chunks, gamma, beta): a small random call and a chunking of x."""
    if layout == "last":
        axis: int | tuple[int, ...] = -1
        axes = (ndim - 1,)
    elif layout == "first":
        axis, axes = 1, (1,)
    else:
        axes = tuple(draw(st.permutations(range(1, ndim)))[:2])  # any order
        axis = axes
    shape = [draw(st.integers(1, 5))] + [draw(st.integers(1, 6)) for _ in range(ndim - 1)]
    C = int(np.prod([shape[a] for a in axes]))
    groups = draw(st.sampled_from([g for g in range(1, C + 1) if C % g == 0] + [-1]))
    dtype = draw(st.sampled_from(DTYPES))
    offset = draw(st.sampled_from([0.0, 1e2, 1e4] if dtype != np.float16 else [0.0, 1e2]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = (offset + rng.standard_normal(shape)).astype(dtype)
    cshape = tuple(shape[a] for a in axes)
    gamma = (1 + 0.2 * rng.standard_normal(cshape)).astype(np.float32)
    beta = (0.5 * rng.standard_normal(cshape)).astype(np.float32)
    chunks = [draw(_chunks(shape[0], allow_empty=True))]
    for a, n in enumerate(shape[1:], start=1):  # channel axes always cut (groups split)
        chunks.append((n,) if batch_only else draw(_chunks(n, cut=a in axes)))
    return x, groups, axis, tuple(chunks), gamma, beta


def _scale(ref):
    return max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0


# -- batch-only chunks: the in-memory bits ---------------------------------------------------------


@pytest.mark.parametrize(("ndim", "layout"), LAYOUTS)
@SETTINGS
@given(data=st.data())
def test_batch_chunks_give_the_in_memory_bits(ndim, layout, data):
    x, groups, axis, chunks, gamma, beta = data.draw(problems(ndim, layout, batch_only=True))
    xd = da.from_array(x, chunks=chunks)
    y, mean, rstd = _sync(*gd.group_norm(xd, groups, gamma, beta, axis=axis, return_stats=True))
    y0, mean0, rstd0 = numba_gn.group_norm(x, groups, gamma, beta, axis=axis, return_stats=True)
    assert y.dtype == x.dtype and mean.shape == mean0.shape and mean.dtype == np.float64
    for got, want in ((y, y0), (mean, mean0), (rstd, rstd0)):
        assert np.array_equal(got, want, equal_nan=True)
    dy = np.cos(3 * x.astype(np.float64)).astype(x.dtype)
    got = _sync(*gd.group_norm_backward(
        da.from_array(dy, chunks=chunks), xd, mean, rstd, groups, gamma, axis=axis
    ))
    want = numba_gn.group_norm_backward(dy, x, mean0, rstd0, groups, gamma, axis=axis)
    assert np.array_equal(got[0], want[0])  # dx: per sample, the same arithmetic
    for g, w in zip(got[1:], want[1:], strict=True):  # dgamma, dbeta: chunk sums added in float64
        assert g.dtype == w.dtype == np.float32 and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6 * _scale(w))


# -- chunks along any axis: merged statistics ------------------------------------------------------


@pytest.mark.parametrize(("ndim", "layout"), LAYOUTS)
@SETTINGS
@given(data=st.data())
def test_block_chunks_match_the_float64_reference(ndim, layout, data):
    x, groups, axis, chunks, gamma, beta = data.draw(problems(ndim, layout, batch_only=False))
    xd = da.from_array(x, chunks=chunks)
    y, mean, rstd = _sync(*gd.group_norm(xd, groups, gamma, beta, axis=axis, return_stats=True))
    G = mean.shape[1]
    ref, mref, rref = group_norm_ref(x, G, gamma, beta, axis=axis)
    assert y.dtype == x.dtype and y.shape == x.shape
    if x.dtype == np.float16:  # the float16 rounding of the output, and float32 inside
        tol = 2.0**-10 * np.maximum(1.0, np.abs(ref))
    else:
        tol = (1e-6 if x.dtype == np.float32 else 1e-10) * _scale(ref)
    assert np.all(np.abs(y - ref) <= tol)
    spread = 1e-6 if x.dtype != np.float64 else 1e-10  # of the data's unit spread
    np.testing.assert_allclose(mean, mref, rtol=0, atol=spread)
    np.testing.assert_allclose(rstd, rref, rtol=10 * spread)

    dy = np.cos(3 * x.astype(np.float64)).astype(x.dtype)
    dx, dgamma, dbeta = _sync(*gd.group_norm_backward(
        da.from_array(dy, chunks=chunks), xd, mean, rstd, G, gamma, axis=axis
    ))
    want = numba_gn.group_norm_backward(dy, x, mean, rstd, G, gamma, axis=axis)
    refs = group_norm_backward_ref(dy, x, G, gamma, axis=axis)
    for got, w, r in zip((dx, dgamma, dbeta), want, refs, strict=True):
        assert got.dtype == w.dtype and got.shape == w.shape
        rel = {np.float16: 2e-3, np.float32: 2e-5, np.float64: 1e-11}[got.dtype.type]
        assert np.max(np.abs(got - r), initial=0) <= rel * _scale(r)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "axis", "chunks"),
    [
        ((4, 16, 6, 8), 1, (2, 8, 3, 8)),  # channels first: runs of whole rows, read in place
        ((4, 6, 8, 16), -1, (2, 3, 8, 8)),  # channels last: channel runs of a row, in place
        ((4, 16, 6, 8), 1, (2, 8, 3, 4)),  # rows cut: copied into canonical order
        ((3, 6, 10), (2, 1), (1, 5, 3)),  # two channel axes
    ],
)
def test_blocks_are_read_in_place_with_the_bits_of_a_copy(rng, dtype, shape, axis, chunks):
    """A chunk of `from_array` is a strided view; reading it in place sums in the same order
    as reading a contiguous copy of it, so both give the same bits, forward and backward."""
    x = (1e2 + rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    views = da.from_array(x, chunks=chunks)
    copies = views.map_blocks(np.copy)
    groups = 4 if axis != (2, 1) else 3
    outs = []
    for xd, dyd in ((views, da.from_array(dy, chunks=chunks)), (copies, None)):
        dyd = dyd if dyd is not None else da.from_array(dy, chunks=chunks).map_blocks(np.copy)
        y, mean, rstd = gd.group_norm(xd, groups, axis=axis, return_stats=True)
        dx, dgamma, dbeta = gd.group_norm_backward(dyd, xd, mean, rstd, groups, axis=axis)
        outs.append(_sync(y, mean, rstd, dx, dgamma, dbeta))
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)
    # and the first case really reads in place (no copy of the block)
    if shape == (4, 16, 6, 8) and chunks[-1] == 8:
        setup = gd._Setup(views, groups, None, axis)
        block = gd._canonical(x[:2, :8, :3, :], setup.layout)
        assert np.shares_memory(block.flat, x) and block.strides == (16 * 48, 0, 48)


def test_broadcast_blocks_are_read_correctly(rng):
    """Blocks of a broadcast array (zero strides) along the channels or inside a run."""
    base = (1e2 + rng.standard_normal((4, 16, 1))).astype(np.float32)
    for x in (np.broadcast_to(base, (4, 16, 8)),  # stride 0 inside each channel's run
              np.broadcast_to(base[:, :1, :].repeat(8, 2), (4, 16, 8))):  # ... along channels
        y = _sync(gd.group_norm(da.from_array(x, chunks=(2, 8, 4)), 4, axis=1))[0]
        ref, _, _ = group_norm_ref(np.array(x, dtype=np.float64), 4, axis=1)
        assert np.max(np.abs(y - ref)) <= 1e-6 * _scale(ref)
        # the block tasks themselves, given the broadcast view (Dask may copy it first)
        layout = gd._Setup(x, 4, None, 1).layout
        block, chan = x[:2, :8, :4], np.arange(8)
        np.testing.assert_array_equal(
            gd._moments_block(block, chan, layout=layout),
            gd._moments_block(block.copy(), chan, layout=layout),
        )


def test_blocks_with_negative_strides_are_copied(rng):
    x = (1e2 + rng.standard_normal((4, 16, 6, 8))).astype(np.float32)
    flipped = x[:, ::-1, :, ::-1]
    y = _sync(gd.group_norm(da.from_array(flipped, chunks=(2, 8, 3, 8)), 4, axis=1))[0]
    want = _sync(gd.group_norm(da.from_array(flipped.copy(), chunks=(2, 8, 3, 8)), 4, axis=1))[0]
    np.testing.assert_array_equal(y, want)
    ref, _, _ = group_norm_ref(flipped.astype(np.float64), 4, axis=1)
    assert np.max(np.abs(y - ref)) <= 1e-6 * _scale(ref)


@pytest.mark.parametrize("offset", [1e4, 1e6])
@pytest.mark.parametrize(
    ("shape", "axis", "chunks"),
    [
        ((4, 32, 9, 7), 1, (1, 5, 4, 3)),  # channels-first, groups split across chunks
        ((4, 9, 7, 32), -1, (3, 2, 7, 6)),  # channels-last
        ((3, 6, 5, 8), (3, 1), (2, 4, 2, 3)),  # two channel axes, in reverse order
        ((2, 64, 4096), 1, (1, 20, 3000)),  # long runs: several lane pieces per block
    ],
)
def test_merge_is_stable_far_from_zero(rng, offset, shape, axis, chunks):
    x = (offset + rng.standard_normal(shape)).astype(np.float32)
    cshape = tuple(shape[a] for a in ((axis,) if isinstance(axis, int) else axis))
    gamma = (1 + 0.1 * rng.standard_normal(cshape)).astype(np.float32)
    beta = rng.standard_normal(cshape).astype(np.float32)
    y, mean, rstd = _sync(*gd.group_norm(
        da.from_array(x, chunks=chunks), 8, gamma, beta, axis=axis, return_stats=True
    ))
    ref, mref, rref = group_norm_ref(x, 8, gamma, beta, axis=axis)
    assert np.max(np.abs(y - ref)) <= 1e-6 * _scale(ref)
    assert np.max(np.abs(mean - mref)) <= 1e-6 and np.max(np.abs(rstd / rref - 1)) <= 1e-6


# -- special values and empty shapes ---------------------------------------------------------------


@pytest.mark.parametrize("chunks", [(2, 8, 6), (2, 3, 4), (1, 1, 1)])
def test_nan_and_inf_stay_in_their_sample_and_group(rng, chunks):
    x = rng.standard_normal((3, 8, 6)).astype(np.float32)
    x[1, 5, 2] = np.nan  # sample 1, channel 5 -> group 2 of 4
    x[2, 0, 4] = np.inf  # sample 2, group 0
    y, mean, rstd = _sync(*gd.group_norm(
        da.from_array(x, chunks=chunks), 4, axis=1, return_stats=True
    ))
    finite = np.isfinite(y).reshape(3, 4, 2, 6)
    bad = np.zeros((3, 4), dtype=bool)
    bad[1, 2] = bad[2, 0] = True
    assert np.array_equal(finite.all(axis=(2, 3)), ~bad)
    assert not finite.any(axis=(2, 3))[bad].any()  # the whole group, not only the element
    assert np.array_equal(np.isnan(rstd), bad)
    y0 = numba_gn.group_norm(x, 4, axis=1)
    np.testing.assert_allclose(y[~np.isnan(y0)], y0[~np.isnan(y0)], atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "chunks", "groups"),
    [
        ((0, 8, 6), ((0,), (3, 5), (6,)), 4),  # no samples
        ((3, 0, 6), ((1, 2), (0,), (2, 4)), -1),  # no channels: zero groups
        ((3, 8, 0), ((1, 2), (3, 5), (0,)), 4),  # empty groups: NaN statistics
        ((3, 8, 0), ((1, 2), (8,), (0,)), 4),
        ((5, 8, 6), ((2, 0, 3), (3, 0, 5), (1, 5)), 4),  # empty chunks in a full array
    ],
)
def test_empty_arrays_and_chunks_behave_as_in_memory(shape, chunks, groups):
    x = np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    xd = da.from_array(x, chunks=chunks)
    got = _sync(*gd.group_norm(xd, groups, axis=1, return_stats=True))
    want = numba_gn.group_norm(x, groups, axis=1, return_stats=True)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, atol=1e-6, equal_nan=True)
    mean, rstd = want[1:]
    got = _sync(*gd.group_norm_backward(xd, xd, mean, rstd, groups, axis=1))
    want = numba_gn.group_norm_backward(x, x, mean, rstd, groups, axis=1)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, atol=1e-6)


# -- arguments -------------------------------------------------------------------------------------


def _x():
    return np.linspace(-1.0, 1.0, 2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8)


_STATS = numba_gn.group_norm(_x(), 4, return_stats=True)[1:]

FORWARD_BAD = [
    ("groups 3", lambda x: ((x, 3), {})),
    ("groups 16", lambda x: ((x, 16), {})),
    ("groups True", lambda x: ((x, True), {})),
    ("groups str", lambda x: ((x, "4"), {})),
    ("group_size", lambda x: ((x, 2), {"group_size": 2})),
    ("group_size 0", lambda x: ((x,), {"group_size": 0})),
    ("axis 0", lambda x: ((x, 4), {"axis": 0})),
    ("axis 3", lambda x: ((x, 4), {"axis": 3})),
    ("axis repeated", lambda x: ((x, 4), {"axis": (2, -1)})),
    ("axis float", lambda x: ((x, 4), {"axis": 1.0})),
    ("axis empty", lambda x: ((x, 4), {"axis": ()})),
    ("gamma shape", lambda x: ((x, 4, np.ones(3)), {})),
    ("gamma batch shape", lambda x: ((x, 1, np.ones(2)), {"axis": 1})),
    ("beta dtype", lambda x: ((x, 4, None, np.array(["a"] * 8)), {})),
    ("epsilon", lambda x: ((x, 4), {"epsilon": -1.0})),
    ("epsilon nan", lambda x: ((x, 4), {"epsilon": float("nan")})),
    ("epsilon str", lambda x: ((x, 4), {"epsilon": "1e-3"})),
    ("return_stats", lambda x: ((x, 4), {"return_stats": 1})),
    ("int x", lambda x: ((x.astype(np.int32), 4), {})),
    ("1-d x", lambda x: ((x[0, 0], 4), {})),
]


def _error(fn, args, kwargs):
    with pytest.raises((TypeError, ValueError)) as info:
        fn(*args, **kwargs)
    return type(info.value), str(info.value)


@pytest.mark.parametrize("case", FORWARD_BAD, ids=[c[0] for c in FORWARD_BAD])
def test_forward_errors_are_the_in_memory_ones(case):
    x = _x()
    args, kwargs = case[1](x)
    want = _error(numba_gn.group_norm, args, kwargs)
    lazy = (da.from_array(args[0], chunks=1),) + args[1:]
    assert _error(gd.group_norm, lazy, kwargs) == want
    assert _error(numba_gn.group_norm, lazy, kwargs) == want  # through the dispatch


BACKWARD_BAD = [
    ("dy shape", lambda x, m, r: ((x[:1], x, m, r, 4), {})),
    ("dy dtype", lambda x, m, r: ((x.astype(np.int64), x, m, r, 4), {})),
    ("mean shape", lambda x, m, r: ((x, x, m[:, :2], r, 4), {})),
    ("mean dtype", lambda x, m, r: ((x, x, m.astype(np.int64), r, 4), {})),
    ("rstd shape", lambda x, m, r: ((x, x, m, r.T, 4), {})),
    ("groups", lambda x, m, r: ((x, x, m, r, 3), {})),
    ("gamma", lambda x, m, r: ((x, x, m, r, 4, np.ones(7)), {})),
    ("axis", lambda x, m, r: ((x, x, m, r, 4), {"axis": 0})),
]


@pytest.mark.parametrize("case", BACKWARD_BAD, ids=[c[0] for c in BACKWARD_BAD])
@pytest.mark.parametrize("lazy_args", [(1,), (0, 1), (0, 1, 2, 3)], ids=["x", "dy x", "all"])
def test_backward_errors_are_the_in_memory_ones(case, lazy_args):
    args, kwargs = case[1](_x(), *_STATS)
    want = _error(numba_gn.group_norm_backward, args, kwargs)
    lazy = tuple(
        da.from_array(a, chunks=1) if i in lazy_args else a for i, a in enumerate(args)
    )
    assert _error(gd.group_norm_backward, lazy, kwargs) == want
    assert _error(numba_gn.group_norm_backward, lazy, kwargs) == want


def test_masked_dask_arrays_are_refused_as_in_memory():
    x = _x()
    mask = np.zeros(x.shape, dtype=bool)
    want = _error(numba_gn.group_norm, (np.ma.masked_array(x, mask), 4), {})
    lazy = da.ma.masked_array(da.from_array(x, chunks=1), mask)
    assert _error(gd.group_norm, (lazy, 4), {}) == want


def test_unknown_chunk_sizes_are_refused_when_the_graph_is_built():
    x = da.from_array(_x(), chunks=1)
    x = x[x[:, 0, 0] > -2]  # a boolean index: unknown number of samples
    with pytest.raises(ValueError, match=r"unknown chunk sizes.*compute_chunk_sizes"):
        gd.group_norm(x, 4)


def test_group_norm_of_a_dask_array_is_lazy_and_out_is_refused():
    x = _x()
    xd = da.from_array(x, chunks=(1, 3, 8))
    y, mean, rstd = numba_gn.group_norm(xd, 4, return_stats=True)
    assert all(isinstance(a, da.Array) for a in (y, mean, rstd))
    assert y.chunks == xd.chunks and mean.chunks == ((1, 1), (4,))
    assert np.array_equal(y.compute(), numba_gn.group_norm(x, 4))
    grads = numba_gn.group_norm_backward(np.ones_like(x), xd, mean, rstd, 4)  # numpy dy too
    assert all(isinstance(a, da.Array) for a in grads) and grads[0].chunks == xd.chunks
    with pytest.raises(TypeError, match="`out` is not supported with Dask"):
        numba_gn.group_norm(xd, 4, out=np.empty_like(x))
    with pytest.raises(TypeError, match="`out` is not supported with Dask"):
        numba_gn.group_norm_backward(xd, x, *_STATS, 4, out=np.empty_like(x))


def test_numpy_input_and_dask_parameters(rng):
    x = rng.standard_normal((4, 6, 8)).astype(np.float32)
    gamma = rng.standard_normal(8).astype(np.float32)
    beta = rng.standard_normal(8).astype(np.float32)
    want = numba_gn.group_norm(x, 2, gamma, beta, return_stats=True)
    got = _sync(*gd.group_norm(x, 2, da.from_array(gamma, 3), da.from_array(beta, 5),
                               return_stats=True))
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)
    got = gd.group_norm(da.from_array(x, (2, 3, 3)), 2, da.from_array(gamma, 3), beta)
    np.testing.assert_allclose(got.compute(scheduler="sync"), want[0], atol=1e-6)
    dgrads = gd.group_norm_backward(x, x, da.from_array(want[1], 1), want[2], 2,
                                    da.from_array(gamma, 4))
    assert dgrads[1].dtype == np.float32  # gamma's dtype, as in memory
    want = numba_gn.group_norm_backward(x, x, *want[1:], 2, gamma)
    for g, w in zip(_sync(*dgrads), want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


# -- schedulers and threads ------------------------------------------------------------------------


def _graphs(xd, groups=4, axis=1):
    y, mean, rstd = gd.group_norm(xd, groups, axis=axis, return_stats=True)
    return (y, mean, rstd, *gd.group_norm_backward(np.cos(xd), xd, mean, rstd, groups, axis=axis))


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_schedulers_give_the_same_bits(rng, scheduler):
    x = (1e3 + rng.standard_normal((8, 16, 6, 5))).astype(np.float32)
    for chunks in ((2, 16, 6, 5), (3, 5, 4, 2)):
        xd = da.from_array(x, chunks=chunks)
        want = _sync(*_graphs(xd))
        got = dask.compute(*_graphs(xd), scheduler=scheduler, num_workers=2)
        for g, w in zip(got, want, strict=True):
            assert np.array_equal(g, w)


def test_tasks_run_with_one_numba_thread_unless_told_otherwise(rng, monkeypatch):
    seen: list[int] = []
    in_memory = numba_gn.functional.group_norm

    def spy(*args, **kwargs):
        import numba

        seen.append(numba.get_num_threads())
        return in_memory(*args, **kwargs)

    monkeypatch.setattr(gd._functional, "group_norm", spy)
    xd = da.from_array(rng.standard_normal((8, 4, 6)), chunks=(1, 4, 6))
    dask.compute(*gd.group_norm(xd, 2, axis=1, return_stats=True), scheduler="threads")
    assert seen == [1] * 8  # one task per chunk for y, mean and rstd together
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    seen.clear()
    with dask.config.set({gd.THREADS_KEY: limit}):
        y = gd.group_norm(xd, 2, axis=1)  # read when the graph is built
    y.compute(scheduler="sync")
    assert set(seen) == {limit}
    with dask.config.set({gd.THREADS_KEY: 0}), pytest.raises(ValueError, match="threads-per"):
        gd.group_norm(xd, 2, axis=1)
    assert gd.task_threads() == 1 and gd.task_threads(10**6) == limit


def _worker_kernels():
    """Per worker: kernel cache hits and misses, and the thread rule inside a task."""

    def probe():
        from numba.core.registry import CPUDispatcher

        from numba_gn.kernels import partial, rows, slab

        hits = misses = 0
        for module in (slab, rows, partial):
            for value in vars(module).values():
                if isinstance(value, CPUDispatcher):
                    hits += sum(value.stats.cache_hits.values())
                    misses += sum(value.stats.cache_misses.values())
        return {"hits": hits, "misses": misses}

    return probe


def test_local_cluster_matches_and_workers_load_kernels_from_the_cache(rng):
    distributed = pytest.importorskip("distributed")
    x = (1e3 + rng.standard_normal((8, 16, 6, 5))).astype(np.float32)
    chunkings = ((2, 16, 6, 5), (3, 5, 4, 2))
    # Warm-up here: whatever these graphs need is compiled (and saved) or loaded now.
    want = [_sync(*_graphs(da.from_array(x, chunks=c))) for c in chunkings]
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        resources={"threads": 2},
        # The scheduler's HTTP routes would still take port 8787 and fail the test (a warning,
        # made an error by pytest) when another cluster on the machine holds it.
        scheduler_kwargs={"dashboard_address": ":0"},
    ) as cluster, distributed.Client(cluster) as client:
        for chunks, w in zip(chunkings, want, strict=True):
            got = dask.compute(*_graphs(da.from_array(x, chunks=chunks)))
            for g, ww in zip(got, w, strict=True):
                assert np.array_equal(g, ww)
        counts = client.run(_worker_kernels())
        assert len(counts) == 2
        status = _cache.status()
        if status["path"] is not None and status["writable"]:
            for worker, c in counts.items():
                assert c["misses"] == 0 and c["hits"] > 0, (worker, c)
        # The thread rule on a worker: one, or the `threads` resource the task holds.
        assert client.submit(gd.task_threads, pure=False).result() == 1
        held = client.submit(gd.task_threads, pure=False, resources={"threads": 2}).result()
        import numba

        assert held == min(2, numba.config.NUMBA_NUM_THREADS)


def test_warmup_loads_the_kernels_tasks_use():
    gd.warmup(["float32"])  # in this process; no error, no warning


def test_bfloat16_where_the_in_memory_functions_take_it(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = (100 + rng.standard_normal((4, 8, 6, 5))).astype(ml_dtypes.bfloat16)
    try:
        y0, mean0, rstd0 = numba_gn.group_norm(x, 2, axis=1, return_stats=True)
    except TypeError:
        pytest.skip("this numba_gn does not take bfloat16")
    for chunks in ((1, 8, 6, 5), (2, 3, 4, 2)):
        xd = da.from_array(x, chunks=chunks)
        y, mean, rstd = _sync(*gd.group_norm(xd, 2, axis=1, return_stats=True))
        assert y.dtype == x.dtype
        np.testing.assert_allclose(y.astype(np.float32), y0.astype(np.float32), atol=2**-7)
        np.testing.assert_allclose(mean, mean0, atol=1e-9)
        dx, dgamma, _ = _sync(*gd.group_norm_backward(xd, xd, mean0, rstd0, 2, axis=1))
        assert dx.dtype == x.dtype and dgamma.dtype == np.float32
