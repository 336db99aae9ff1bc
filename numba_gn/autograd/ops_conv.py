"""Convolutions as autograd ops: im2col (a strided view, one copy), BLAS matmul, col2im.

Three ops share the machinery, on 1 or 2 spatial axes, channels-last or channels-first:

* `Conv` (Keras's `ops.conv`, grouped convolutions included): the forward gathers the
  input's windows into a patch matrix (im2col) and multiplies it by the kernel; the backward
  multiplies the output gradient by the kernel's transpose and scatters the patch rows back
  onto the input (col2im, the Numba kernel in `numba_gn.kernels.conv`).
* `ConvTranspose` (Keras's `ops.conv_transpose`): the adjoint of a convolution, so its
  forward is a convolution's backward-data (matmul, then col2im) and its input gradient a
  convolution's forward (im2col of the gradient, then matmul).
* `DepthwiseConv` (Keras's `ops.depthwise_conv`): a grouped convolution with one group per
  input channel, the kernel reshaped as Keras's backends reshape it.

3x3, stride-1, undilated, ungrouped `Conv`s with enough channels take a Winograd F(2x2, 3x3)
path instead of im2col (about 2.25x less matmul work, no 9x patch matrix kept for the
backward); the rule and its measurements are with `_use_winograd` below.

Each op is one `Function.apply`: padding, bias, the 1-D case (a height-1 image and kernel) and
the channels-first layout (a transposed view read by the im2col copy, so it costs nothing on
the way in and one copy of the output on the way out) all live inside it.

`"same"` padding follows Keras (and TensorFlow/JAX) exactly: `out = ceil(in / stride)`,
`total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - in, 0)`, `total // 2`
before and the rest after, so an odd total puts the extra row/column at the end. Transposed
convolutions use Keras's output lengths (the `deconv_output_length` arithmetic) and the
padding Keras's JAX and NumPy backends derive from them.
"""

# Measured choice (2-core machine, float32, the demo's two convolutions at batch 64): building
# the patch matrix with `as_strided` over a zero-padded copy and one `reshape` copy took
# 19-47 us, a Numba im2col kernel 32-93 us, so im2col stays in NumPy; the matmul then runs in
# BLAS at close to peak. The scatter of patch rows (col2im) is the other way round: one strided
# NumPy `+=` per kernel tap took ~130 us, the Numba kernel ~35 us.

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from numba_gn import _threading
from numba_gn import buffers as _results
from numba_gn.autograd.function import Context, Function
from numba_gn.autograd.tensor import Tensor
from numba_gn.kernels.conv import (
    col2im,
    winograd_input,
    winograd_input_grad,
    winograd_output,
    winograd_output_grad,
)

__all__ = [
    "Conv",
    "ConvTranspose",
    "DepthwiseConv",
    "conv",
    "conv_output_length",
    "conv_padding",
    "conv_transpose",
    "deconv_output_length",
    "deconv_padding",
    "depthwise_conv",
]

_DATA_FORMATS = ("channels_last", "channels_first")


