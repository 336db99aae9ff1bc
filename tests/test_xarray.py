"""`numba_gn.xarray.group_norm`: group normalisation of DataArrays and Datasets by dimension name.

Every result is checked against `numba_gn.group_norm` on the raw array with the matching axes;
the rest is about what labelled data adds: dimension order, coordinates, attributes, Datasets,
DataArray parameters aligned by label, Dask-backed data kept lazy, and the error messages.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from _subprocess import check_python, last_json_line

import numba_gn

xr = pytest.importorskip("xarray")
gx = pytest.importorskip("numba_gn.xarray")

DIMS = ("time", "channel", "lat", "lon")


def _array(rng, dims=DIMS, shape=(3, 8, 4, 5), dtype=np.float32) -> xr.DataArray:
    """A climate-style field with index, non-index, 2-D and scalar coordinates."""
    sizes = dict(zip(DIMS, shape, strict=True))  # `shape` is in DIMS order; `dims` transposes
    x = rng.standard_normal(shape).astype(dtype) * 3 + 1
    coords = {
        "time": np.arange(sizes["time"]) * 6,
        "channel": [f"c{i}" for i in range(sizes["channel"])],
        "lat": np.linspace(-60.0, 60.0, sizes["lat"]),
        "month": ("time", np.arange(sizes["time"]) % 12 + 1),  # along the sample dim only
        "land": (("lat", "lon"), rng.random((sizes["lat"], sizes["lon"])) > 0.5),
        "run": 7,  # scalar
    }
    da = xr.DataArray(x, dims=DIMS, coords=coords, name="temperature",
                      attrs={"units": "K", "source": "test"})
    da.encoding["dtype"] = "float32"
    return da.transpose(*dims)


def _axes(da: xr.DataArray, sample: str, channels: tuple[str, ...]) -> tuple[np.ndarray, tuple]:
    """The raw data with `sample` moved first, and the channel axes in that layout."""
    order = (sample, *(d for d in da.dims if d != sample))
    return da.transpose(*order).values, tuple(order.index(d) for d in channels)


# -- values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dims",
    [DIMS, ("lat", "channel", "lon", "time"), ("lon", "time", "lat", "channel")],
    ids=["sample-first", "sample-last", "channel-last"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_functional_in_any_dimension_order(rng, dims, dtype):
    da = _array(rng, dims, dtype=dtype)
    gamma = rng.standard_normal(8)
    beta = rng.standard_normal(8)
    y, mean, rstd = gx.group_norm(da, 4, gamma, beta, channel_dim="channel", sample_dim="time",
                                  epsilon=1e-2, return_stats=True)
    raw, (axis,) = _axes(da, "time", ("channel",))
    ref, ref_mean, ref_rstd = numba_gn.group_norm(raw, 4, gamma, beta, axis=axis, epsilon=1e-2,
                                                  return_stats=True)
    assert y.dims == dims and y.dtype == dtype
    np.testing.assert_array_equal(y.transpose("time", ...).values, ref)
    np.testing.assert_array_equal(mean.values, ref_mean)
    np.testing.assert_array_equal(rstd.values, ref_rstd)
    # And the normalisation itself: without gamma/beta, each (time, group) block has mean 0
    # and standard deviation 1.
    plain = gx.group_norm(da.astype(np.float64), 2, channel_dim="channel", sample_dim="time",
                          epsilon=0.0)
    blocks = plain.transpose("time", "channel", ...).values.reshape(3, 2, -1)
    np.testing.assert_allclose(blocks.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(blocks.std(-1), 1, rtol=1e-10)


def test_group_size_and_instance_and_layer_norm(rng):
    da = _array(rng, dtype=np.float64)
    raw, (axis,) = _axes(da, "time", ("channel",))
    for kwargs, groups in (({"group_size": 2}, 4), ({"groups": -1}, 8), ({"groups": 1}, 1)):
        y = gx.group_norm(da, channel_dim="channel", sample_dim="time", **kwargs)
        np.testing.assert_array_equal(y.values, numba_gn.group_norm(raw, groups, axis=axis))


@pytest.mark.parametrize("channels", [("channel", "lat"), ("lat", "channel")])
def test_tuple_channel_dims_flatten_in_the_order_given(rng, channels):
    da = _array(rng, ("lon", "channel", "time", "lat"), dtype=np.float64)
    shape = tuple(da.sizes[d] for d in channels)
    gamma = rng.standard_normal(shape)
    y, mean, _ = gx.group_norm(da, 4, gamma, channel_dim=channels, sample_dim="time",
                               return_stats=True)
    raw, axis = _axes(da, "time", channels)
    ref, ref_mean, _ = numba_gn.group_norm(raw, 4, gamma, axis=axis, return_stats=True)
    np.testing.assert_array_equal(y.transpose("time", ...).values, ref)
    np.testing.assert_array_equal(mean.values, ref_mean)
    # The order matters: groups of 8 contiguous (channel, lat) pairs are not those of (lat,
    # channel), so the two orders give different statistics.
    other = gx.group_norm(da, 4, channel_dim=channels[::-1], sample_dim="time",
                          return_stats=True)[1]
    assert not np.allclose(other.values, mean.values)
    # A list works as a tuple does.
    y_list = gx.group_norm(da, 4, gamma, channel_dim=list(channels), sample_dim="time")
    np.testing.assert_array_equal(y_list.values, y.values)


# -- what labelled data keeps ----------------------------------------------------------------------


def test_coordinates_attributes_name_and_encoding_are_kept(rng):
    da = _array(rng, ("lat", "channel", "lon", "time"))
    before = da.copy(deep=True)
    y = gx.group_norm(da, 4, channel_dim="channel", sample_dim="time")
    assert isinstance(y, xr.DataArray)
    assert y.dims == da.dims and y.shape == da.shape
    assert y.name == "temperature"
    assert y.attrs == {"units": "K", "source": "test"}
    assert y.encoding == {"dtype": "float32"}
    assert set(y.coords) == set(da.coords)
    for name, coord in da.coords.items():
        xr.testing.assert_identical(y.coords[name], coord)
    assert list(y.indexes) == list(da.indexes)
    xr.testing.assert_identical(da, before)  # the input is not modified
    assert da.encoding == before.encoding


def test_stats_are_per_sample_and_group_with_the_sample_coordinates(rng):
    da = _array(rng, ("channel", "lat", "time", "lon"))
    y, mean, rstd = gx.group_norm(da, 2, channel_dim="channel", sample_dim="time",
                                  return_stats=True)
    for stat, name in ((mean, "mean"), (rstd, "rstd")):
        assert stat.name == name and stat.dims == ("time", "group")
        assert stat.shape == (3, 2) and stat.dtype == np.float64
        # Coordinates along the sample dimension, and scalar ones; none of the others.
        assert set(stat.coords) == {"time", "month", "run"}
        np.testing.assert_array_equal(stat["time"].values, da["time"].values)
        np.testing.assert_array_equal(stat["month"].values, da["month"].values)
    x = da.transpose("time", "channel", ...).values.astype(np.float64).reshape(3, 2, -1)
    np.testing.assert_allclose(mean.values, x.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(rstd.values, 1 / np.sqrt(x.var(-1) + 1e-3), rtol=1e-5)
    np.testing.assert_allclose(mean.sel(time=6).values, x[1].mean(-1), rtol=1e-6)


def test_sample_dim_named_group_is_refused(rng):
    da = _array(rng).rename(time="group")
    with pytest.raises(ValueError, match="`sample_dim`='group' clashes"):
        gx.group_norm(da, 4, channel_dim="channel", sample_dim="group")


# -- gamma and beta as DataArrays ------------------------------------------------------------------


def test_gamma_beta_dataarrays_are_aligned_by_label(rng):
    da = _array(rng, dtype=np.float64)
    labels = da["channel"].values
    g = rng.standard_normal(8)
    b = rng.standard_normal(8)
    gamma = xr.DataArray(g, dims="channel", coords={"channel": labels})
    beta = xr.DataArray(b, dims="channel", coords={"channel": labels})
    ref = gx.group_norm(da, 4, g, b, channel_dim="channel", sample_dim="time")
    same = gx.group_norm(da, 4, gamma, beta, channel_dim="channel", sample_dim="time")
    np.testing.assert_array_equal(same.values, ref.values)
    # The labels in another order: aligned by label, not by position.
    perm = rng.permutation(8)
    shuffled = gx.group_norm(da, 4, gamma.isel(channel=perm), beta.isel(channel=perm),
                             channel_dim="channel", sample_dim="time")
    np.testing.assert_array_equal(shuffled.values, ref.values)
    # No coordinate on the parameter (or on the data): by position.
    bare = gx.group_norm(da, 4, xr.DataArray(g, dims="channel"), beta.variable,
                         channel_dim="channel", sample_dim="time")
    np.testing.assert_array_equal(bare.values, ref.values)
    unlabelled = gx.group_norm(da.drop_vars("channel"), 4, gamma.isel(channel=perm), b,
                               channel_dim="channel", sample_dim="time")
    np.testing.assert_array_equal(unlabelled.values,
                                  gx.group_norm(da, 4, g[perm], b, channel_dim="channel",
                                                sample_dim="time").values)


def test_gamma_dataarray_over_tuple_channel_dims_in_either_order(rng):
    da = _array(rng, dtype=np.float64)
    g = rng.standard_normal((8, 4))
    gamma = xr.DataArray(g, dims=("channel", "lat"),
                         coords={"channel": da["channel"].values, "lat": da["lat"].values})
    ref = gx.group_norm(da, 4, g, channel_dim=("channel", "lat"), sample_dim="time")
    for p in (gamma, gamma.transpose("lat", "channel")):
        y = gx.group_norm(da, 4, p, channel_dim=("channel", "lat"), sample_dim="time")
        np.testing.assert_array_equal(y.values, ref.values)


def test_gamma_dataarray_mismatches_are_clear_errors(rng):
    da = _array(rng)
    labels = list(da["channel"].values)
    kw = {"channel_dim": "channel", "sample_dim": "time"}
    wrong = xr.DataArray(np.ones(8), dims="channel", coords={"channel": labels[:7] + ["zz"]})
    with pytest.raises(ValueError, match=r"`gamma`'s coordinate 'channel' does not match the "
                                         r"data's: labels \['c7'\] missing from `gamma`, "
                                         r"labels \['zz'\] not in the data"):
        gx.group_norm(da, 4, wrong, **kw)
    with pytest.raises(ValueError, match=r"`beta` has 6 entries along 'channel', but the data "
                                         r"has 8"):
        gx.group_norm(da, 4, None, xr.DataArray(np.zeros(6), dims="channel"), **kw)
    with pytest.raises(ValueError, match=r"`gamma` must have exactly the channel dimensions "
                                         r"\('channel',\), got a DataArray with dimensions "
                                         r"\('lat',\)"):
        gx.group_norm(da, 4, xr.DataArray(np.ones(4), dims="lat"), **kw)
    with pytest.raises(ValueError, match="`gamma` must have exactly the channel dimensions"):
        gx.group_norm(da, 4, xr.DataArray(np.ones((8, 4)), dims=("channel", "lat")), **kw)
    repeated = xr.DataArray(np.ones(8), dims="channel", coords={"channel": labels[:7] + ["c0"]})
    with pytest.raises(ValueError, match="repeated labels in `gamma`"):
        gx.group_norm(da, 4, repeated, **kw)


# -- Datasets --------------------------------------------------------------------------------------


def _dataset(rng) -> xr.Dataset:
    t = _array(rng)
    noise = rng.standard_normal(t.shape)
    q = (t.astype(np.float64) ** 2 + noise).transpose("lon", "lat", "channel", "time")
    return xr.Dataset(
        {
            "t": t,
            "q": q,
            "pressure": t.isel(channel=0, drop=True),  # no channel dimension
            "weights": ("channel", rng.random(8)),  # no sample dimension
            "flag": ("time", np.array([1, 0, 1])),  # neither, and not float
        },
        attrs={"title": "test"},
    )


def test_dataset_normalises_each_variable_with_both_dims(rng):
    ds = _dataset(rng)
    ds["q"].attrs["units"] = "kg/kg"
    before = ds.copy(deep=True)
    gamma = rng.standard_normal(8)
    out, mean, rstd = gx.group_norm(ds, 2, gamma, channel_dim="channel", sample_dim="time",
                                    return_stats=True)
    assert isinstance(out, xr.Dataset) and list(out.data_vars) == list(ds.data_vars)
    assert out.attrs == {"title": "test"}
    for name in ("t", "q"):
        expected, m, r = gx.group_norm(ds[name], 2, gamma, channel_dim="channel",
                                       sample_dim="time", return_stats=True)
        xr.testing.assert_identical(out[name], expected.rename(name))
        assert out[name].dims == ds[name].dims and out[name].attrs == ds[name].attrs
        xr.testing.assert_identical(mean[name], m.rename(name))
        xr.testing.assert_identical(rstd[name], r.rename(name))
    for name in ("pressure", "weights", "flag"):
        xr.testing.assert_identical(out[name], ds[name])
    assert set(mean.data_vars) == set(rstd.data_vars) == {"t", "q"}
    xr.testing.assert_identical(out.coords.to_dataset(), ds.coords.to_dataset())
    xr.testing.assert_identical(ds, before)
    # Without stats: just the Dataset.
    xr.testing.assert_identical(gx.group_norm(ds, 2, gamma, channel_dim="channel",
                                              sample_dim="time"), out)


def test_dataset_errors_name_the_variable_and_change_nothing(rng):
    ds = _dataset(rng)
    ds["counts"] = ds["t"].astype(np.int32)
    before = ds.copy(deep=True)
    with pytest.raises(TypeError, match="Dataset variable 'counts' must hold float16, float32 "
                                        "or float64 data, got dtype int32"):
        gx.group_norm(ds, 2, channel_dim="channel", sample_dim="time")
    xr.testing.assert_identical(ds, before)
    with pytest.raises(ValueError, match="No data variable of the Dataset has both "
                                         "`sample_dim`='time' and `channel_dim`='channel'"):
        gx.group_norm(ds[["pressure", "weights"]], 1, channel_dim="channel", sample_dim="time")
    with pytest.raises(ValueError, match="`sample_dim`='x' is not a dimension of the Dataset"):
        gx.group_norm(ds, 2, channel_dim="channel", sample_dim="x")


# -- errors ----------------------------------------------------------------------------------------


def test_errors_name_the_argument(rng):
    da = _array(rng)
    kw = {"channel_dim": "channel", "sample_dim": "time"}
    with pytest.raises(TypeError, match="`obj` must be an xarray.DataArray or xarray.Dataset, "
                                        "got ndarray; use numba_gn.group_norm"):
        gx.group_norm(da.values, 4, **kw)
    with pytest.raises(ValueError, match=r"`sample_dim`='x' is not a dimension of the DataArray "
                                         r"\(dimensions: \('time', 'channel', 'lat', 'lon'\)\)"):
        gx.group_norm(da, 4, channel_dim="channel", sample_dim="x")
    with pytest.raises(ValueError, match="`channel_dim`=\\('channel', 'depth'\\) names 'depth', "
                                         "which is not a dimension of the DataArray"):
        gx.group_norm(da, 4, channel_dim=("channel", "depth"), sample_dim="time")
    with pytest.raises(ValueError, match="names 'time', the `sample_dim`"):
        gx.group_norm(da, 4, channel_dim=("channel", "time"), sample_dim="time")
    with pytest.raises(ValueError, match="repeats a dimension"):
        gx.group_norm(da, 4, channel_dim=("channel", "channel"), sample_dim="time")
    with pytest.raises(TypeError, match="`sample_dim` must be a dimension name"):
        gx.group_norm(da, 4, channel_dim="channel", sample_dim=0)
    for bad in (1, (), None, ("channel", 2)):
        with pytest.raises(TypeError, match="`channel_dim`"):
            gx.group_norm(da, 4, channel_dim=bad, sample_dim="time")
    with pytest.raises(TypeError, match="missing 2 required keyword-only arguments"):
        gx.group_norm(da, 4)
    # The functional API's own messages, naming its arguments.
    with pytest.raises(ValueError, match=r"The number of channels \(8\) must be a multiple of "
                                         r"the number of groups \(`groups`=3\)"):
        gx.group_norm(da, 3, **kw)
    with pytest.raises(ValueError, match=r"Number of groups \(16\) cannot be more than the "
                                         r"number of channels \(8\)"):
        gx.group_norm(da, 16, **kw)
    with pytest.raises(ValueError, match="`group_size`=3 must divide the number of channels"):
        gx.group_norm(da, group_size=3, **kw)
    with pytest.raises(ValueError, match=r"`gamma` must have shape \(8,\)"):
        gx.group_norm(da, 4, np.ones(4), **kw)
    with pytest.raises(ValueError, match="`epsilon` must be finite and >= 0"):
        gx.group_norm(da, 4, epsilon=-1.0, **kw)
    with pytest.raises(TypeError, match="`return_stats`"):
        gx.group_norm(da, 4, return_stats="yes", **kw)
    with pytest.raises(TypeError, match="`obj` must hold float16, float32 or float64 data, got "
                                        "dtype int64"):
        gx.group_norm(da.astype(np.int64), 4, **kw)


# -- Dask-backed data ------------------------------------------------------------------------------


def _forbid_compute(*args, **kwargs):
    raise AssertionError("the graph was computed")


def test_dask_data_goes_to_numba_gn_dask_untouched_and_comes_back_lazy(rng, monkeypatch):
    """The dispatch, with a stand-in for `numba_gn.dask` that records its call."""
    dask = pytest.importorskip("dask")
    dsa = pytest.importorskip("dask.array")
    calls = []

    def fake_group_norm(x, groups=32, gamma=None, beta=None, *, axis=-1, epsilon=1e-3,
                        group_size=None, return_stats=False):
        calls.append((x, groups, axis, epsilon, group_size, return_stats))
        res = numba_gn.group_norm(np.asarray(x.compute(scheduler="sync")), groups, gamma, beta,
                                  axis=axis, epsilon=epsilon, group_size=group_size,
                                  return_stats=return_stats)
        if return_stats:
            return tuple(dsa.from_array(a, chunks=a.shape) for a in res)
        return dsa.from_array(res, chunks=res.shape)

    fake = types.ModuleType("numba_gn.dask")
    fake.group_norm = fake_group_norm
    monkeypatch.setitem(sys.modules, "numba_gn.dask", fake)
    monkeypatch.setattr(numba_gn, "dask", fake, raising=False)

    da = _array(rng, ("lat", "channel", "time", "lon")).chunk({"time": 1})
    y, mean, rstd = gx.group_norm(da, 4, channel_dim="channel", sample_dim="time",
                                  epsilon=1e-2, return_stats=True)
    (x, groups, axis, eps, size, stats), = calls
    assert isinstance(x, dsa.Array) and x.shape == (3, 4, 8, 5)  # time moved first
    assert (groups, axis, eps, size, stats) == (4, 2, 1e-2, None, True)
    assert all(isinstance(a.data, dsa.Array) for a in (y, mean, rstd))
    assert y.dims == da.dims and mean.dims == ("time", "group")
    with dask.config.set(scheduler="sync"):
        raw, (ax,) = _axes(da.compute(), "time", ("channel",))
        ref = numba_gn.group_norm(raw, 4, axis=ax, epsilon=1e-2)
        np.testing.assert_array_equal(y.transpose("time", ...).values, ref)


def test_numpy_data_does_not_import_numba_gn_dask():
    res = check_python(
        """
        import json, sys
        import numpy as np
        import numba_gn
        light = "xarray" not in sys.modules
        import xarray as xr
        import numba_gn.xarray
        da = xr.DataArray(np.ones((2, 4), np.float32), dims=("n", "c"))
        numba_gn.xarray.group_norm(da, 2, channel_dim="c", sample_dim="n")
        print(json.dumps({"light": light, "dask_module": "numba_gn.dask" in sys.modules}))
        """
    )
    assert last_json_line(res.stdout) == {"light": True, "dask_module": False}


@pytest.fixture
def gn_dask():
    pytest.importorskip("dask.array")
    return pytest.importorskip("numba_gn.dask")


@pytest.mark.parametrize("chunks", [{"time": 1}, {"time": 2, "lat": 2, "channel": 4}],
                         ids=["by-sample", "by-block"])
@pytest.mark.parametrize("dims", [DIMS, ("lat", "channel", "lon", "time")])
def test_dask_backed_matches_numpy_backed_and_stays_lazy(rng, gn_dask, dims, chunks):
    import dask
    import dask.array as dsa

    da = _array(rng, dims, dtype=np.float64)
    lazy = da.chunk(chunks)
    gamma = xr.DataArray(rng.standard_normal(8), dims="channel",
                         coords={"channel": da["channel"].values})
    with dask.config.set(scheduler=_forbid_compute):
        y, mean, rstd = gx.group_norm(lazy, 4, gamma, channel_dim="channel", sample_dim="time",
                                      return_stats=True)
    assert all(isinstance(a.data, dsa.Array) for a in (y, mean, rstd))
    assert y.dims == dims and y.chunks is not None
    assert y.attrs == da.attrs and y.name == da.name
    ref, ref_mean, ref_rstd = gx.group_norm(da, 4, gamma, channel_dim="channel",
                                            sample_dim="time", return_stats=True)
    with dask.config.set(scheduler="sync"):
        xr.testing.assert_allclose(y.compute(), ref, rtol=1e-12, atol=1e-12)
        xr.testing.assert_allclose(mean.compute(), ref_mean, rtol=1e-12, atol=1e-12)
        xr.testing.assert_allclose(rstd.compute(), ref_rstd, rtol=1e-12, atol=1e-12)
