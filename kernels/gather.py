"""Gathering a shuffled mini-batch: ``xb[i] = X[perm[start + i]]``.

Every step copies its rows out of the training set, one random row after
another, and the data set does not stay in cache between epochs, so this is
a stream of row-sized memory reads that the hardware prefetcher cannot
predict (it only follows sequential addresses within a row). The gather
therefore prefetches the rows a few positions ahead in ``perm``, and copies
with a plain element loop, which LLVM vectorizes; numba's slice assignment
``xb[i, :] = X[src, :]`` does not (measured for batch 64 of 784 float32
features over 8,000 rows: 5.5 ms an epoch with slices, 2.8 ms with the loop,
1.9 ms with the loop and prefetching). The prefetch goes to L2, not L1: a
row is read once an epoch, and in a training step (configs B and C of
``benchmarks/compare.py``) this was 3 % faster than prefetching into L1.
"""

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ._config import JIT

# Rows prefetched ahead of the one being copied (measured best: 4 to 8).
PREFETCH_ROWS = 4
CACHE_LINE = 64


@intrinsic
def prefetch(typingctx, a, row, col):
    """Hint the CPU to load the cache line of ``a[row, col]`` (2-D ``a``) into L2.

    No effect on results; an address outside ``a`` would not fault either,
    but callers only pass valid indices.
    """
    if not (isinstance(a, types.Array) and a.ndim == 2):
        return None
    sig = types.void(a, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        row_stride = builder.extract_value(array.strides, 0)
        col_stride = builder.extract_value(array.strides, 1)
        offset = builder.add(builder.mul(args[1], row_stride), builder.mul(args[2], col_stride))
        byte = ir.IntType(8).as_pointer()
        address = builder.gep(builder.bitcast(array.data, byte), [offset])
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32])
        fn = builder.module.globals.get("llvm.prefetch.p0")
        if fn is None:
            fn = ir.Function(builder.module, fnty, name="llvm.prefetch.p0")
        # read, moderate temporal locality (x86 prefetcht1: L2 and outward), data cache
        builder.call(fn, [address, i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", **JIT)
def prefetch_row(X, row):
    """Prefetch every cache line of row ``row`` of ``X``."""
    step = max(1, CACHE_LINE // X.itemsize)
    for j in range(0, X.shape[1], step):
        prefetch(X, row, j)


@njit(**JIT)
def gather_rows(X, perm, start, r, out):
    """``out[i, :] = X[perm[start + i], :]`` for ``i < r``, prefetching ahead.

    Parameters
    ----------
    X : ndarray of shape (n_samples, m)
    perm : ndarray of shape (n_samples,), int64
    start, r : int
        The batch is ``perm[start : start + r]``.
    out : ndarray of shape (>= r, m)

    Rows up to ``PREFETCH_ROWS`` past the batch (the next batch's first
    rows) are prefetched too, so the next step starts on cached rows.
    """
    n = perm.shape[0]
    m = X.shape[1]
    for i in range(min(PREFETCH_ROWS, n - start)):
        prefetch_row(X, perm[start + i])
    for i in range(r):
        ahead = start + i + PREFETCH_ROWS
        if ahead < n:
            prefetch_row(X, perm[ahead])
        src = perm[start + i]
        for j in range(m):
            out[i, j] = X[src, j]


@njit(**JIT)
def gather_labels(y, perm, start, r, out):
    """``out[i] = y[perm[start + i]]`` for ``i < r``."""
    for i in range(r):
        out[i] = y[perm[start + i]]