def conv_padding(
    size: int, kernel: int, stride: int, dilation: int, padding: str
) -> tuple[int, int, int]:
    """`(pad_before, pad_after, output_size)` of one spatial axis, with Keras's arithmetic.

    `"causal"` (Keras's Conv1D option) pads `(kernel - 1) * dilation` before, none after.
    Raises `ValueError` when a "valid" convolution would have no output.
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


def deconv_padding(
    size: int,
    kernel: int,
    stride: int,
    dilation: int,
    padding: str,
    output_padding: int | None = None,
) -> tuple[int, int]:
    """`(crop_before, output_size)` of one spatial axis of a transposed convolution.

    The output length is Keras's (its `deconv_output_length`): with `span` the dilated
    kernel's extent, "valid" gives `(size - 1) * stride + span + output_padding` (by default
    `output_padding = max(span, stride) - span`) and "same" gives `size * stride` (or
    `(size - 1) * stride + span % 2 + output_padding` when `output_padding` is given).

    Every input pixel `a` writes its kernel taps `i` to `a * stride + i * dilation` of an
    uncropped canvas; the output is the canvas from `crop_before` on, zero-extended where it
    runs past the canvas. `crop_before` is `span - 1` minus the left padding Keras's JAX and
    NumPy backends use. Raises `ValueError` when the output would be empty.
    """
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        out = (size - 1) * stride + span + extra
        return 0, out
    if padding != "same":
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
    if output_padding is None:
        total = stride + span - 2
    else:
        total = span + span % 2 - 2 + output_padding
    left = min(total // 2 + total % 2, span - 1)
    out = (size - 1) * stride + 2 - span + total
    if out <= 0:
        raise ValueError(
            f"Computed output size would be zero or negative: input size {size}, kernel size "
            f"{kernel}, stride {stride}, padding 'same', output_padding {output_padding}."
        )
    return span - 1 - left, out


def deconv_output_length(
    size: int | None,
    kernel: int,
    stride: int,
    dilation: int,
    padding: str,
    output_padding: int | None = None,
) -> int | None:
    """Output length of one spatial axis of a transposed convolution (None stays None)."""
    if size is None:
        return None
    return deconv_padding(size, kernel, stride, dilation, padding, output_padding)[1]


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


def _group_patches(
    xp: np.ndarray, groups: int, kh: int, kw: int, steps: tuple[int, int, int, int],
    oh: int, ow: int,
) -> np.ndarray:
    """The patch matrices of each channel group, (G, N*oh*ow, kh*kw*C/G), in one copy."""
    n, _, _, c = xp.shape
    cg = c // groups
    sh, sw, dh, dw = steps
    s0, s1, s2, s3 = xp.strides
    view = as_strided(
        xp,
        shape=(groups, n, oh, ow, kh, kw, cg),
        strides=(s3 * cg, s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3),
        writeable=False,
    )
    return view.reshape(groups, n * oh * ow, kh * kw * cg)


def _to_channels_last(
    x: np.ndarray,
    kernel: np.ndarray,
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    data_format: str,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int], tuple[int, int], bool]:
    """`x` as a channels-last (N, H, W, C) view and the kernel with a height axis.

    A 1-D convolution is a 2-D one with a height-1 image and kernel. Channels-first inputs
    become a transposed view: im2col copies the windows anyway, reading any strides.
    """
    if data_format not in _DATA_FORMATS:
        raise ValueError(
            f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}."
        )
    if x.ndim not in (3, 4) or kernel.ndim != x.ndim or len(strides) != x.ndim - 2:
        raise ValueError(
            f"A convolution expects x of rank 3 or 4, a kernel of the same rank and one stride "
            f"per spatial axis; got x {x.shape}, kernel {kernel.shape}, strides {strides}."
        )
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    if x.ndim == 3:
        return x[:, None], kernel[None], (1, *strides), (1, *dilation), True  # type: ignore
    return x, kernel, strides, dilation, False  # type: ignore[return-value]


def _from_channels_last(y: np.ndarray, one_d: bool, channels_first: bool) -> np.ndarray:
    """A channels-last (N, H, W, C) result back in the caller's rank and layout."""
    if one_d:
        y = y[:, 0]
    if channels_first:
        y = np.ascontiguousarray(np.moveaxis(y, -1, 1))
    return y


def _grad_channels_last(g: np.ndarray, one_d: bool, channels_first: bool) -> np.ndarray:
    """An output gradient as a channels-last (N, H, W, F) view."""
    if channels_first:
        g = np.moveaxis(g, 1, -1)
    return g[:, None] if one_d else g


def _bias_grad(g: np.ndarray, f: int) -> np.ndarray:
    """The bias gradient: a channels-last output gradient summed over all but its `f` filters.

    `ones @ g`: one BLAS call, 25x faster than `g.sum(axis=0)` on a (4096, 16) array.
    """
    g2 = g.reshape(-1, f)
    return np.ones(g2.shape[0], dtype=g2.dtype) @ g2


