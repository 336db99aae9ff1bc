"""The software float16 conversion (used where the CPU has no F16C) is exact, both directions.

Every one of the 65,536 float16 codes is widened and compared with NumPy bit for bit; the
narrowing direction is checked on every float16 value, on the exact midpoints between
neighbours (ties round to even) and one float32 ulp either side of them, on the subnormal and
overflow boundaries, and on random float32 bit patterns. The hardware path is compared with the
software one on the same inputs.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from numba_gn.kernels import _half


@numba.njit(cache=False)
def _soft_widen(codes):
    out = np.empty(codes.size, dtype=np.float32)
    for i in range(codes.size):
        out[i] = _half.soft_half_to_float(codes[i])
    return out


@numba.njit(cache=False)
def _soft_narrow(values):
    out = np.empty(values.size, dtype=np.uint16)
    for i in range(values.size):
        out[i] = _half.soft_float_to_half(values[i])
    return out


@numba.njit(cache=False)
def _hw_widen(codes):
    out = np.empty(codes.size, dtype=np.float32)
    for i in range(codes.size):
        out[i] = _half._hw_half_to_float(codes[i])
    return out


@numba.njit(cache=False)
def _hw_narrow(values):
    out = np.empty(values.size, dtype=np.uint16)
    for i in range(values.size):
        out[i] = _half._hw_float_to_half(values[i])
    return out


ALL_CODES = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


def _narrowing_inputs() -> np.ndarray:
    halves = ALL_CODES.view(np.float16)
    finite = np.sort(halves[np.isfinite(halves)].astype(np.float32))
    finite = np.unique(finite)
    mid = (finite[:-1].astype(np.float64) + finite[1:].astype(np.float64)) / 2
    mid32 = mid.astype(np.float32)  # exact: a float16 midpoint needs 12 significant bits
    assert np.array_equal(mid32.astype(np.float64), mid)
    up = np.nextafter(mid32, np.float32(np.inf))
    down = np.nextafter(mid32, np.float32(-np.inf))
    edges = np.array(
        [
            65504.0,
            65519.996,
            65520.0,
            65536.0,
            1e30,
            2.0**-24,
            2.0**-25,
            2.0**-26,
            6.1e-5,
            6.097555e-5,
            2.0**-14,
            3e-8,
            1e-45,
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
        ],
        dtype=np.float32,
    )
    rng = np.random.default_rng(0)
    random_bits = rng.integers(0, 1 << 32, size=1 << 20, dtype=np.uint64).astype(np.uint32)
    return np.concatenate(
        [finite, mid32, up, down, edges, -edges, random_bits.view(np.float32)]
    ).astype(np.float32)


def _same_half_bits(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal bits, except that any NaN matches any NaN of the same sign (payloads may differ)."""
    g, e = got.view(np.float16), expected.view(np.float16)
    nan = np.isnan(e)
    assert np.array_equal(np.isnan(g), nan)
    assert np.array_equal(np.signbit(g[nan]), np.signbit(e[nan]))
    bad = np.flatnonzero(got[~nan] != expected[~nan])
    assert bad.size == 0, f"{bad.size} mismatches, first codes {expected[~nan][bad[:5]]}"


def test_widening_every_code_matches_numpy():
    expected = ALL_CODES.view(np.float16).astype(np.float32)
    got = _soft_widen(ALL_CODES)
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), expected[~nan].view(np.uint32))
    # NaNs keep their sign and quiet payload bits (what NumPy and F16C give)
    assert np.array_equal(got[nan].view(np.uint32), expected[nan].view(np.uint32))


def test_narrowing_matches_numpy():
    values = _narrowing_inputs()
    with np.errstate(over="ignore"):  # overflow to +-Inf is part of what is checked
        expected = values.astype(np.float16).view(np.uint16)
    _same_half_bits(_soft_narrow(values), expected)


def test_round_trip_of_every_code():
    back = _soft_narrow(_soft_widen(ALL_CODES))
    _same_half_bits(back, ALL_CODES)


@pytest.mark.skipif(not _half._hardware_half(), reason="no hardware float16 conversion here")
def test_hardware_and_software_paths_agree():
    values = _narrowing_inputs()
    _same_half_bits(_hw_narrow(values), _soft_narrow(values))
    wide_hw, wide_soft = _hw_widen(ALL_CODES), _soft_widen(ALL_CODES)
    nan = np.isnan(wide_soft)
    assert np.array_equal(np.isnan(wide_hw), nan)
    assert np.array_equal(wide_hw[~nan].view(np.uint32), wide_soft[~nan].view(np.uint32))
