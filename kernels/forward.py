"""Whole-input kernels: the forward pass of ``predict``, and a finiteness check.

``predict_raw`` runs the training step's forward phase (``kernels.step``,
no dropout) over the input in fixed-size chunks of rows, shared by a team of
threads, reading rows in the network's dtype in place and converting others
chunk by chunk.
"""

import numpy as np
from numba import njit
from numba.extending import overload

from ._config import JIT
from .gather import convert_rows
from .step import forward_tiles, layer_offsets
from .team import atomic_add, flat, matrix, row


def same_dtype(a, b):
    """Whether arrays ``a`` and ``b`` share a dtype (numba only: a compile-time constant)."""
    raise NotImplementedError


@overload(same_dtype)
def _same_dtype(a, b):
    same = a.dtype == b.dtype
    return lambda a, b: same


def in_place_rows(X, theta, fallback):
    """``X`` flat when it is in ``theta``'s dtype (read in place), else ``fallback`` (numba only)."""
    raise NotImplementedError


@overload(in_place_rows)
def _in_place_rows(X, theta, fallback):
    if X.dtype == theta.dtype:
        return lambda X, theta, fallback: flat(X)
    return lambda X, theta, fallback: fallback


@njit(**JIT)
def predict_raw(worker, n_workers, next_chunk, X, Xp, Xi, Xd, scale, offset, rescale, theta,
                sizes, codes, ftiles, hbuf, xbuf, rows, out, status, features):
    """Forward all of ``X`` in chunks of ``rows`` rows; the last layer into ``out``.

    Every chunk is computed with the same shapes (the last one padded with
    zero rows), so a row's output does not depend on the other rows it is
    predicted with, nor on which thread took its chunk: the BLAS products
    have one shape and a row's position within them changes nothing.
    Threads take chunks from the shared counter ``next_chunk`` as they
    finish (a slow thread does not hold the others up).

    Parameters
    ----------
    worker, n_workers : int
        This thread and the size of its team (every thread makes the call).
    next_chunk : ndarray of shape (>= 1,), int64
        The shared chunk counter (0 to start).
    X : ndarray of shape (n_samples, m_0)
        The features in their own dtype (see ``kernels.step.train_steps``).
        Full chunks of rows already in the network's dtype are read in
        place; others are converted (or padded) into ``xbuf``, and to
        ``x * scale + offset`` with ``rescale``. Empty (shape (0, m_0)) for
        sparse input.
    Xp, Xi, Xd : ndarrays
        Sparse input: its CSR (see ``kernels.step.train_steps``), read in
        place chunk by chunk (a chunk past the last row is padded with empty
        rows), else empty.
    theta, sizes, codes, ftiles : the network and its forward tiles.
    hbuf : ndarray of shape (n_workers * rows * sum(sizes[1:]),)
    xbuf : ndarray of shape (n_workers * rows * m_0,)
        Each thread's share of the work buffers.
    out : ndarray of shape (n_samples, m_L)
        The last layer's output (logits for the fused losses).
    status : ndarray of shape (2 * n_workers,), int64
        Per thread: the flat index of a non-finite converted value (else -1),
        and 1 if every pre-activation it computed was finite.
    features : int
        ``kernels.features``' bits (``SPARSE`` for sparse input), a literal
        for the entry point (see ``kernels.step.train_steps``).

    Returns
    -------
    bool
        Whether this thread's values were all finite.
    """
    L = sizes.shape[0] - 1
    m0 = sizes[0]
    sparse = Xp.shape[0] > 0
    n = Xp.shape[0] - 1 if sparse else X.shape[0]
    width = hbuf.shape[0] // n_workers
    hmine = hbuf[worker * width:(worker + 1) * width]
    xmine = xbuf[worker * rows * m0:(worker + 1) * rows * m0]
    woff, hoff = layer_offsets(sizes, rows)
    direct = same_dtype(X, theta) and not rescale
    rows_in_place = in_place_rows(X, theta, xmine)
    identity = np.arange(n)
    no_dropout = np.zeros(0)
    zero = np.int64(0)
    solo = np.int64(1)
    team = np.zeros(1, np.int64)
    ok = True
    status[2 * worker] = -1
    chunks = -(-n // rows)
    while True:
        chunk = atomic_add(next_chunk, 0, 1)
        if chunk >= chunks:
            break
        start = chunk * rows
        r = min(rows, n - start)
        if sparse:
            ok &= forward_tiles(zero, solo, xmine, start, Xp, Xi, Xd, theta, sizes, codes,
                                no_dropout, zero, zero, zero, hmine, woff, hoff, ftiles, rows,
                                team, features)
        elif direct and r == rows:
            ok &= forward_tiles(zero, solo, rows_in_place, start * m0, Xp, Xi, Xd, theta, sizes,
                                codes, no_dropout,
                                zero, zero, zero, hmine, woff, hoff, ftiles, rows, team, features)
        else:
            bad = convert_rows(X, start, r, matrix(xmine, 0, r, m0, m0), scale, offset, rescale,
                               identity)
            if bad >= 0:
                status[2 * worker] = bad
                ok = False
                break
            for k in range(r * m0, rows * m0):
                xmine[k] = 0
            ok &= forward_tiles(zero, solo, xmine, zero, Xp, Xi, Xd, theta, sizes, codes,
                                no_dropout, zero, zero, zero, hmine, woff, hoff, ftiles, rows,
                                team, features)
        h = matrix(hmine, hoff[L - 1], r, sizes[L], sizes[L])
        for i in range(r):
            oi, hi = row(out, start + i), row(h, i)
            for j in range(h.shape[1]):
                oi[j] = hi[j]
    status[2 * worker + 1] = 1 if ok else 0
    return ok


@njit(**JIT)
def all_finite(a):
    """Whether every element of the 1-D array ``a`` is finite."""
    zero = a.dtype.type(0)
    bad = False
    for i in range(a.shape[0]):
        bad |= a[i] - a[i] != zero      # NaN for NaN and inf; an or vectorizes
    return not bad