class Conv(Function):
    """Convolution of `x` with `kernel` (+ `bias`), 1 or 2 spatial axes, grouped or not.

    `x`: (N, [H,] W, C) channels-last or (N, C, [H,] W) channels-first; `kernel`:
    ([kh,] kw, C / groups, F); `bias`: (F,) or None. Static keyword arguments: `strides`,
    `dilation` (one int per spatial axis), `padding` ("valid", "same", or "causal" for 1-D),
    `groups` (input channels and filters split into that many independent convolutions,
    filter `f` reading group `f // (F / groups)`, as in Keras) and `data_format`.
    Output: (N, [OH,] OW, F) or (N, F, [OH,] OW), in `x`'s dtype.
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
        groups: int = 1,
        data_format: str = "channels_last",
    ) -> np.ndarray:
        """Pad, gather the patches (im2col), one matmul (one per group), add the bias."""
        channels_first = data_format == "channels_first"
        x, kernel, strides, dilation, one_d = _to_channels_last(
            np.asarray(x), np.asarray(kernel), strides, dilation, data_format
        )
        n, h, w, c = x.shape
        kh, kw, kc, f = kernel.shape
        if kc * groups != c or f % groups:
            raise ValueError(
                f"Conv expects a kernel ([kh,] kw, C / groups, F) with F divisible by groups; "
                f"got {c} input channels, kernel {kernel.shape[1:] if one_d else kernel.shape} "
                f"and groups={groups}."
            )
        sh, sw = strides
        dh, dw = dilation
        # "causal" only concerns the time axis of a 1-D convolution, never the added height.
        pt, pb, oh = conv_padding(h, kh, sh, dh, "valid" if padding == "causal" else padding)
        pl, pr, ow = conv_padding(w, kw, sw, dw, padding)
        ctx.channels_first = channels_first
        ctx.has_bias = bias is not None
        if groups == 1 and _use_winograd(x, kernel, (sh, sw, dh, dw), (n, oh, ow)):
            ctx.winograd = True
            y = _winograd_forward(ctx, x, kernel, bias, (pt, pl), (oh, ow))
            return _from_channels_last(y, one_d, channels_first)
        ctx.winograd = False
        if pt or pb or pl or pr:
            xp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=x.dtype)
            xp[:, pt : pt + h, pl : pl + w] = x
        else:
            xp = x
        m = n * oh * ow
        if groups == 1:
            # One copy into (N*oh*ow, kh*kw*C), the row order BLAS wants; none for 1x1 kernels.
            # Results go into `numba_gn.buffers` arrays: in a training step fresh memory for
            # the patches and the output cost more in page faults than the copy.
            patches = _patches(xp, kh, kw, sh, sw, dh, dw, oh, ow)
            if kh == kw == sh == sw == 1:
                cols = patches.reshape(m, c)
            else:
                cols = _results.empty(patches.shape, xp.dtype)
                np.copyto(cols, patches)
                cols = cols.reshape(m, kh * kw * c)
            k2 = kernel.reshape(kh * kw * c, f)
            out = np.matmul(cols, k2, out=_results.empty((m, f), np.result_type(cols, k2)))
        else:
            # One stacked matmul, (G, M, kh*kw*C/G) @ (G, kh*kw*C/G, F/G); the groups' outputs
            # are then interleaved back to filter order (f = group * F/G + j) in one copy.
            cols = _group_patches(xp, groups, kh, kw, (sh, sw, dh, dw), oh, ow)
            fg = f // groups
            k2 = np.ascontiguousarray(
                kernel.reshape(kh, kw, kc, groups, fg).transpose(3, 0, 1, 2, 4)
            ).reshape(groups, kh * kw * kc, fg)
            out = (cols @ k2).transpose(1, 0, 2).reshape(m, f)
        if bias is not None:
            out += bias
        ctx.save_for_backward(cols, k2)
        ctx.geometry = (x.shape, xp.shape, kernel.shape, (pt, pl), (oh, ow), one_d)
        ctx.steps = (sh, sw, dh, dw)
        ctx.groups = groups
        return _from_channels_last(out.reshape(n, oh, ow, f), one_d, channels_first)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        """`dx` through col2im, `dkernel = cols.T @ g`, `dbias = sum(g)`."""
        if getattr(ctx, "winograd", False):  # DepthwiseConv shares this backward
            return _winograd_backward(ctx, g)
        cols, k2 = ctx.saved_tensors
        x_shape, xp_shape, k_shape, (pt, pl), (oh, ow), one_d = ctx.geometry
        need_x, need_k, need_b = ctx.needs_input_grad
        groups = ctx.groups
        f = k_shape[3]
        g2 = _grad_channels_last(g, one_d, ctx.channels_first).reshape(-1, f)
        dk = db = dx = None
        if need_b and ctx.has_bias:
            db = _bias_grad(g2, f)
        if groups == 1:
            if need_k:
                dk = (cols.T @ g2).reshape(k_shape)
            dcols = None
            if need_x:
                dcols = _results.empty((g2.shape[0], k2.shape[0]), np.result_type(g2, k2))
                np.matmul(g2, k2.T, out=dcols)
        else:
            kh, kw, kc, _ = k_shape
            gg = g2.reshape(-1, groups, f // groups).transpose(1, 0, 2)  # (G, M, F/G) view
            if need_k:
                dkg = cols.transpose(0, 2, 1) @ gg  # (G, kh*kw*C/G, F/G)
                dk = dkg.reshape(groups, kh, kw, kc, -1).transpose(1, 2, 3, 0, 4).reshape(k_shape)
            if need_x:
                dcg = gg @ k2.transpose(0, 2, 1)  # (G, M, kh*kw*C/G) -> patch rows (M, kh*kw*C)
                dcols = dcg.reshape(groups, -1, kh, kw, kc).transpose(1, 2, 3, 0, 4)
                dcols = dcols.reshape(dcg.shape[1], kh * kw * kc * groups)
        if need_k and one_d:
            dk = dk[0]
        if need_x:
            dx = _col2im(dcols, x_shape, xp_shape, k_shape, pt, pl, oh, ow, ctx.steps)
            dx = _from_channels_last(dx, one_d, ctx.channels_first)
        return dx, dk, db


# ----------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3) for 3x3, stride-1, undilated, ungrouped convolutions (Lavin & Gray 2016):
# V = B^T d B of 4x4 input tiles taken every 2 pixels, U = G g G^T of the kernel, M = V @ U as
# 16 batched matmuls over the channels, Y = A^T M A gives each tile's 2x2 outputs. The backward
# is the exact adjoint: dM = A dY A^T, dU = V^T dM, dV = dM U^T, dx = B dV B^T scattered back
# (tiles overlap by 2 pixels), dkernel = G^T dU G. The tile transforms are the Numba kernels of
# numba_gn.kernels.conv; the kernel transforms are a few NumPy operations on (3, 3, C, F).
#
# Measured choice (2-core machine shared with other processes: the times move from run to run,
# the ratios much less; float32, BLAS with 1 thread as `fit` runs it, medians of 15
# interleaved repeats; forward, then forward+backward with dx, dkernel and dbias; im2col ->
# Winograd in ms), x (N, H, W, C) and F filters, "same":
#   (64, 16, 16, 32), F=32:  fwd 5.7 -> 3.1 (1.9x),    fwd+bwd 17.3 -> 8.3 (2.1x)
#   (32, 16, 16, 64), F=64:  fwd 7.8 -> 4.0 (2.0x),    fwd+bwd 23.4 -> 10.7 (2.2x)
#   (64, 16, 16, 32), F=4:   fwd 3.4 -> 1.4 (2.4x),    fwd+bwd 9.8 -> 4.2 (2.3x)
#   (64, 32, 32, 16), F=16:  fwd 9.8 -> 4.5 (2.2x),    fwd+bwd 28.1 -> 10.5 (2.7x)
#   (64, 16, 16, 16), F=16:  fwd 1.65 -> 0.96 (1.7x),  fwd+bwd 4.6 -> 2.7 (1.7x)
#   (128, 8, 8, 32), F=32:   fwd 2.0 -> 1.2 (1.7x),    fwd+bwd 5.9 -> 3.6 (1.7x)
#   (128, 8, 8, 16), F=16:   fwd 0.60 -> 0.47 (1.3x),  fwd+bwd 1.76 -> 1.34 (1.3x)
#   (64, 4, 4, 64), F=64:    fwd 0.68 -> 0.44 (1.5x),  fwd+bwd 2.1 -> 1.25 (1.7x)
#   (256, 4, 4, 16), F=16:   fwd 0.36 -> 0.39 (0.9x),  fwd+bwd 1.09 -> 0.94 (1.2x)
#   (8, 8, 8, 32), F=32:     fwd 0.14 -> 0.13 (1.1x),  fwd+bwd 0.38 -> 0.33 (1.2x)
# and where im2col stays:
#   (1, 16, 16, 32), F=32:   fwd 0.061 -> 0.069 (0.9x), fwd+bwd 0.18 -> 0.17 (1.0x)
#   (16, 4, 4, 32), F=32:    fwd 0.066 -> 0.107 (0.6x), fwd+bwd 0.20 -> 0.26 (0.8x)
#   (64, 4, 4, 16), F=16:    fwd 0.11 -> 0.14 (0.75x), fwd+bwd 0.26 -> 0.33 (0.8x)
#   (64, 16, 16, 8), F=8:    fwd 0.61 -> 0.43 (1.4x),  fwd+bwd 1.71 -> 1.14 (1.5x)
#   (64, 16, 16, 8), F=64:   fwd 1.8 -> 1.75 (1.0x),   fwd+bwd 5.1 -> 5.3 (0.96x)
#   (64, 8, 8, 8), F=8:      fwd 0.14 -> 0.18 (0.8x),  fwd+bwd 0.43 -> 0.46 (0.95x)
#   (64, 16, 16, 4), F=32:   fwd 0.63 -> 0.70 (0.9x),  fwd+bwd 1.8 -> 2.1 (0.9x)
#   (64, 16, 16, 3), F=16:   fwd 0.42 -> 0.50 (0.8x),  fwd+bwd 1.09 -> 1.49 (0.7x)
#   (256, 2, 2, 32), F=32:   fwd 0.21 -> 0.30 (0.7x),  fwd+bwd 0.66 -> 0.75 (0.9x)
# Winograd saves 9/4 of the matmul work and adds tile transforms and a fixed cost (chunk loop,
# kernel launches, the kernel transform); with few input channels the matmuls (C deep) and
# the transforms gain little, on tiny images the tiles are mostly padding, and on small
# problems the fixed cost dominates. Hence the rule: at least 4x4 outputs, C >= 16 and
# N*OH*OW*C*F >= 2**19 (8 channels win on some shapes and lose on others, so they stay on
# im2col). A quieter run at x (64, 16, 16, 32), F=32: forward 4.9 -> 2.0 ms and
# forward+backward 13.7 -> 6.2 ms with BLAS on 1 thread, 3.7 -> 1.7 and 9.2 -> 5.8 ms on 2.
# The rule reads shapes only (never thread counts), so a model computes the same bits on
# every run.
#
# Accuracy, float32, largest error over the largest float64 (im2col) value, x (64, 16, 16, 32)
# and kernel (3, 3, 32, 32): output 1.9e-7 (im2col 5.8e-7), dx 2.3e-7 (1.8e-7), dkernel 5.7e-7
# (3.4e-7); with x = 1e3 + N(0, 1): output 4.3e-7 (8.3e-7), dx 5.9e-7 (2.5e-7), dkernel
# 5.0e-7 (3.7e-7). The transforms only add, subtract and halve, so both paths stay at a few
# float32 roundings.

#: Winograd needs outputs of at least this many rows and columns.
WINOGRAD_MIN_SIDE = 4
#: Fewest input channels for which Winograd is used.
WINOGRAD_MIN_CHANNELS = 16
#: Smallest `N * OH * OW * C * F` (multiply-adds per kernel tap) for which Winograd is used.
WINOGRAD_MIN_WORK = 1 << 19
# Threads: each chunk of samples is one task of `_threading.map_in_threads` (input transform,
# matmul, output transform, all serial), so both cores work through whole chunks and BLAS
# runs inside them with the single thread `fit`, `evaluate` and `predict` give it. Measured on
# x (64, 16, 16, 32), F=32, float32, BLAS on 1 thread, 2 cores: the transforms on Numba's
# parallel kernels with the matmuls between them on one thread took 1.7-1.8 ms forward and
# 5.2-5.5 ms forward+backward; chunks on two threads 1.03-1.05 and 3.2-3.3 ms (the residual
# CNN's training step 52-57 -> 36-38 ms, its inference 17-20 -> 10-12 ms). Each chunk's
# kernel gradient is kept and the chunks are summed in order, so the bits do not depend on
# which thread ran which chunk.
#: Bytes of transformed tiles (V, M, dM or dV) handled per chunk of samples. Chunks reuse their
#: scratch arrays and stay in the L2 cache; one pass over the whole batch allocated four arrays
#: of 8 MB per step at x (64, 16, 16, 32) (page faults) and was 25% slower (9.5 ms against
#: 7.3 ms forward+backward; 0.25 MB chunks 7.9 ms, 2 MB 7.8 ms, 4 MB 8.4 ms). The chunks
#: depend on the shapes only, so the kernel gradient sums them in the same order every run.
WINOGRAD_CHUNK_BYTES = 1 << 20

_WINOGRAD_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _ConvPath(threading.local):
    forced: str | None = None  # "winograd", "im2col" or None (the rule)


_path = _ConvPath()


@contextlib.contextmanager
def _forced_path(path: str | None) -> Iterator[None]:
    """Run the eligible convolutions of this block (in this thread) on `path`.

    For tests and benchmarks: `"winograd"` or `"im2col"`; None keeps the rule. Only 3x3,
    stride-1, undilated, ungrouped float32/float64 convolutions can take the Winograd path.
    """
    if path not in (None, "winograd", "im2col"):
        raise ValueError(f"path must be 'winograd', 'im2col' or None, got {path!r}.")
    saved = _path.forced
    _path.forced = path
    try:
        yield
    finally:
        _path.forced = saved


def _use_winograd(
    x: np.ndarray, kernel: np.ndarray, steps: tuple[int, int, int, int], out: tuple[int, int, int]
) -> bool:
    """Whether a channels-last convolution takes the Winograd path (shapes and dtypes only)."""
    kh, kw, c, f = kernel.shape
    if (
        (kh, kw) != (3, 3)
        or steps != (1, 1, 1, 1)
        or x.dtype not in _WINOGRAD_DTYPES
        or kernel.dtype != x.dtype
        or 0 in x.shape
    ):
        return False
    if _path.forced is not None:
        return _path.forced == "winograd"
    n, oh, ow = out
    return (
        min(oh, ow) >= WINOGRAD_MIN_SIDE
        and c >= WINOGRAD_MIN_CHANNELS
        and n * oh * ow * c * f >= WINOGRAD_MIN_WORK
    )


def _g_rows(a: np.ndarray) -> np.ndarray:
    """`G @ a` along axis 0 of a (3, ...) array (the halvings are exact).

    `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`.
    """
    s = a[0] + a[2]
    return np.stack([a[0], (s + a[1]) * 0.5, (s - a[1]) * 0.5, a[2]])


def _g_rows_adjoint(a: np.ndarray) -> np.ndarray:
    """`G^T @ a` along axis 0 of a (4, ...) array (the adjoint of `_g_rows`)."""
    h1 = a[1] * 0.5
    h2 = a[2] * 0.5
    return np.stack([a[0] + (h1 + h2), h1 - h2, (h1 + h2) + a[3]])


def _kernel_transform(kernel: np.ndarray) -> np.ndarray:
    """`U = G g G^T` of a (3, 3, C, F) kernel, as (16, C, F) (`U[4*i + j]`)."""
    t = _g_rows(kernel)  # (4, 3, C, F)
    u = _g_rows(t.transpose(1, 0, 2, 3))  # (4 [j], 4 [i], C, F)
    return np.ascontiguousarray(u.transpose(1, 0, 2, 3)).reshape(16, *kernel.shape[2:])


def _kernel_transform_adjoint(du: np.ndarray) -> np.ndarray:
    """`G^T dU G`: the (3, 3, C, F) kernel gradient from `dU` (16, C, F)."""
    t = _g_rows_adjoint(du.reshape(4, 4, *du.shape[1:]))  # (3 [a], 4 [j], C, F)
    dk = _g_rows_adjoint(t.transpose(1, 0, 2, 3))  # (3 [b], 3 [a], C, F)
    return np.ascontiguousarray(dk.transpose(1, 0, 2, 3))


def _chunks(n: int, per_sample: int, itemsize: int) -> list[tuple[int, int]]:
    """Sample ranges whose transformed tiles (`per_sample` values each) fill a chunk."""
    step = max(1, WINOGRAD_CHUNK_BYTES // (per_sample * itemsize))
    return [(i, min(n, i + step)) for i in range(0, n, step)]


def _winograd_forward(
    ctx: Context,
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    pads: tuple[int, int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    """The channels-last (N, OH, OW, F) output; saves what the backward needs on `ctx`."""
    n, _, _, c = x.shape
    f = kernel.shape[3]
    oh, ow = out_hw
    tiles = (-(-oh // 2), -(-ow // 2))
    t = tiles[0] * tiles[1]  # tiles per sample
    x = np.ascontiguousarray(x)
    u = _kernel_transform(kernel)  # (16, C, F)
    b = np.zeros(f, x.dtype) if bias is None else np.asarray(bias, dtype=x.dtype)
    need_x, need_k, _ = ctx.needs_input_grad
    y = _results.empty((n, oh, ow, f), x.dtype)
    chunks = _chunks(n, 16 * t * max(c, f), x.dtype.itemsize)

    def forward_chunk(i: int) -> None:
        n0, n1 = chunks[i]
        rows = (n1 - n0) * t
        # Scratch arrays come from (and go back to) numba_gn.buffers' cache: fresh memory for
        # every chunk cost more page faults than the chunk's work.
        vc = winograd_input(x[n0:n1], pads, tiles, _results.empty((16, rows, c), x.dtype))
        mc = np.matmul(vc, u, out=_results.empty((16, rows, f), x.dtype))
        winograd_output(mc, b, (n1 - n0, oh, ow, f), y[n0:n1])

    _threading.map_in_threads(forward_chunk, len(chunks))
    # The kernel gradient needs V again: the backward recomputes it from x, chunk by chunk,
    # rather than keeping it (4 values per input value, written to memory and read back).
    # U^T for dV = dM U^T, contiguous: OpenBLAS's AVX-512 kernels took 0.10 ms per chunk on
    # the transposed view and 0.07 ms on the copy (same bits).
    ut = np.ascontiguousarray(u.transpose(0, 2, 1)) if need_x else None
    ctx.save_for_backward(x if need_k else None, ut)
    ctx.geometry = (x.shape, kernel.shape, pads, tiles, chunks)
    return y


def _winograd_backward(ctx: Context, g: np.ndarray) -> tuple:
    """`dx`, `dkernel` and `dbias` of the Winograd forward (its exact adjoint)."""
    x, ut = ctx.saved_tensors
    x_shape, k_shape, pads, tiles, chunks = ctx.geometry
    n, h, w, c = x_shape
    f = k_shape[3]
    t = tiles[0] * tiles[1]
    need_x, need_k, need_b = ctx.needs_input_grad
    g4 = np.ascontiguousarray(_grad_channels_last(g, False, ctx.channels_first))
    dx = dk = db = None
    if need_b and ctx.has_bias:
        db = _bias_grad(g4, f)
    if not (need_x or need_k):
        return dx, dk, db
    dx = _results.empty(x_shape, g4.dtype) if need_x else None

    def backward_chunk(i: int) -> np.ndarray | None:
        n0, n1 = chunks[i]
        rows = (n1 - n0) * t
        dm = winograd_output_grad(g4[n0:n1], _results.empty((16, rows, f), g4.dtype))
        if need_x:
            dv = np.matmul(dm, ut, out=_results.empty((16, rows, c), g4.dtype))
            winograd_input_grad(dv, (n1 - n0, h, w, c), pads, tiles, dx[n0:n1])
        if not need_k:
            return None
        vc = winograd_input(x[n0:n1], pads, tiles, _results.empty((16, rows, c), x.dtype))
        return np.matmul(vc.transpose(0, 2, 1), dm)  # this chunk's dU

    du_chunks = _threading.map_in_threads(backward_chunk, len(chunks))
    if need_k:
        du = np.zeros((16, c, f), dtype=g4.dtype)
        for du_chunk in du_chunks:  # in chunk order whichever thread made them: same bits
            du += du_chunk
        dk = _kernel_transform_adjoint(du)
    if need_x:
        dx = _from_channels_last(dx, False, ctx.channels_first)
    return dx, dk, db


class DepthwiseConv(Function):
    """Depthwise convolution: each input channel convolved with its own filters.

    `x` as for `Conv`; `kernel`: ([kh,] kw, C, M); `bias`: (C * M,) or None. Output
    channel `c * M + m` is input channel `c` convolved with `kernel[..., c, m]` (Keras's
    order). Computed as a grouped convolution with `C` groups, the kernel reshaped to
    ([kh,] kw, 1, C * M) as Keras's backends do.
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
        data_format: str = "channels_last",
    ) -> np.ndarray:
        """The grouped convolution's forward with one group per input channel."""
        x = np.asarray(x)
        kernel = np.asarray(kernel)
        if x.ndim not in (3, 4) or kernel.ndim != x.ndim:
            raise ValueError(
                f"DepthwiseConv expects x of rank 3 or 4 and a kernel of the same rank; got x "
                f"{x.shape} and kernel {kernel.shape}."
            )
        channels = x.shape[1 if data_format == "channels_first" else -1]
        if kernel.shape[-2] != channels:
            raise ValueError(
                "The number of input channels must match the kernel's input channels. "
                f"Received: input channels={channels}, kernel input channels="
                f"{kernel.shape[-2]}, data_format='{data_format}'."
            )
        ctx.depthwise_shape = kernel.shape
        grouped = kernel.reshape(*kernel.shape[:-2], 1, channels * kernel.shape[-1])
        return Conv.forward(
            ctx,
            x,
            grouped,
            bias,
            strides=strides,
            dilation=dilation,
            padding=padding,
            groups=channels,
            data_format=data_format,
        )

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        """The grouped convolution's backward, the kernel gradient reshaped back."""
        dx, dk, db = Conv.backward(ctx, g)
        return dx, None if dk is None else dk.reshape(ctx.depthwise_shape), db


