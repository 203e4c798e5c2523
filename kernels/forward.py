"""Whole-input kernels: the forward pass of ``predict``, and a finiteness check.

``predict_raw`` runs the training step's forward phase (``kernels.step``,
one thread, no dropout) over the input in chunks of rows, reading rows in
the network's dtype in place and converting others chunk by chunk.
"""

import numpy as np
from numba import njit
from numba.extending import overload

from ._config import JIT
from .gather import F32, F64, convert_rows
from .step import forward_tiles, layer_offsets
from .team import matrix


def typed_view(src, like):
    """``src`` (uint8 rows) viewed as the dtype of the array ``like`` (numba only)."""
    raise NotImplementedError


@overload(typed_view)
def _typed_view(src, like):
    dtype = np.dtype(str(like.dtype))
    return lambda src, like: src.view(dtype)


def dtype_kind(like):
    """The source kind (``F32``/``F64``) of the dtype of the array ``like`` (numba only)."""
    raise NotImplementedError


@overload(dtype_kind)
def _dtype_kind(like):
    kind = F32 if str(like.dtype) == "float32" else F64
    return lambda like: kind


@njit(**JIT)
def predict_raw(xsrc, xflat, xkind, scale, offset, rescale, theta, sizes, codes, ftiles, hbuf,
                xbuf, cap, out, status):
    """Forward all of ``X`` in chunks of ``cap`` rows; the last layer into ``out``.

    Parameters
    ----------
    xsrc, xflat, xkind, scale, offset, rescale
        The features as a source (see ``kernels.step.train_steps``), as its
        2-D bytes and the same bytes flat. Rows already in the network's
        dtype are read in place; others are converted chunk by chunk into
        ``xbuf``.
    theta, sizes, codes, ftiles : the network and its forward tiles.
    hbuf : ndarray of shape (cap * sum(sizes[1:]),)
    xbuf : ndarray of shape (cap * m_0,)
    out : ndarray of shape (n_samples, m_L)
        The last layer's output (logits for the fused losses).
    status : ndarray of shape (1,), int64
        The flat index of a non-finite converted value, else -1.

    Returns
    -------
    bool
        Whether every value read and every pre-activation was finite.
    """
    L = sizes.shape[0] - 1
    m0 = sizes[0]
    n = xsrc.shape[0]
    woff, hoff = layer_offsets(sizes, cap)
    direct = xkind == dtype_kind(theta) and not rescale
    rows = typed_view(xflat if direct else xflat[:0], theta)
    no_dropout = np.zeros(0)
    team = np.zeros(1, np.int64)
    ok = True
    status[0] = -1
    for start in range(0, n, cap):
        r = min(cap, n - start)
        if direct:
            ok &= forward_tiles(0, 1, rows, start * m0, theta, sizes, codes, no_dropout, 0, 0, 0,
                                hbuf, woff, hoff, ftiles, r, team)
        else:
            bad = convert_rows(xsrc, xkind, start, r, matrix(xbuf, 0, r, m0, m0), scale, offset,
                               rescale)
            if bad >= 0:
                status[0] = bad
                return False
            ok &= forward_tiles(0, 1, xbuf, 0, theta, sizes, codes, no_dropout, 0, 0, 0, hbuf,
                                woff, hoff, ftiles, r, team)
        h = matrix(hbuf, hoff[L - 1], r, sizes[L], sizes[L])
        for i in range(r):
            for j in range(h.shape[1]):
                out[start + i, j] = h[i, j]
    return ok


@njit(**JIT)
def all_finite(a):
    """Whether every element of the 1-D array ``a`` is finite."""
    zero = a.dtype.type(0)
    check = zero
    for i in range(a.shape[0]):
        check += a[i] * zero
    return check == zero
