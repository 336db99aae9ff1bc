"""A small tape-based autograd on NumPy arrays, in the style of ``tf.GradientTape``.

>>> from numba_gn import autograd as ag
>>> x = ag.Tensor([1.0, 2.0, 3.0])
>>> with ag.GradientTape() as tape:
...     tape.watch(x)
...     y = ag.sum(x * x)
>>> tape.gradient(y, x)
array([2., 4., 6.])

New ops are :class:`Function` subclasses (``forward(ctx, *arrays)`` / ``backward(ctx, grad)``);
check them with :func:`gradcheck`.
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
from numba_gn.autograd.tape import GradientTape, no_record, stop_gradient, stop_recording
from numba_gn.autograd.tensor import Tensor

__all__ = [
    "Context",
    "Function",
    "GradientTape",
    "Tensor",
    "abs",
    "add",
    "cast",
    "clip",
    "concatenate",
    "div",
    "exp",
    "gelu",
    "getitem",
    "gradcheck",
    "group_norm",
    "log",
    "log_softmax",
    "matmul",
    "maximum",
    "mean",
    "minimum",
    "mul",
    "neg",
    "no_record",
    "pad",
    "pow",
    "relu",
    "reshape",
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
    "where",
]