class ConvTranspose(Function):
    """Transposed convolution (the adjoint of `Conv`).

    `x`: (N, [H,] W, C) or (N, C, [H,] W); `kernel`: ([kh,] kw, F, C) (Keras's layout:
    output filters before input channels); `bias`: (F,) or None. Static keyword arguments:
    `strides`, `dilation`, `padding` ("valid" or "same"), `output_padding` (None or one
    int per spatial axis) and `data_format`. Output lengths as `deconv_output_length`.

    Input pixel `a` adds `x[a] @ kernel[i].T` at `a * stride + i * dilation` of a canvas
    (one matmul for all pixels and taps, then col2im); the output is a window of the canvas.
    The backward reads the same windows of the (zero-extended) output gradient with im2col.
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
        output_padding: tuple[int, ...] | None = None,
        data_format: str = "channels_last",
    ) -> np.ndarray:
        """One matmul into patch rows, col2im onto the canvas, crop, add the bias."""
        channels_first = data_format == "channels_first"
        x, kernel, strides, dilation, one_d = _to_channels_last(
            np.asarray(x), np.asarray(kernel), strides, dilation, data_format
        )
        if output_padding is not None and one_d:
            output_padding = (0, *output_padding)
        n, h, w, c = x.shape
        kh, kw, f, kc = kernel.shape
        if kc != c:
            raise ValueError(
                "The number of input channels must match the kernel's input channels. "
                f"Received: input channels={c}, kernel input channels={kc}, "
                f"data_format='{data_format}'."
            )
        sh, sw = strides
        dh, dw = dilation
        oph, opw = (None, None) if output_padding is None else output_padding
        pt, oh = deconv_padding(h, kh, sh, dh, padding, oph)
        pl, ow = deconv_padding(w, kw, sw, dw, padding, opw)
        # The canvas holds every tap of every pixel and the whole output window.
        canvas = (
            n,
            max((h - 1) * sh + (kh - 1) * dh + 1, pt + oh),
            max((w - 1) * sw + (kw - 1) * dw + 1, pl + ow),
            f,
        )
        x2 = x.reshape(n * h * w, c)
        k2 = np.ascontiguousarray(kernel.transpose(3, 0, 1, 2)).reshape(c, kh * kw * f)
        steps = (sh, sw, dh, dw)
        out = _col2im(x2 @ k2, (n, oh, ow, f), canvas, (kh, kw), pt, pl, h, w, steps)
        out = out + bias if bias is not None else np.ascontiguousarray(out)
        ctx.save_for_backward(x2, k2)
        ctx.geometry = ((n, h, w, c), canvas, kernel.shape, (pt, pl), (oh, ow), one_d)
        ctx.steps = steps
        ctx.has_bias = bias is not None
        ctx.channels_first = channels_first
        return _from_channels_last(out, one_d, channels_first)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        """`dx = im2col(g) @ kernel`, `dkernel = x.T @ im2col(g)`, `dbias = sum(g)`."""
        x2, k2 = ctx.saved_tensors
        x_shape, canvas, k_shape, (pt, pl), (oh, ow), one_d = ctx.geometry
        need_x, need_k, need_b = ctx.needs_input_grad
        n, h, w, c = x_shape
        kh, kw, f, _ = k_shape
        sh, sw, dh, dw = ctx.steps
        g4 = _grad_channels_last(g, one_d, ctx.channels_first)
        dk = db = dx = None
        if need_b and ctx.has_bias:
            db = _bias_grad(g4, f)
        if not (need_x or need_k):
            return dx, dk, db
        if canvas == g4.shape:
            gc = g4
        else:  # the canvas outside the output window got no gradient
            gc = np.zeros(canvas, dtype=g4.dtype)
            gc[:, pt : pt + oh, pl : pl + ow] = g4
        gcols = _patches(gc, kh, kw, sh, sw, dh, dw, h, w).reshape(n * h * w, kh * kw * f)
        if need_x:
            dx = _from_channels_last((gcols @ k2.T).reshape(x_shape), one_d, ctx.channels_first)
        if need_k:
            dk = (x2.T @ gcols).reshape(c, kh, kw, f).transpose(1, 2, 3, 0)
            dk = np.ascontiguousarray(dk[0] if one_d else dk)
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
    """Adjoint of im2col: add each patch row back where its window read the padded array.

    `xp_shape` is the padded array's shape, `x_shape` the window of it returned (from
    `(pt, pl)`); `(oh, ow)` counts the patch windows.
    """
    n, h, w, c = x_shape
    kh, kw = k_shape[:2]
    sh, sw, dh, dw = steps
    if kh == kw == 1 and sh == sw == 1 and xp_shape == x_shape:
        return dcols.reshape(x_shape)  # 1x1 kernel: the patches are the pixels
    if dcols.dtype == np.float16:  # Numba has no float16 arithmetic: accumulate in float32
        dxp = col2im(dcols.astype(np.float32), xp_shape, (kh, kw), (sh, sw), (dh, dw), (oh, ow))
        dxp = dxp.astype(np.float16)
    else:
        dxp = col2im(dcols, xp_shape, (kh, kw), (sh, sw), (dh, dw), (oh, ow))  # type: ignore
    if xp_shape == x_shape:
        return dxp
    return dxp[:, pt : pt + h, pl : pl + w]


def _ints(value: int | Sequence[int], n: int, name: str, low: int = 1) -> tuple[int, ...]:
    """`value` as a tuple of `n` ints >= `low` (an int is repeated)."""
    t = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(t) != n or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low for v in t
    ):
        what = "positive" if low == 1 else "non-negative"
        raise ValueError(f"{name} must be a {what} int or {n} {what} ints, got {value!r}.")
    return tuple(int(v) for v in t)


def _rank(x: Any) -> int:
    return np.ndim(x.data if isinstance(x, Tensor) else x) - 2


def _steps(
    x: Any, strides: int | Sequence[int], dilation_rate: int | Sequence[int]
) -> dict[str, tuple[int, ...]]:
    """The ops' `strides` and `dilation` keywords, one positive int per spatial axis."""
    rank = _rank(x)
    return {
        "strides": _ints(strides, rank, "strides"),
        "dilation": _ints(dilation_rate, rank, "dilation_rate"),
    }


