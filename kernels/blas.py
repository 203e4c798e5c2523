"""BLAS ``gemm`` with alpha, beta and transposes, callable from numba kernels.

``np.dot`` in numba only computes ``C = A @ B``. The training step wants
``W <- W - lr * H.T @ delta`` in a single BLAS call (the SGD update fused into
the weight-gradient product), so this calls numba's own ``numba_xxgemm``
helper, which resolves SciPy's ``cython_blas`` gemm by name at run time: the
same BLAS library ``np.dot`` uses inside numba, and cacheable.
"""

import numpy as np
from numba import types
from numba.extending import overload


def _xxgemm_type(dtype):
    ptr = types.CPointer(dtype)
    return types.ExternalFunction("numba_xxgemm", types.intc(
        types.char, types.char, types.char,          # kind, transa, transb
        types.intp, types.intp, types.intp,          # m, n, k
        ptr, ptr, types.intp,                        # alpha, a, lda
        ptr, types.intp, ptr,                        # b, ldb, beta
        ptr, types.intp))                            # c, ldc


def gemm(trans_a, trans_b, alpha, a, b, beta, c):
    """``c[:] = alpha * op(a) @ op(b) + beta * c`` for row-major 2-D arrays.

    Parameters
    ----------
    trans_a, trans_b : bool
        Use the transpose of ``a`` / ``b``.
    alpha, beta : float
    a : ndarray of shape (m, k), or (k, m) when ``trans_a``
    b : ndarray of shape (k, n), or (n, k) when ``trans_b``
    c : ndarray of shape (m, n)
        Written in place. Must not alias ``a`` or ``b``.

    All three arrays share one float dtype and have contiguous rows (their
    column stride is one element; the row stride is the leading dimension,
    so a tile of a larger matrix, e.g. a ``team.matrix`` view, qualifies).
    Only callable from numba-compiled code; shapes are the caller's
    responsibility.
    """
    raise NotImplementedError("gemm is only callable from numba kernels")


@overload(gemm)
def _gemm_overload(trans_a, trans_b, alpha, a, b, beta, c):
    from numba.np.linalg import ensure_blas

    ensure_blas()
    if c.dtype == types.float32:
        kind = ord("s")
    elif c.dtype == types.float64:
        kind = ord("d")
    else:
        return None
    xxgemm = _xxgemm_type(c.dtype)
    trans, notrans = ord("t"), ord("n")

    def impl(trans_a, trans_b, alpha, a, b, beta, c):
        # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T:
        # pass B first, and the column-major view of each array is its
        # transpose, so the transpose flags carry over unchanged.
        m, n = c.shape
        k = a.shape[0] if trans_a else a.shape[1]
        if m == 0 or n == 0:
            return
        scalars = np.empty(2, dtype=c.dtype)
        scalars[0] = alpha
        scalars[1] = beta
        if k == 0:                   # an empty share of a batch: c = beta c, 0 c = 0
            if beta == 0:
                c[:] = 0
            else:
                c *= scalars[1]
            return
        xxgemm(kind, trans if trans_b else notrans, trans if trans_a else notrans,
               n, m, k, scalars[0:].ctypes, b.ctypes, b.strides[0] // b.itemsize,
               a.ctypes, a.strides[0] // a.itemsize, scalars[1:].ctypes, c.ctypes,
               c.strides[0] // c.itemsize)

    return impl
