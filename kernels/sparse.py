"""The first layer over sparse rows: the batch gather, the forward product, the weight gradient.

A sparse ``X`` arrives as one CSR matrix, converted once by
``fastnn.network`` (``indptr`` and ``indices`` int64, ``data`` in the
network's dtype, each row's indices sorted and without duplicates). A
training step copies its rows, in ``perm`` order, into a batch CSR
(``bp``, ``bi``, ``bd``), and the first layer reads only the stored entries:

* forward, for a tile of output columns: ``U[i, :] = sum_k v_k W[c_k, :]``
  over row ``i``'s entries ``(c_k, v_k)`` (``kernels.step`` then adds the
  bias and applies the activation as for dense input);
* weight gradient, for a tile ``[i0, i1)`` of input units:
  ``dW[c, :] = sum_i v_ic Delta[i, :]`` over the batch's entries in columns
  ``c`` of the tile, zero for the columns no row of the batch has (the full
  dense gradient: every optimizer, clipping and MPI sum work unchanged).

Each output element is summed whole by one thread, in a fixed order (a
row's entries in index order; a column's entries in batch-row order), so one
thread and two give the same bits, and a row's forward result does not
depend on the other rows it is computed with.
"""

from numba import njit

from ._config import JIT
from .team import row


@njit(**JIT)
def gather_csr(indptr, indices, data, perm, start, r, bp, bi, bd):
    """The batch CSR of rows ``perm[start : start + r]``: ``bp[: r + 1]``, ``bi``/``bd[: bp[r]]``.

    Parameters
    ----------
    indptr : ndarray of shape (n_samples + 1,), int64
    indices : ndarray of shape (nnz,), int64
    data : ndarray of shape (nnz,), float
        The source CSR.
    perm : ndarray of shape (n_samples,), int64
    bp : ndarray of shape (>= r + 1,), int64
    bi, bd : ndarrays of shape (>= the batch's stored entries,)
        Written in place (sized by the caller for the largest batch).
    """
    bp[0] = 0
    k = 0
    for i in range(r):
        src = perm[start + i]
        for p in range(indptr[src], indptr[src + 1]):
            bi[k] = indices[p]
            bd[k] = data[p]
            k += 1
        bp[i + 1] = k


@njit(**JIT)
def csr_product(indptr, indices, data, row0, W, u):
    """``u[i, :] = sum_p data[p] W[indices[p], :]`` over the entries ``p`` of CSR row ``row0 + i``.

    Parameters
    ----------
    indptr, indices, data : the CSR rows (see :func:`gather_csr`)
    row0 : int
        The CSR row of ``u``'s first row; rows past the CSR's last give 0
        (the padding of a predict chunk).
    W : ndarray of shape (n_in, n_tile)
        A tile of the weight columns.
    u : ndarray of shape (n_rows, n_tile)
        Written in place.
    """
    last = indptr.shape[0] - 1
    zero = u.dtype.type(0)
    for i in range(u.shape[0]):
        ui = row(u, i)                      # unit strides: the row loops vectorize
        for j in range(u.shape[1]):
            ui[j] = zero
        src = row0 + i
        if src < last:
            for p in range(indptr[src], indptr[src + 1]):
                v = data[p]
                wc = row(W, indices[p])
                for j in range(u.shape[1]):
                    ui[j] += v * wc[j]


@njit(**JIT)
def csr_weight_gradient(bp, bi, bd, r, i0, i1, delta, g):
    """``g[c - i0, :] = sum_i X[i, c] delta[i, :]`` for the columns ``i0 <= c < i1`` of a batch CSR.

    Parameters
    ----------
    bp, bi, bd : the batch CSR of ``r`` rows
    delta : ndarray of shape (r, n_out)
        The first layer's delta.
    g : ndarray of shape (i1 - i0, n_out)
        Written in place: zero, then each entry's ``v * delta[i, :]`` added
        in batch-row order.
    """
    zero = g.dtype.type(0)
    for a in range(g.shape[0]):
        ga = row(g, a)
        for j in range(g.shape[1]):
            ga[j] = zero
    for i in range(r):
        di = row(delta, i)
        for p in range(bp[i], bp[i + 1]):
            c = bi[p]
            if c >= i0 and c < i1:
                v = bd[p]
                gc = row(g, c - i0)
                for j in range(g.shape[1]):
                    gc[j] += v * di[j]


@njit(**JIT)
def sgd_from_gradient(W, g, lr, weight_decay):
    """Plain SGD from a computed gradient: ``W <- (1 - lr wd) W - lr g`` (same shapes)."""
    rate = W.dtype.type(lr)
    keep = W.dtype.type(1.0 - lr * weight_decay)
    for a in range(W.shape[0]):
        wa, ga = row(W, a), row(g, a)
        for j in range(W.shape[1]):
            wa[j] = keep * wa[j] - rate * ga[j]
