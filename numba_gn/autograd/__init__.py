"""A small tape-based autograd on NumPy arrays, in the style of `tf.GradientTape`.

>>> from numba_gn import autograd as ag
>>> x = ag.Tensor([1.0, 2.0, 3.0])
>>> with ag.GradientTape() as tape:
...     tape.watch(x)
...     y = ag.sum(x * x)
>>> tape.gradient(y, x)
array([2., 4., 6.])

New ops are `Function` subclasses (`forward(ctx, *arrays)` / `backward(ctx, grad)`);
check them with `gradcheck`.
"""

from numba_gn.autograd.function import Context, Function
from numba_gn.autograd.gradcheck import gradcheck
from numba_gn.autograd.ops import (
    abs,
    add,
    cast,
    clip,
    concatenate,
    div,
    exp,
    gelu,
    getitem,
    group_norm,
    log,
    log_softmax,
    matmul,
    maximum,
    mean,
    minimum,
    mul,
    neg,
    pad,
    pow,
    relu,
    reshape,
    sigmoid,
    silu,
    softmax,
    sqrt,
    square,
    stack,
    sub,
    sum,
    tanh,
    transpose,
    unbroadcast,
    where,
)
from numba_gn.autograd.ops_conv import conv, conv_transpose, depthwise_conv
from numba_gn.autograd.ops_norm import batch_norm, batch_normalization, layer_norm
from numba_gn.autograd.ops_pool import avg_pool, max_pool
from numba_gn.autograd.ops_resize import repeat, resize_linear
from numba_gn.autograd.tape import GradientTape, no_record, stop_gradient, stop_recording
from numba_gn.autograd.tensor import Tensor
from numba_gn.autograd.value_and_grad import value_and_grad

__all__ = [
    "Context",
    "Function",
    "GradientTape",
    "Tensor",
    "abs",
    "add",
    "avg_pool",
    "batch_norm",
    "batch_normalization",
    "cast",
    "clip",
    "concatenate",
    "conv",
    "conv_transpose",
    "depthwise_conv",
    "div",
    "exp",
    "gelu",
    "getitem",
    "gradcheck",
    "group_norm",
    "layer_norm",
    "log",
    "log_softmax",
    "matmul",
    "max_pool",
    "maximum",
    "mean",
    "minimum",
    "mul",
    "neg",
    "no_record",
    "pad",
    "pow",
    "relu",
    "repeat",
    "reshape",
    "resize_linear",
    "sigmoid",
    "silu",
    "softmax",
    "sqrt",
    "square",
    "stack",
    "stop_gradient",
    "stop_recording",
    "sub",
    "sum",
    "tanh",
    "transpose",
    "unbroadcast",
    "value_and_grad",
    "where",
]
