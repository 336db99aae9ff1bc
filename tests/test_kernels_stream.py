"""The output loops written in LLVM IR (``numba_gn.kernels._stream``).

Their aligned vector body, scalar head and tail must agree with each other and with plain
arithmetic for every length and every output alignment, with and without streaming stores.
"""

from __future__ import annotations

import numpy as np
import pytest

from numba_gn import _engine, _knobs, group_norm, group_norm_backward
from numba_gn._jit import kernel
from numba_gn.kernels._stream import affine, affine_grad, store_fence


@kernel
def _affine_rows(y, x, lo, n, m, a, b, stream):
    affine(y, x, lo, n, m, a, b, lo, stream)
    store_fence(stream)


@kernel
def _affine_scalar(y, x, lo, n, m, a, b, stream):
    affine(y, x, lo, n, m, a, b, 0, stream)
    store_fence(stream)


@kernel
def _affine_grad_rows(dx, dy, x, lo, n, mh, ml, c1, c2, c3, stream):
    affine_grad(dx, dy, x, lo, n, mh, ml, c1, c2, c3, lo, stream)
    store_fence(stream)


def _fma_reference(t, a, b, dtype):
    """``t*a + b`` rounded once to ``dtype`` (float64 products of float32 are exact)."""
    if dtype == np.float32:
        return (t.astype(np.float64) * a + b).astype(np.float32)
    return t * a + b  # float64 results are compared with a tolerance instead


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stream", [False, True])
def test_affine_every_length_and_offset(dtype, stream, rng):
    size = 80
    x = rng.standard_normal(size).astype(dtype)
    m = rng.standard_normal(size).astype(dtype)
    a = rng.standard_normal(size).astype(dtype)
    b = rng.standard_normal(size).astype(dtype)
    for lo in range(17):  # every float32 position relative to a 64-byte cache line
        for n in range(size - lo):
            y = np.full(size, -7.0, dtype=dtype)
            _affine_rows(y, x, lo, n, m, a, b, stream)
            s = slice(lo, lo + n)
            want = _fma_reference(x[s] - m[s], a[s], b[s], dtype)
            np.testing.assert_allclose(y[s], want, rtol=1e-15 if dtype == np.float64 else 0)
            assert np.all(y[:lo] == -7.0) and np.all(y[lo + n :] == -7.0), (lo, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_affine_streaming_and_scalar_coefficients_agree(dtype, rng):
    size = 203
    x = rng.standard_normal(size).astype(dtype)
    m, a, b = (dtype(v) for v in rng.standard_normal(3))
    got = {}
    for stream in (False, True):
        y = np.empty(size, dtype=dtype)
        _affine_scalar(y, x, 0, size, m, a, b, stream)
        got[stream] = y
    np.testing.assert_array_equal(got[True], got[False])
    np.testing.assert_allclose(got[True], (x - m) * a + b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_affine_grad_matches_formula(dtype, rng):
    size = 75
    dy, x, mh, ml, c1, c2, c3 = (rng.standard_normal(size).astype(dtype) for _ in range(7))
    results = []
    for stream in (False, True):
        for lo in (0, 1, 3):
            dx = np.zeros(size, dtype=dtype)
            _affine_grad_rows(dx, dy, x, lo, size - lo, mh, ml, c1, c2, c3, stream)
            results.append(dx[lo:])
            s = slice(lo, None)
            t = (x[s] - mh[s]) - ml[s]
            want = c1[s] * dy[s] + (c2[s] * t + c3[s])
            np.testing.assert_allclose(dx[s], want, rtol=1e-5, atol=1e-5)
            assert np.all(dx[:lo] == 0)
    np.testing.assert_array_equal(results[0], results[3])


def test_streaming_output_through_a_misaligned_view(rng):
    # An `out` that starts 4 bytes past an allocation: the scalar head must reach the 32-byte
    # boundary before the aligned streaming stores start.
    with _engine.forced(stream=True):
        _misaligned_outputs(rng)


def _misaligned_outputs(rng):
    shape = (4, 16, 16, 64)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, 64).astype(np.float32)
    beta = rng.standard_normal(64).astype(np.float32)
    want, mean, rstd = group_norm(x, 8, gamma, beta, return_stats=True)
    want_dx, _, _ = group_norm_backward(dy, x, mean, rstd, 8, gamma)
    for skip in range(1, 8):
        buf = np.empty(x.size + 8, dtype=np.float32)
        out = buf[skip : skip + x.size].reshape(shape)
        group_norm(x, 8, gamma, beta, out=out)
        np.testing.assert_array_equal(out, want)
        group_norm_backward(dy, x, mean, rstd, 8, gamma, out=out)
        np.testing.assert_array_equal(out, want_dx)


def test_only_large_outputs_stream():
    x = np.zeros((2, 4, 8))
    canon = _engine.Canonical(x, (2,))
    assert not _engine.choose(canon, 4, x.size, _knobs.STREAM_MIN_BYTES - 1).stream
    assert _engine.choose(canon, 4, x.size, _knobs.STREAM_MIN_BYTES).stream


_PLAIN_STORES_CHILD = r"""
import hashlib, json
import numpy as np
from numba_gn import _engine, _knobs, group_norm, group_norm_backward

rng = np.random.default_rng(3)
digests = []
for shape, axis in (((2, 4, 4, 32), -1), ((2, 8, 4, 40), 1)):
    x = (100 + rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    with _engine.forced(strategy="serial", stream=True):
        y, m, r = group_norm(x, 4, axis=axis, return_stats=True)
        dx, dg, db = group_norm_backward(dy, x, m, r, 4, axis=axis)
    digests.append(hashlib.blake2b(b"".join(a.tobytes() for a in (y, dx, dg, db))).hexdigest())
print(json.dumps({"streaming": _knobs.STREAMING_STORES, "digests": digests}))
"""


@pytest.mark.parametrize("switch", ["1", "0"])
def test_streaming_switch_gives_the_same_bits(switch, tmp_path):
    """The IR-free build (``NUMBA_GN_STREAMING_STORES=0``) equals the streaming one bitwise."""
    from _subprocess import check_python, last_json_line

    env = {"NUMBA_GN_STREAMING_STORES": switch, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    report = last_json_line(check_python(_PLAIN_STORES_CHILD, env=env, timeout=300).stdout)
    assert report["streaming"] is (switch == "1")
    here = last_json_line(check_python(_PLAIN_STORES_CHILD, timeout=300).stdout)
    assert here["streaming"] is True
    assert report["digests"] == here["digests"]
    # the two builds keep their machine code apart
    folders = {p.name for p in (tmp_path / "cache").iterdir()}
    assert any(f.endswith("-plain-stores") for f in folders) is (switch == "0")
