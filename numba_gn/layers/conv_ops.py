"""Channels-last convolution as one autograd op: im2col (a strided view, one copy) + BLAS matmul.

Measured choice (2-core machine, float32, the demo's two convolutions at batch 64): building the
patch matrix with ``as_strided`` over a zero-padded copy and one ``reshape`` copy took 19-47 us,
a Numba im2col kernel 32-93 us, so the forward stays in NumPy; the matmul then runs in BLAS at
close to peak. The backward's scatter of patch gradients (col2im) is the other way round: one
strided NumPy ``+=`` per kernel tap took ~130 us, the Numba kernel in
:mod:`~numba_gn.layers.conv_kernels` ~35 us. Python overhead is one ``Function.apply`` per
convolution: padding, bias and the 1-D case live inside the op.

``"same"`` padding follows Keras (and TensorFlow/JAX) exactly: ``out = ceil(in / stride)``,
``total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - in, 0)``, ``total // 2``
before and the rest after, so an odd total puts the extra row/column at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from numba_gn.autograd import Context, Function, Tensor
from numba_gn.layers.conv_kernels import col2im

__all__ = ["Conv", "conv", "conv_output_length", "conv_padding"]


def conv_padding(
    size: int, kernel: int, stride: int, dilation: int, padding: str
) -> tuple[int, int, int]:
    """``(pad_before, pad_after, output_size)`` of one spatial axis, with Keras's arithmetic.

    ``"causal"`` (Keras's Conv1D option) pads ``(kernel - 1) * dilation`` before, none after.
    Raises ``ValueError`` when a "valid" convolution would have no output.
    """
    span = (kernel - 1) * dilation + 1  # extent of the dilated kernel
    if padding == "same":
        out = -(-size // stride)  # ceil division
        total = max((out - 1) * stride + span - size, 0)
        return total // 2, total - total // 2, out
    if padding == "valid":
        out = (size - span) // stride + 1
        if out <= 0:
            raise ValueError(
                f"Computed output size would be zero or negative: input size {size}, kernel "
                f"size {kernel}, dilation {dilation}, stride {stride}, padding 'valid'."
            )
        return 0, 0, out
    if padding == "causal":  # left padding only: output t sees inputs <= t
        return span - 1, 0, (size - 1) // stride + 1
    raise ValueError(f"padding must be 'valid', 'same' or 'causal', got {padding!r}.")


def conv_output_length(
    size: int | None, kernel: int, stride: int, dilation: int, padding: str
) -> int | None:
    """Output length of one spatial axis (None stays None, as in Keras's shape inference)."""
    if size is None:
        return None
    return conv_padding(size, kernel, stride, dilation, padding)[2]


def _patches(
    xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, oh: int, ow: int
) -> np.ndarray:
    """Read-only view (N, oh, ow, kh, kw, C) of the windows of a padded (N, H, W, C) array."""
    n, _, _, c = xp.shape
    s0, s1, s2, s3 = xp.strides
    return as_strided(
        xp,
        shape=(n, oh, ow, kh, kw, c),
        strides=(s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3),
        writeable=False,
    )


class Conv(Function):
    """Convolution of channels-last ``x`` with ``kernel`` (+ ``bias``), 1 or 2 spatial axes.

    ``x``: (N, W, C) or (N, H, W, C); ``kernel``: (kw, C, F) or (kh, kw, C, F); ``bias``: (F,)
    or None. Static keyword arguments: ``strides``, ``dilation`` (one int per spatial axis) and
    ``padding`` ("valid" or "same"). Output: (N, [OH,] OW, F) in ``x``'s dtype.
    """

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        kernel: np.ndarray,
        bias: np.ndarray | None,
        *,
        strides: tuple[int, ...],
        dilation: tuple[int, ...],
        padding: str,
    ) -> np.ndarray:
        """Pad, gather the patches (im2col), one matmul, add the bias."""
        x = np.asarray(x)
        kernel = np.asarray(kernel)
        one_d = x.ndim == 3
        if one_d:  # a 1-D convolution is a 2-D one with a height-1 image and kernel
            x = x[:, None]
            kernel = kernel[None]
            strides, dilation = (1, *strides), (1, *dilation)
        if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != x.shape[3]:
            raise ValueError(
                f"Conv expects x (N, [H,] W, C) and kernel ([kh,] kw, C, F) with matching C; "
                f"got x {x.shape} and kernel {kernel.shape}."
            )
        n, h, w, c = x.shape
        kh, kw, _, f = kernel.shape
        sh, sw = strides
        dh, dw = dilation
        # "causal" only concerns the time axis of a 1-D convolution, never the added height.
        pt, pb, oh = conv_padding(h, kh, sh, dh, "valid" if padding == "causal" else padding)
        pl, pr, ow = conv_padding(w, kw, sw, dw, padding)
        if pt or pb or pl or pr:
            xp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=x.dtype)
            xp[:, pt : pt + h, pl : pl + w] = x
        else:
            xp = x
        # One copy into (N*oh*ow, kh*kw*C), the row order BLAS wants; none for 1x1 kernels.
        cols = _patches(xp, kh, kw, sh, sw, dh, dw, oh, ow).reshape(n * oh * ow, kh * kw * c)
        k2 = kernel.reshape(kh * kw * c, f)
        out = cols @ k2
        if bias is not None:
            out += bias
        ctx.save_for_backward(cols, k2)
        ctx.geometry = (x.shape, xp.shape, kernel.shape, (pt, pl), (oh, ow), one_d)
        ctx.steps = (sh, sw, dh, dw)
        ctx.has_bias = bias is not None
        return out.reshape((n, ow, f) if one_d else (n, oh, ow, f))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        """``dx`` through col2im, ``dkernel = cols.T @ g``, ``dbias = sum(g)``."""
        cols, k2 = ctx.saved_tensors
        x_shape, xp_shape, k_shape, (pt, pl), (oh, ow), one_d = ctx.geometry
        need_x, need_k, need_b = ctx.needs_input_grad
        f = k_shape[3]
        g2 = g.reshape(-1, f)
        dk = db = dx = None
        if need_k:
            dk = (cols.T @ g2).reshape(k_shape[1:] if one_d else k_shape)
        if need_b and ctx.has_bias:
            # ones @ g: one BLAS call, 25x faster than g.sum(axis=0) on a (4096, 16) array
            db = np.ones(g2.shape[0], dtype=g2.dtype) @ g2
        if need_x:
            dx = _col2im(g2 @ k2.T, x_shape, xp_shape, k_shape, pt, pl, oh, ow, ctx.steps)
            if one_d:
                dx = dx[:, 0]
        return dx, dk, db


