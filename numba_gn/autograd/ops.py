"""Every differentiable op function in one namespace (`numba_gn.autograd.ops.add` etc.).

The implementations live in small modules by family: `ops_elementwise`, `ops_reduce`,
`ops_shape`, `ops_nn` and `ops_groupnorm`. Each function accepts Tensors,
ndarrays or Python scalars and returns a Tensor.
"""

from numba_gn.autograd.ops_elementwise import (
    abs,
    add,
    clip,
    div,
    exp,
    log,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    sqrt,
    square,
    sub,
    unbroadcast,
    where,
)
from numba_gn.autograd.ops_groupnorm import group_norm
from numba_gn.autograd.ops_nn import gelu, log_softmax, relu, sigmoid, silu, softmax, tanh
from numba_gn.autograd.ops_reduce import matmul, mean, sum
from numba_gn.autograd.ops_shape import (
    cast,
    concatenate,
    getitem,
    pad,
    reshape,
    stack,
    transpose,
)

__all__ = [
    "abs",
    "add",
    "cast",
    "clip",
    "concatenate",
    "div",
    "exp",
    "gelu",
    "getitem",
    "group_norm",
    "log",
    "log_softmax",
    "matmul",
    "maximum",
    "mean",
    "minimum",
    "mul",
    "neg",
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
    "sub",
    "sum",
    "tanh",
    "transpose",
    "unbroadcast",
    "where",
]
