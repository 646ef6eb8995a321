"""`borrow(arr)`: a view of an array argument that numba does not reference-count.

Why: inside a compiled kernel, every array *argument* that flows into an inlined
helper in a loop costs NRT incref/decref calls (atomic operations) that numba's
refcount pruning cannot remove: measured 22 ns per loop iteration with two
arrays, against 0.3 ns with a borrowed view. A borrowed view has a null meminfo,
so LLVM drops the refcount calls entirely.

Safe because a borrowed view only lives inside the kernel call, while the
caller holds the real array; it is never returned or stored.
"""

from __future__ import annotations

from numba import config
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _borrow(typingctx, arr):
    def codegen(context, builder, sig, args):
        src = context.make_array(arr)(context, builder, args[0])
        dst = context.make_array(sig.return_type)(context, builder)
        dst.meminfo = cgutils.get_null_value(dst.meminfo.type)
        dst.parent = cgutils.get_null_value(dst.parent.type)
        dst.nitems = src.nitems
        dst.itemsize = src.itemsize
        dst.data = src.data
        dst.shape = src.shape
        dst.strides = src.strides
        return dst._getvalue()

    return arr(arr), codegen


def _identity(arr):
    return arr


borrow = _identity if config.DISABLE_JIT else _borrow
