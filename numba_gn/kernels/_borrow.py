"""Array views without reference counting, for the kernels' inner loops.

Every array view Numba makes (a slice, a row, a reshape, an array passed to an inlined helper)
holds a reference to the array's owner, and taking or dropping one is an atomic operation on
shared memory. On short slabs these atomics, a few per slab, took three quarters of a
kernel's time. A kernel's array arguments are kept alive by its caller for the whole call, so
the kernel can work on `borrowed` copies of them, which have no owner: Numba skips the
reference counting of every view taken from them. Scratch a kernel allocates for itself is
borrowed the same way, with `keep` holding the owner until the last use.
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload


def _lower_borrowed(context, builder, typ, value):
    """`value` of Numba type `typ` with every array in it (tuples included) made ownerless."""
    from numba.np.arrayobj import make_array, populate_array

    if isinstance(typ, types.Array):
        ary = make_array(typ)(context, builder, value=value)
        view = make_array(typ)(context, builder)
        populate_array(
            view,
            data=ary.data,
            shape=ary.shape,
            strides=ary.strides,
            itemsize=ary.itemsize,
            meminfo=None,
            parent=None,
        )
        return view._getvalue()
    if isinstance(typ, types.BaseTuple):
        out = cgutils.get_null_value(context.get_value_type(typ))
        for i, member in enumerate(typ):
            item = builder.extract_value(value, i)
            out = builder.insert_value(out, _lower_borrowed(context, builder, member, item), i)
        return out
    # Anything else is returned as a new reference, as Numba expects of a call's result.
    context.nrt.incref(builder, typ, value)
    return value


def borrowed(a):
    """`a` (an array, or a tuple holding arrays) with every array seen without its owner.

    Views taken from the result skip reference counting. Only for arrays that outlive every
    use of the result (a kernel's arguments, or scratch held by `keep`): never return the
    result or store it anywhere that outlives the call. In Python (`NUMBA_DISABLE_JIT`) it
    returns `a`.
    """
    return a


def keep(a):
    """Hold `a` until this point: the owner of `borrowed` views of scratch stays alive."""


@intrinsic
def _borrowed(typingctx, a):
    def codegen(context, builder, sig, args):
        return _lower_borrowed(context, builder, sig.args[0], args[0])

    return a(a), codegen


@intrinsic
def _keep(typingctx, a):
    def codegen(context, builder, sig, args):
        return context.get_dummy_value()

    return types.none(a), codegen


@overload(borrowed, inline="always")
def _borrowed_impl(a):
    return lambda a: _borrowed(a)


@overload(keep, inline="always")
def _keep_impl(a):
    return lambda a: _keep(a)