def _col2im(
    dcols: np.ndarray,
    x_shape: tuple[int, ...],
    xp_shape: tuple[int, ...],
    k_shape: tuple[int, ...],
    pt: int,
    pl: int,
    oh: int,
    ow: int,
    steps: tuple[int, int, int, int],
) -> np.ndarray:
    """Adjoint of im2col: add each patch gradient back where its window read the input."""
    n, h, w, c = x_shape
    kh, kw = k_shape[:2]
    sh, sw, dh, dw = steps
    if kh == kw == 1 and sh == sw == 1 and xp_shape == x_shape:
        return dcols.reshape(x_shape)  # 1x1 kernel: the patches are the pixels
    dxp = col2im(dcols, xp_shape, (kh, kw), (sh, sw), (dh, dw), (oh, ow))  # type: ignore[arg-type]
    if xp_shape == x_shape:
        return dxp
    return dxp[:, pt : pt + h, pl : pl + w]


def conv(
    x: Any,
    kernel: Any,
    bias: Any = None,
    strides: int | Sequence[int] = 1,
    padding: str = "valid",
    dilation_rate: int | Sequence[int] = 1,
) -> Tensor:
    """Differentiable channels-last convolution (1-D for rank-3 ``x``, 2-D for rank 4)."""
    rank = np.ndim(x.data if isinstance(x, Tensor) else x) - 2
    return Conv.apply(
        x,
        kernel,
        bias,
        strides=_ints(strides, rank, "strides"),
        dilation=_ints(dilation_rate, rank, "dilation_rate"),
        padding=padding,
    )


def _ints(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """``value`` as a tuple of ``n`` positive ints (an int is repeated)."""
    t = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(t) != n or not all(isinstance(v, (int, np.integer)) and v > 0 for v in t):
        raise ValueError(f"{name} must be a positive int or {n} positive ints, got {value!r}.")
    return tuple(int(v) for v in t)

