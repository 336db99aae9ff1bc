"""Group normalisation on labelled data: `group_norm` for `xarray.DataArray` and `Dataset`.

Dimensions are named instead of numbered: `sample_dim` is the batch dimension and
`channel_dim` the channel dimension (or dimensions), in any order in the array. NumPy-backed
data is computed with `numba_gn.group_norm`; Dask-backed data goes through
`numba_gn.dask.group_norm` and stays lazy. Coordinates, attributes, the name and the encoding
are kept.

This module needs xarray (`pip install numba_gn[xarray]`) and is imported explicitly
(`import numba_gn.xarray`); `import numba_gn` never imports xarray.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Mapping
from typing import Any, Literal, TypeVar, overload

import numpy as np

try:
    import xarray as xr
except ImportError as exc:  # the module is useless without it: say how to get it
    raise ImportError(
        "numba_gn.xarray needs xarray: install it with `pip install xarray` "
        "(or `pip install numba_gn[xarray]`)."
    ) from exc

from numba_gn._checks import show as _show
from numba_gn.functional import group_norm as _group_norm

__all__ = ["group_norm"]

_Obj = TypeVar("_Obj", xr.DataArray, xr.Dataset)

#: The dimension of the statistics' second axis, one entry per group.
GROUP_DIM = "group"

_FLOAT_KINDS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


@overload
def group_norm(
    obj: _Obj,
    groups: int = ...,
    gamma: Any = ...,
    beta: Any = ...,
    *,
    channel_dim: str | tuple[str, ...],
    sample_dim: str,
    epsilon: float = ...,
    group_size: int | None = ...,
    return_stats: Literal[False] = ...,
) -> _Obj: ...
@overload
def group_norm(
    obj: _Obj,
    groups: int = ...,
    gamma: Any = ...,
    beta: Any = ...,
    *,
    channel_dim: str | tuple[str, ...],
    sample_dim: str,
    epsilon: float = ...,
    group_size: int | None = ...,
    return_stats: Literal[True],
) -> tuple[_Obj, _Obj, _Obj]: ...
def group_norm(
    obj,
    groups=32,
    gamma=None,
    beta=None,
    *,
    channel_dim,
    sample_dim,
    epsilon=1e-3,
    group_size=None,
    return_stats=False,
):
    """Group-normalise a DataArray (or each suitable variable of a Dataset), by dimension name.

    Keras semantics, as `numba_gn.group_norm`: the channels (`channel_dim`) are split into
    `groups` contiguous groups, and mean and biased variance are taken per (sample, group)
    over every dimension but `sample_dim`;
    `y = (x - mean) / sqrt(var + epsilon) * gamma + beta`.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        Float16, float32 or float64 data, NumPy- or Dask-backed. The dimensions may be in any
        order. A Dataset is normalised variable by variable: each data variable that has
        `sample_dim` and every `channel_dim` is normalised (and must be float); the other
        variables and all coordinates are returned unchanged.
    groups : int, default 32
        Number of groups the channels are split into; `-1` means one group per channel
        (instance norm), `1` normalises over all non-sample dimensions (layer norm).
    gamma, beta : array or xarray.DataArray, optional
        Scale and offset per channel; None means 1 and 0. A plain array has the shape of the
        channel dimensions, in the order of `channel_dim`. A DataArray has exactly the
        channel dimensions (in any order); where both it and the data have a coordinate on a
        channel dimension, its labels must be those of the data (in any order: it is aligned
        by label), else a ValueError is raised.
    channel_dim : str or tuple of str
        The channel dimension; a tuple of several dimensions forms one channel space,
        flattened in the order given (as `axis` tuples of `numba_gn.group_norm`).
    sample_dim : str
        The batch dimension: statistics are per entry of it.
    epsilon : float, default 1e-3
        Added to the variance inside the square root.
    group_size : int, optional
        Channels per group, instead of `groups` (it wins when set).
    return_stats : bool, default False
        Also return `mean` and `rstd = 1/sqrt(var + epsilon)`.

    Returns
    -------
    y, or (y, mean, rstd) when `return_stats` is true.
        `y` has the type, dimensions (in their original order), dtype, coordinates,
        attributes, name and encoding of `obj`. `mean` and `rstd` are float64 DataArrays
        named `"mean"` and `"rstd"` with dimensions `(sample_dim, "group")` and the
        coordinates of `obj` that lie along `sample_dim` (or are scalar); for a Dataset they
        are Datasets holding one such variable per normalised variable. Dask-backed input
        gives Dask-backed outputs, not computed.

    Notes
    -----
    The attributes are copied as they are: a `units` attribute, for one, no longer describes
    the normalised values.

    Raises
    ------
    TypeError, ValueError
        Naming the offending argument (and, for a Dataset, the variable).
    """
    if not isinstance(obj, (xr.DataArray, xr.Dataset)):
        raise TypeError(
            "`obj` must be an xarray.DataArray or xarray.Dataset, got "
            f"{type(obj).__name__}; use numba_gn.group_norm for plain arrays."
        )
    sizes = obj.sizes
    kind = type(obj).__name__
    sample = _check_sample_dim(sample_dim, sizes, kind)
    channels = _check_channel_dims(channel_dim, sample, sizes, kind)
    gamma = _param(gamma, "gamma", channels, obj)
    beta = _param(beta, "beta", channels, obj)
    if isinstance(obj, xr.DataArray):
        return _normalise(obj, groups, gamma, beta, sample, channels, epsilon, group_size,
                          return_stats, name="`obj`")
    return _normalise_dataset(obj, groups, gamma, beta, sample, channels, epsilon, group_size,
                              return_stats)


# -- arguments -------------------------------------------------------------------------------------


def _dims_text(sizes: Mapping[Hashable, int]) -> str:
    return repr(tuple(sizes))


def _check_sample_dim(sample_dim: object, sizes: Mapping[Hashable, int], kind: str) -> str:
    if not isinstance(sample_dim, str):
        raise TypeError(
            f"`sample_dim` must be a dimension name (a str), got sample_dim={_show(sample_dim)}."
        )
    if sample_dim not in sizes:
        raise ValueError(
            f"`sample_dim`={sample_dim!r} is not a dimension of the {kind} "
            f"(dimensions: {_dims_text(sizes)})."
        )
    return sample_dim


def _check_channel_dims(
    channel_dim: object, sample: str, sizes: Mapping[Hashable, int], kind: str
) -> tuple[str, ...]:
    if isinstance(channel_dim, str):
        dims: tuple[object, ...] = (channel_dim,)
    elif isinstance(channel_dim, (tuple, list)) and len(channel_dim) > 0:
        dims = tuple(channel_dim)
    else:
        raise TypeError(
            "`channel_dim` must be a dimension name (a str) or a non-empty tuple of them, got "
            f"channel_dim={_show(channel_dim)}."
        )
    for d in dims:
        if not isinstance(d, str):
            raise TypeError(
                f"`channel_dim` entries must be dimension names (str), got "
                f"channel_dim={_show(channel_dim)}."
            )
        if d not in sizes:
            raise ValueError(
                f"`channel_dim`={channel_dim!r} names {d!r}, which is not a dimension of the "
                f"{kind} (dimensions: {_dims_text(sizes)})."
            )
        if d == sample:
            raise ValueError(
                f"`channel_dim`={channel_dim!r} names {d!r}, the `sample_dim`; the channel "
                "dimension must be another dimension."
            )
    if len(set(dims)) != len(dims):
        raise ValueError(f"`channel_dim`={channel_dim!r} repeats a dimension.")
    if sample == GROUP_DIM:
        # The statistics have dimensions (sample_dim, "group"): they cannot be the same.
        raise ValueError(
            f"`sample_dim`={sample!r} clashes with the statistics' {GROUP_DIM!r} dimension; "
            "rename it (e.g. with .rename) first."
        )
    return dims  # type: ignore[return-value]


def _param(
    p: object, name: str, channels: tuple[str, ...], obj: xr.DataArray | xr.Dataset
) -> object:
    """gamma/beta as something `numba_gn.group_norm` takes: DataArrays aligned to `obj`.

    A plain array is passed on as it is: the functional API checks its shape and type with
    its own messages.
    """
    if isinstance(p, xr.Variable):
        p = xr.DataArray(p)
    if not isinstance(p, xr.DataArray):
        return p
    if set(p.dims) != set(channels) or len(p.dims) != len(channels):
        raise ValueError(
            f"`{name}` must have exactly the channel dimensions {channels}, "
            f"got a DataArray with dimensions {p.dims}."
        )
    p = p.transpose(*channels)
    for d in channels:
        if p.sizes[d] != obj.sizes[d]:
            raise ValueError(
                f"`{name}` has {p.sizes[d]} entries along {d!r}, but the data has "
                f"{obj.sizes[d]}."
            )
        data_index, p_index = obj.indexes.get(d), p.indexes.get(d)
        if data_index is None or p_index is None or p_index.equals(data_index):
            continue  # nothing to align by: by position
        missing = [v for v in data_index if v not in p_index]
        extra = [v for v in p_index if v not in data_index]
        if missing or extra or not p_index.is_unique or not data_index.is_unique:
            raise ValueError(
                f"`{name}`'s coordinate {d!r} does not match the data's: "
                f"{_labels(missing)} missing from `{name}`, {_labels(extra)} not in the data"
                f"{'' if p_index.is_unique else f', repeated labels in `{name}`'}"
                f"{'' if data_index.is_unique else ', repeated labels in the data'}."
            )
        p = p.reindex({d: data_index})  # same labels in another order: align by label
    return np.asarray(p.values)


def _labels(values: list) -> str:
    if not values:
        return "no labels"
    shown = ", ".join(repr(v) for v in values[:5])
    return f"labels [{shown}{', ...' if len(values) > 5 else ''}]"


# -- computation -----------------------------------------------------------------------------------


def _is_dask(data: object) -> bool:
    # dask.array is imported by whoever made a dask array; if it is not imported, there is none.
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(data, da.Array)


def _normalise(
    arr: xr.DataArray,
    groups: object,
    gamma: object,
    beta: object,
    sample: str,
    channels: tuple[str, ...],
    epsilon: object,
    group_size: object,
    return_stats: object,
    *,
    name: str,
) -> Any:
    """`group_norm` of one DataArray: `y`, or `(y, mean, rstd)` with `return_stats`."""
    if arr.dtype not in _FLOAT_KINDS:
        raise TypeError(
            f"{name} must hold float16, float32 or float64 data, got dtype {arr.dtype}."
        )
    dims = arr.dims
    s = dims.index(sample)
    # Only the sample dimension moves (to axis 0, where the functional API wants the batch):
    # the channel axes may sit anywhere, and data already sample-first is not transposed.
    perm = (s, *(i for i in range(len(dims)) if i != s))
    moved_dims = tuple(dims[i] for i in perm)
    axis = tuple(moved_dims.index(d) for d in channels)
    axis_arg: int | tuple[int, ...] = axis[0] if len(axis) == 1 else axis

    data = arr.data
    kwargs = dict(axis=axis_arg, epsilon=epsilon, group_size=group_size,
                  return_stats=return_stats)
    if _is_dask(data):
        from numba_gn import dask as gn_dask  # only for Dask data: it imports dask

        result = gn_dask.group_norm(_move(data, perm), groups, gamma, beta, **kwargs)
    else:
        result = _group_norm(_move(np.asarray(data), perm), groups, gamma, beta, **kwargs)

    if isinstance(result, tuple):
        y, mean, rstd = result
    else:
        y, mean, rstd = result, None, None
    inverse = tuple(int(i) for i in np.argsort(perm))
    # copy(data=...) keeps the coordinates (untouched: no transposition), attrs, name, encoding.
    out = arr.copy(deep=False, data=_move(y, inverse))
    if mean is None:
        return out
    coords = {k: c.variable for k, c in arr.coords.items()
              if set(c.dims) <= {sample} and k != GROUP_DIM}
    stats = tuple(
        xr.DataArray(v, dims=(sample, GROUP_DIM), coords=coords, name=n)
        for v, n in ((mean, "mean"), (rstd, "rstd"))
    )
    return out, *stats


def _move(a: Any, perm: tuple[int, ...]) -> Any:
    """`a` with its axes permuted (NumPy or Dask), itself when `perm` is the identity."""
    return a if perm == tuple(range(len(perm))) else a.transpose(perm)


def _normalise_dataset(
    ds: xr.Dataset,
    groups: object,
    gamma: object,
    beta: object,
    sample: str,
    channels: tuple[str, ...],
    epsilon: object,
    group_size: object,
    return_stats: object,
) -> Any:
    needed = {sample, *channels}
    names = [k for k, v in ds.data_vars.items() if needed <= set(v.dims)]
    if not names:
        raise ValueError(
            f"No data variable of the Dataset has both `sample_dim`={sample!r} and "
            f"`channel_dim`={channels if len(channels) > 1 else channels[0]!r} "
            f"(variables and their dimensions: "
            f"{ {k: v.dims for k, v in ds.data_vars.items()} })."
        )
    # Every variable is computed before the result is assembled: an error in any of them
    # returns nothing half-done (and `ds` itself is never modified).
    results = {
        k: _normalise(ds[k], groups, gamma, beta, sample, channels, epsilon, group_size,
                      return_stats, name=f"Dataset variable {k!r}")
        for k in names
    }
    out = ds.copy(deep=False)
    for k, r in results.items():
        # Assigning the Variable (not the DataArray) keeps its attrs and encoding and leaves
        # the Dataset's coordinates as they are.
        out[k] = (r[0] if isinstance(r, tuple) else r).variable
    if not any(isinstance(r, tuple) for r in results.values()):
        return out
    mean = xr.Dataset({k: r[1] for k, r in results.items()})
    rstd = xr.Dataset({k: r[2] for k, r in results.items()})
    return out, mean, rstd
