"""Reading a mini-batch: ``out[i] = convert(X[perm[start + i]])``.

Training reads each step's rows straight from the caller's array, which may
be a memory map and may hold 8- or 16-bit integers: the rows are converted
to the network's dtype (and, for a ``Rescaling`` first layer, to
``x * scale + offset``) as they are copied, so no full float copy of the data
set ever exists. Every source arrives as a C-contiguous 2-D array of its
own dtype (a read-only map is read through a plain array over the same
pages, built by ``fastnn.data``; the kernels never write a source), so the
step compiles the conversion of the input type a run has and no other.

Float sources are checked while copying: the gather returns the flat index
``row * width + column`` of the first non-finite value it converted (NaN or
inf in the source, or a value too large for the network's dtype), else -1.
Label sources are checked against the number of classes the same way.

Every step reads its rows in a random order that the hardware prefetcher
cannot predict (it only follows sequential addresses within a row), so the
gather prefetches the rows a few positions ahead in ``perm``, and copies
with a plain element loop, which LLVM vectorizes; numba's slice assignment
``xb[i, :] = X[src, :]`` does not (measured for batch 64 of 784 float32
features over 8,000 rows: 5.5 ms an epoch with slices, 2.8 ms with the loop,
1.9 ms with the loop and prefetching). The prefetch goes to L2, not L1: a
row is read once an epoch, and in a training step (configs B and C of
``benchmarks/compare.py``) this was 3 % faster than prefetching into L1. A
prefetch of a page that is not in memory is dropped (it never faults), so
for memory maps it only helps rows already in the page cache; an ``order``
reads a batch's rows in file order instead (each still lands in its slot,
so the batch, and every result, is the same).

The conversions run without fast-math flags: ``x * scale + offset`` is a
rounded product then a rounded sum (no fused multiply-add), exactly what
numpy computes.
"""

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from ._config import JIT
from .team import row

# Exact arithmetic for the conversions (see the module docstring).
EXACT = dict(JIT, fastmath=False)

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


@njit(**EXACT)
def gather_rows(X, perm, start, r, out, scale, offset, rescale, order):
    """``out[i, :] = convert(X[perm[start + i], :])`` for ``i < r``, prefetching ahead.

    Parameters
    ----------
    X : ndarray of shape (n_samples, m)
        Any real dtype; converted to ``out``'s.
    perm : ndarray of shape (n_samples,), int64
    start, r : int
        The batch is ``perm[start : start + r]``.
    out : ndarray of shape (>= r, m), float32 or float64
    scale, offset : float
        With ``rescale``, ``out = x * scale + offset`` in ``out``'s dtype.
    rescale : bool
    order : ndarray of shape (r,) or (0,), int64
        The slots in the order to read them (sorted by source row: file
        order for a memory map), or empty for slot order.

    Returns
    -------
    int
        ``row * m + column`` of the value that is not finite in ``out``'s
        dtype (float sources only) with the smallest source index among the
        batch's rows, else -1 (the same however the batch is split or read).

    Rows up to ``PREFETCH_ROWS`` past the batch (the next batch's first
    rows) are prefetched too, so the next step starts on cached rows.
    """
    n = perm.shape[0]
    m = X.shape[1]
    s = out.dtype.type(scale)
    o = out.dtype.type(offset)
    check = _is_float(X)
    for i in range(min(PREFETCH_ROWS, n - start)):
        prefetch_row(X, perm[start + i])
    ordered = order.shape[0] > 0
    found = -1
    for k in range(r):
        ahead = start + k + PREFETCH_ROWS
        if ahead < n:
            prefetch_row(X, perm[ahead])
        i = order[k] if ordered else k
        src = perm[start + i]
        xs, oi = row(X, src), row(out, i)         # unit strides: the copy vectorizes
        bad = False
        if rescale:
            for j in range(m):
                v = out.dtype.type(xs[j])
                bad |= v - v != 0
                oi[j] = v * s + o
        else:
            for j in range(m):
                v = out.dtype.type(xs[j])
                bad |= v - v != 0
                oi[j] = v
        if check and bad and (found < 0 or src * m < found):
            # The converted value (before rescaling) is what was not finite.
            for j in range(m):
                v = out.dtype.type(X[src, j])
                if v - v != 0:
                    found = src * m + j
                    break
    return found


def _is_float(X):
    """Whether the array ``X`` holds floats (numba only: a compile-time constant)."""
    raise NotImplementedError


@overload(_is_float)
def _is_float_overload(X):
    floating = isinstance(X.dtype, types.Float)
    return lambda X: floating


@njit(**EXACT)
def gather_labels(y, perm, start, r, out, n_classes):
    """``out[i] = y[perm[start + i]]`` for ``i < r``, checking ``0 <= y < n_classes``.

    Parameters
    ----------
    y : ndarray of shape (n_samples, 1)
        Integer labels of any integer dtype.
    out : ndarray of shape (>= r,), int64

    Returns
    -------
    int
        The smallest row among the batch's labels out of range, else -1.
    """
    found = -1
    for i in range(r):
        label = y[perm[start + i], 0]
        out[i] = label
        if (label < 0 or label >= n_classes) and (found < 0 or perm[start + i] < found):
            found = perm[start + i]
    return found


@njit(**EXACT)
def convert_rows(X, start, r, out, scale, offset, rescale, identity):
    """``out[:r] = convert(X[start : start + r])``: :func:`gather_rows` for a row range.

    ``identity`` is ``0 .. n_samples - 1`` (int64): the permutation that
    reads rows in place.
    """
    return gather_rows(X, identity, start, r, out, scale, offset, rescale, identity[:0])
