"""A team of threads inside the kernels: atomics, a barrier, and views of flat buffers.

fastnn runs a training step on several threads itself, instead of handing
each matrix product to the BLAS library's own thread pool: every thread runs
the same compiled step loop over its share of each phase (tiles of columns
of a product, rows of a batch) and the threads meet at a barrier between the
phases. The work is cut into the same tiles whatever the number of threads,
and each tile is computed whole by one thread with the same single-threaded
BLAS call, so results are bit-identical for one thread or two.

The barrier spins (with the CPU's ``pause``) while the partner thread is
expected soon, gives the core away (``sched_yield``) after ``SPIN_LIMIT``
rounds, and then sleeps between checks (10 us, doubling up to 1 ms), so a
thread waiting for a descheduled partner, or one stalled on a page of a
memory map, does not burn the time the partner needs.
"""

import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic

from ._config import JIT

SPIN_LIMIT = 2000

# The team's shared int64 state: [arrived, generation, ...], one cache line each.
ARRIVED, GENERATION = 0, 8
TEAM_STATE_SIZE = 16


def _pointer(context, builder, arytype, array, index):
    ary = context.make_array(arytype)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, arytype, ary, [index])


@intrinsic
def atomic_add(typingctx, array, index, value):
    """``array[index] += value`` atomically (int64 array); returns the old value."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        return None
    sig = types.int64(array, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, array, index):
    """``array[index]`` read atomically (int64 array)."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        return None
    sig = types.int64(array, types.intp)

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "seq_cst", 8)

    return sig, codegen


@intrinsic
def atomic_store(typingctx, array, index, value):
    """``array[index] = value`` atomically (int64 array)."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        return None
    sig = types.void(array, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, "seq_cst", 8)
        return context.get_dummy_value()

    return sig, codegen


_PAUSE = {"x86_64": "llvm.x86.sse2.pause", "AMD64": "llvm.x86.sse2.pause",
          "aarch64": "llvm.aarch64.hint", "arm64": "llvm.aarch64.hint"}.get(platform.machine())


@intrinsic
def pause(typingctx):
    """The CPU's spin-wait hint (``pause`` on x86, ``yield`` on AArch64); nothing elsewhere."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _PAUSE == "llvm.x86.sse2.pause":
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = builder.module.globals.get(_PAUSE) or ir.Function(builder.module, fnty, _PAUSE)
            builder.call(fn, [])
        elif _PAUSE == "llvm.aarch64.hint":
            fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(32)])
            fn = builder.module.globals.get(_PAUSE) or ir.Function(builder.module, fnty, _PAUSE)
            builder.call(fn, [ir.IntType(32)(1)])          # hint #1 is YIELD
        return context.get_dummy_value()

    return sig, codegen


# libc's sched_yield and usleep, declared by name (the compiled code stays cacheable).
sched_yield = types.ExternalFunction("sched_yield", types.int32())
usleep = types.ExternalFunction("usleep", types.int32(types.uint32))

# After spinning: yield this many times, then sleep (10 us, doubling up to 1 ms) between checks.
YIELD_LIMIT = 50
MAX_SLEEP_US = 1000


@njit(**JIT)
def barrier(state, n_threads):
    """Wait until all ``n_threads`` threads of the team have arrived (a no-op for one).

    ``state`` is the team's shared int64 array (``TEAM_STATE_SIZE`` entries,
    zeros at the start); a counting barrier: the last thread to arrive
    resets the count and advances the generation the others wait on.
    """
    if n_threads == 1:
        return
    generation = atomic_load(state, GENERATION)
    if atomic_add(state, ARRIVED, 1) == n_threads - 1:
        atomic_store(state, ARRIVED, 0)
        atomic_add(state, GENERATION, 1)
        return
    spins = 0
    sleep = 10
    while atomic_load(state, GENERATION) == generation:
        spins += 1
        if spins < SPIN_LIMIT:
            pause()
        elif spins < SPIN_LIMIT + YIELD_LIMIT:
            sched_yield()
        else:                               # the partner is descheduled or waits on I/O
            usleep(sleep)
            sleep = min(MAX_SLEEP_US, 2 * sleep)


def _view(context, builder, out, src_type, src_value, place):
    """A view of type ``out`` over the memory of the array ``src_value``, built in codegen.

    ``place(src, itemsize)`` gives the view's ``(data, shape, strides)`` from
    the source array's struct and the element size (an LLVM intp).
    """
    src = context.make_array(src_type)(context, builder, src_value)
    view = context.make_array(out)(context, builder)
    itemsize = context.get_constant(types.intp, context.get_abi_sizeof(
        context.get_data_type(out.dtype)))
    data, shape, strides = place(src, itemsize)
    context.populate_array(view, data=data, shape=shape, strides=strides, itemsize=itemsize,
                           meminfo=src.meminfo, parent=src.parent)
    return impl_ret_borrowed(context, builder, out, view._getvalue())


@intrinsic
def matrix(typingctx, buf, offset, rows, cols, ld):
    """The ``rows x cols`` view of the flat ``buf`` starting at ``offset``, rows ``ld`` apart.

    A strided ('A' layout) 2-D array sharing ``buf``'s memory, built without
    the checks (and the exception machinery) of ``reshape``: the callers
    compute offsets within the buffer.
    """
    if not (isinstance(buf, types.Array) and buf.ndim == 1):
        return None
    out = types.Array(buf.dtype, 2, "A")
    sig = out(buf, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        _, off, nrows, ncols, stride = args
        return _view(context, builder, out, signature.args[0], args[0], lambda src, size: (
            builder.gep(src.data, [off]), [nrows, ncols], [builder.mul(stride, size), size]))

    return sig, codegen


@intrinsic
def flat(typingctx, array):
    """The 1-D view of all the elements of a C-contiguous 2-D ``array`` (no copy, no checks)."""
    if not (isinstance(array, types.Array) and array.ndim == 2 and array.layout == "C"):
        return None
    out = types.Array(array.dtype, 1, "C")
    sig = out(array)

    def codegen(context, builder, signature, args):
        def place(src, size):
            rows, cols = cgutils.unpack_tuple(builder, src.shape, 2)
            return src.data, [builder.mul(rows, cols)], [size]
        return _view(context, builder, out, signature.args[0], args[0], place)

    return sig, codegen


@intrinsic
def row(typingctx, array, i):
    """Row ``i`` of a 2-D ``array`` whose rows are contiguous, as a 1-D 'C' array (no checks).

    Every 2-D array of the kernels has contiguous rows (a :func:`matrix`
    view, a C array), but a :func:`matrix` view's type is 'A' layout: its
    strides are only known at run time, and LLVM left loops over ``a[i, j]``
    scalar and slow (``bias_activation`` over 64 x 128 float32 took 27 us).
    Over ``row(a, i)[j]`` the stride is known to be one element, and the same
    loop vectorizes (0.7 us).
    """
    if not (isinstance(array, types.Array) and array.ndim == 2):
        return None
    out = types.Array(array.dtype, 1, "C")
    sig = out(array, types.intp)

    def codegen(context, builder, signature, args):
        def place(src, size):
            cols = cgutils.unpack_tuple(builder, src.shape, 2)[1]
            pitch = cgutils.unpack_tuple(builder, src.strides, 2)[0]
            base = builder.bitcast(src.data, ir.IntType(8).as_pointer())
            data = builder.bitcast(builder.gep(base, [builder.mul(args[1], pitch)]),
                                   src.data.type)
            return data, [cols], [size]
        return _view(context, builder, out, signature.args[0], args[0], place)

    return sig, codegen