def _channels(x: Any, data_format: str) -> int:
    shape = np.shape(x.data if isinstance(x, Tensor) else x)
    return shape[1 if data_format == "channels_first" else -1]


def conv(
    x: Any,
    kernel: Any,
    bias: Any = None,
    strides: int | Sequence[int] = 1,
    padding: str = "valid",
    dilation_rate: int | Sequence[int] = 1,
    data_format: str = "channels_last",
) -> Tensor:
    """Differentiable convolution (1-D for rank-3 `x`, 2-D for rank 4), as Keras's `ops.conv`.

    The number of groups is the input channels over the kernel's input channels, as in Keras.
    """
    kc = np.shape(kernel.data if isinstance(kernel, Tensor) else kernel)[-2]
    channels = _channels(x, data_format)
    if channels % kc:
        raise ValueError(
            "The number of input channels must be evenly divisible by kernel's in_channels. "
            f"Received input channels {channels} and kernel in_channels {kc}."
        )
    return Conv.apply(
        x,
        kernel,
        bias,
        **_steps(x, strides, dilation_rate),
        padding=padding,
        groups=channels // kc,
        data_format=data_format,
    )


def depthwise_conv(
    x: Any,
    kernel: Any,
    bias: Any = None,
    strides: int | Sequence[int] = 1,
    padding: str = "valid",
    dilation_rate: int | Sequence[int] = 1,
    data_format: str = "channels_last",
) -> Tensor:
    """Differentiable depthwise convolution, kernel ([kh,] kw, C, depth_multiplier)."""
    return DepthwiseConv.apply(
        x, kernel, bias, **_steps(x, strides, dilation_rate), padding=padding,
        data_format=data_format,
    )


def conv_transpose(
    x: Any,
    kernel: Any,
    bias: Any = None,
    strides: int | Sequence[int] = 1,
    padding: str = "valid",
    output_padding: int | Sequence[int] | None = None,
    dilation_rate: int | Sequence[int] = 1,
    data_format: str = "channels_last",
) -> Tensor:
    """Differentiable transposed convolution, kernel ([kh,] kw, F, C), as `ops.conv_transpose`."""
    steps = _steps(x, strides, dilation_rate)
    if output_padding is not None:
        output_padding = _ints(output_padding, _rank(x), "output_padding", 0)
    return ConvTranspose.apply(
        x, kernel, bias, **steps, padding=padding, output_padding=output_padding,
        data_format=data_format,
    )
