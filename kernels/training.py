"""Whole-network kernels: forward pass, gradients and the training loop.

A network lives in flat arrays so that any depth is one compiled function per
dtype and no Python object crosses into the kernels:

* ``theta``: every parameter, layer by layer, ``W_l`` (row-major, shape
  ``(m_l, m_{l+1})``) then ``b_l``. ``grad`` and the optimizer state share the
  layout. ``sizes`` holds the widths ``m_0 .. m_L``.
* ``hbuf``/``dbuf``: the outputs ``H_l`` and deltas of every layer for up to
  ``cap`` rows, layer after layer.

The training loop runs many mini-batch steps per call; Python is not entered
between steps.
"""

import numpy as np
from numba import njit
from numba.extending import overload

from ._config import JIT
from .blas import gemm
from .dense import dense_backward_delta, dense_forward, dense_gradients, dense_sgd_step
from .dropout import dropout_backward, dropout_forward
from .gather import F32, F64, convert_rows, gather_labels, gather_rows
from .losses import CE_LABELS, count_correct, output_delta
from .mpi import allreduce
from .optimizers import LR, MOMENTUM, SGD, WEIGHT_DECAY, clips, optimizer_update


@njit(inline="always", **JIT)
def _mat(buf, offset, rows, cols):
    return buf[offset:offset + rows * cols].reshape((rows, cols))


@njit(inline="always", **JIT)
def layer_params(theta, sizes, l):
    """Views ``(W_l, b_l)`` into the flat ``theta`` (or ``grad``)."""
    offset = 0
    for k in range(l):
        offset += sizes[k] * sizes[k + 1] + sizes[k + 1]
    n_in, n_out = sizes[l], sizes[l + 1]
    W = _mat(theta, offset, n_in, n_out)
    start = offset + n_in * n_out
    return W, theta[start:start + n_out]


@njit(inline="always", **JIT)
def layer_rows(buf, sizes, cap, l, r):
    """View of the first ``r`` rows of layer ``l``'s ``(cap, m_{l+1})`` block."""
    offset = 0
    for k in range(l):
        offset += cap * sizes[k + 1]
    return _mat(buf, offset, r, sizes[l + 1])


@njit(**JIT)
def forward_pass(x, theta, sizes, codes, hbuf, cap):
    """Forward the rows of ``x`` through every layer into ``hbuf`` (no dropout).

    Parameters
    ----------
    x : ndarray of shape (r, m_0), r <= cap
    theta : ndarray of shape (n_params,)
    sizes : ndarray of shape (n_layers + 1,), int64
    codes : ndarray of shape (n_layers,), int64
        Activation code per layer (identity for a fused-loss output).
    hbuf : ndarray of shape (cap * sum(sizes[1:]),)
    cap : int
        Rows each layer's block of ``hbuf`` holds.

    Returns
    -------
    bool
        Whether every pre-activation was finite.
    """
    return forward_train(x, theta, sizes, codes, hbuf, cap, np.zeros(0), 0, 0, 0)


@njit(**JIT)
def forward_train(x, theta, sizes, codes, hbuf, cap, rates, seed, step, row0):
    """``forward_pass`` with inverted dropout after the layers whose ``rates[l] > 0``.

    ``rates`` has one entry per layer (or is empty: no dropout); the masks
    are those of optimizer step ``step`` (see ``kernels.dropout``) for the
    batch rows ``row0, row0 + 1, ...``.
    """
    r = x.shape[0]
    ok = True
    for l in range(sizes.shape[0] - 1):
        W, b = layer_params(theta, sizes, l)
        h = layer_rows(hbuf, sizes, cap, l, r)
        if l == 0:
            ok &= dense_forward(x, W, b, codes[l], h)
        else:
            ok &= dense_forward(layer_rows(hbuf, sizes, cap, l - 1, r), W, b, codes[l], h)
        if l < rates.shape[0] and rates[l] > 0:
            dropout_forward(h, rates[l], seed, step, l, row0)
    return ok


@njit(**JIT)
def _step_backward(x, theta, sizes, codes, hbuf, dbuf, cap, l, rates, seed, step, row0):
    """Delta of layer ``l - 1`` from that of layer ``l`` (before W_l changes)."""
    r = x.shape[0]
    W, _ = layer_params(theta, sizes, l)
    delta = layer_rows(dbuf, sizes, cap, l, r)
    h_prev = layer_rows(hbuf, sizes, cap, l - 1, r)
    delta_prev = layer_rows(dbuf, sizes, cap, l - 1, r)
    if l - 1 < rates.shape[0] and rates[l - 1] > 0:
        gemm(False, True, 1.0, delta, W, 0.0, delta_prev)
        dropout_backward(delta_prev, h_prev, codes[l - 1], rates[l - 1], seed, step, l - 1, row0)
    else:
        dense_backward_delta(delta, W, h_prev, codes[l - 1], delta_prev)


@njit(**JIT)
def loss_and_gradients(x, y, t, w, theta, sizes, codes, loss_code, hbuf, dbuf, cap, grad,
                       rates, seed, step):
    """Loss of the batch ``x`` and the gradient of every parameter.

    ``y`` holds integer labels (``CE_LABELS``), ``t`` float targets (the
    other losses); the unused one may be empty. ``w`` holds sample weights
    (empty for none): the loss is ``sum w_i l_i / sum w_i``. ``grad`` (shaped
    like ``theta``) receives ``dW_l = H_{l-1}^T Delta_l`` and ``db_l``.
    Dropout (``rates``, empty for none) uses the masks of step ``step``.
    Returns the loss, or NaN when the forward pass was not finite.
    """
    r = x.shape[0]
    L = sizes.shape[0] - 1
    norm = float(r) if w.shape[0] == 0 else w.sum()
    ok = forward_train(x, theta, sizes, codes, hbuf, cap, rates, seed, step, 0)
    loss = output_delta(loss_code, layer_rows(hbuf, sizes, cap, L - 1, r), y, t, w, norm,
                        codes[L - 1], layer_rows(dbuf, sizes, cap, L - 1, r))
    for l in range(L - 1, -1, -1):
        if l > 0:
            _step_backward(x, theta, sizes, codes, hbuf, dbuf, cap, l, rates, seed, step, 0)
        dW, db = layer_params(grad, sizes, l)
        d = layer_rows(dbuf, sizes, cap, l, r)
        if l == 0:
            dense_gradients(x, d, dW, db)
        else:
            dense_gradients(layer_rows(hbuf, sizes, cap, l - 1, r), d, dW, db)
    return loss if ok else np.nan


# ``status[0]`` after ``train_steps`` stops early: why (``status[1]``: the step).
STOP_NONFINITE, STOP_ZERO_WEIGHT, STOP_BAD_X, STOP_BAD_Y, STOP_PEER_BAD_INPUT = range(5)
# ``mpi`` array of ``train_steps``: the allreduce address (0: one process) and handles.
MPI_FN, MPI_COMM, MPI_TYPE, MPI_OP = range(4)
# The stop flag a process adds into the summed gradient: 1 for a non-finite
# step, BAD_INPUT for bad input rows (exact in float32 for up to 2**20 processes).
BAD_INPUT = 2.0 ** 20


@njit(**JIT)
def train_steps(xsrc, xkind, ysrc, ykind, scale, offset, rescale, sort, sample_weight, perm,
                batch_size, step_begin, step_end,
                theta, sizes, codes, rates, seed, loss_code, opt_code, hyper, t0, s1, s2,
                grad, gsum, hbuf, dbuf, xb, yb, tb, wb, step_losses, step_correct,
                rank, size, mpi, status):
    """Run mini-batch steps ``step_begin .. step_end - 1`` of one epoch.

    Step ``s`` trains on the batch ``perm[s*batch_size : (s+1)*batch_size]``
    (the last batch may be partial). With ``size`` processes, process
    ``rank`` computes the share ``[r*rank//size, r*(rank+1)//size)`` of the
    batch's ``r`` rows, gathered into ``xb``/``yb``/``tb``/``wb``, and the
    shares' gradients are summed by one ``MPI_Allreduce`` a step before the
    same update on every process.

    Parameters
    ----------
    xsrc, xkind : uint8 ndarray of shape (n_samples, row bytes), int
        The features as a source (see ``kernels.gather``): converted to the
        network's dtype, and to ``x * scale + offset`` with ``rescale``, as
        each batch is read (in source order with ``sort``).
    ysrc, ykind : uint8 ndarray of shape (n_samples, row bytes), int
        Labels (``CE_LABELS``) or float targets (the other losses), as a source.
    sample_weight : ndarray of shape (n_samples,) or (0,), float64
        Weights: a batch's loss is ``sum w_i l_i / sum w_i``; empty for none.
    perm : ndarray of shape (n_samples,), int64
        This epoch's sample order.
    theta : ndarray of shape (n_params,)
        Parameters, updated in place.
    sizes, codes, loss_code : the network (see ``forward_pass``).
    rates : ndarray of shape (n_layers,) or (0,), float64
        Dropout rate after each layer; masks keyed by ``seed``, the
        optimizer step and the row's position in the batch.
    opt_code : int
        Optimizer code; ``hyper`` its float64 hyperparameters (gradient
        clipping included: it applies to the summed gradient of a step).
    t0 : int
        Optimizer steps taken before this call (the next step is t0 + 1).
    s1, s2 : ndarrays shaped like ``theta``
        Optimizer state (updated).
    grad, gsum : ndarrays of shape (n_params + 1,)
        This process's gradient and, with several processes, their sum; the
        last entry carries a "stop" flag through the sum.
    hbuf, dbuf : work buffers for ``batch_size`` rows.
    xb, yb, tb, wb : gather buffers of ``batch_size`` rows.
    step_losses : ndarray of shape (>= step_end - step_begin,), float64
        This process's share of each step's mean batch loss (written; the
        shares sum to the batch's).
    step_correct : ndarray of shape (>= step_end - step_begin,), int64
        Correct predictions of this process's rows, before the update
        (written; see ``losses.count_correct``).
    rank, size : int
        This process and the number of processes.
    mpi : ndarray of shape (4,), int64
        ``MPI_Allreduce``'s address (0 for one process), then the
        communicator, datatype and ``MPI_SUM`` handles (see ``kernels.mpi``).
    status : ndarray of shape (3,), int64
        When steps stop early: why, the step, and for bad input the flat
        index ``row * width + column`` (or the row of a label).
        ``STOP_NONFINITE``: a non-finite forward pass or loss on some
        process; ``STOP_ZERO_WEIGHT``: a batch whose weights sum to 0;
        ``STOP_BAD_X`` / ``STOP_BAD_Y``: a non-finite feature or target, or a
        label out of range, read here; ``STOP_PEER_BAD_INPUT``: another
        process read bad input.

    Returns
    -------
    int
        Steps completed. Fewer than asked means the next step made no update
        (``status`` says why).
    """
    n_total = perm.shape[0]
    L = sizes.shape[0] - 1
    n_params = theta.shape[0]
    distributed = mpi[MPI_FN] != 0
    # Plain SGD updates W inside the weight-gradient gemm, unless the update needs the
    # whole gradient first: summed over processes, or its norm for clipping.
    fused_sgd = opt_code == SGD and hyper[MOMENTUM] == 0 and not distributed \
        and not clips(hyper)
    weighted = sample_weight.shape[0] > 0
    lr = hyper[LR]
    wd = hyper[WEIGHT_DECAY]
    cap = batch_size
    for s in range(step_begin, step_end):
        start = s * batch_size
        r = min(batch_size, n_total - start)
        lo = start + (r * rank) // size
        rl = start + (r * (rank + 1)) // size - lo
        norm = float(r)
        if weighted:
            norm = 0.0
            for i in range(start, start + r):
                norm += sample_weight[perm[i]]
            if norm == 0:
                status[0] = STOP_ZERO_WEIGHT
                status[1] = s
                return s - step_begin
            for i in range(rl):
                wb[i] = sample_weight[perm[lo + i]]
        bad_input = gather_rows(xsrc, xkind, perm, lo, rl, xb, scale, offset, rescale, sort)
        if bad_input >= 0:
            status[0] = STOP_BAD_X
        else:
            if loss_code == CE_LABELS:
                bad_input = gather_labels(ysrc, ykind, perm, lo, rl, yb, sizes[L])
            else:
                bad_input = gather_rows(ysrc, ykind, perm, lo, rl, tb, 1.0, 0.0, False, sort)
            if bad_input >= 0:
                status[0] = STOP_BAD_Y
        if bad_input >= 0:
            status[1] = s
            status[2] = bad_input
            if not distributed:
                return s - step_begin
        x = xb[:rl]
        t = t0 + s - step_begin + 1
        row0 = lo - start
        bad = False
        if bad_input < 0:
            ok = forward_train(x, theta, sizes, codes, hbuf, cap, rates, seed, t, row0)
            out = layer_rows(hbuf, sizes, cap, L - 1, rl)
            step_correct[s - step_begin] = count_correct(loss_code, out, yb[:rl], tb[:rl])
            loss = output_delta(loss_code, out, yb[:rl], tb[:rl], wb[:rl if weighted else 0],
                                norm, codes[L - 1], layer_rows(dbuf, sizes, cap, L - 1, rl))
            step_losses[s - step_begin] = loss
            bad = not ok or not np.isfinite(loss)
            if bad and not distributed:
                status[0] = STOP_NONFINITE
                status[1] = s
                return s - step_begin
        if not bad and bad_input < 0:
            for l in range(L - 1, -1, -1):
                if l > 0:
                    _step_backward(x, theta, sizes, codes, hbuf, dbuf, cap, l, rates, seed, t,
                                   row0)
                d = layer_rows(dbuf, sizes, cap, l, rl)
                if fused_sgd:
                    W, b = layer_params(theta, sizes, l)
                    if l == 0:
                        dense_sgd_step(x, d, W, b, lr, wd)
                    else:
                        dense_sgd_step(layer_rows(hbuf, sizes, cap, l - 1, rl), d, W, b, lr,
                                       wd)
                else:
                    dW, db = layer_params(grad, sizes, l)
                    if l == 0:
                        dense_gradients(x, d, dW, db)
                    else:
                        dense_gradients(layer_rows(hbuf, sizes, cap, l - 1, rl), d, dW, db)
        if distributed:
            grad[n_params] = BAD_INPUT if bad_input >= 0 else (1.0 if bad else 0.0)
            allreduce(mpi[MPI_FN], grad, gsum, n_params + 1, mpi[MPI_TYPE], mpi[MPI_OP],
                      mpi[MPI_COMM])
            if gsum[n_params] != 0:
                if bad_input < 0:
                    status[0] = STOP_PEER_BAD_INPUT if gsum[n_params] >= BAD_INPUT \
                        else STOP_NONFINITE
                status[1] = s
                return s - step_begin
            optimizer_update(opt_code, theta, gsum, s1, s2, t, hyper)
        elif not fused_sgd:
            optimizer_update(opt_code, theta, grad, s1, s2, t, hyper)
    return step_end - step_begin


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
def predict_raw(xsrc, xkind, scale, offset, rescale, theta, sizes, codes, hbuf, xbuf, cap, out,
                status):
    """Forward all of ``X`` in chunks of ``cap`` rows; the last layer into ``out``.

    Parameters
    ----------
    xsrc, xkind, scale, offset, rescale : the features as a source (see ``train_steps``).
        Rows already in the network's dtype are read in place; others are
        converted chunk by chunk into ``xbuf``.
    xbuf : ndarray of shape (cap, m_0)
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
    n = xsrc.shape[0]
    direct = xkind == dtype_kind(theta) and not rescale
    ok = True
    status[0] = -1
    for start in range(0, n, cap):
        r = min(cap, n - start)
        if direct:
            ok &= forward_pass(typed_view(xsrc, theta)[start:start + r], theta, sizes, codes,
                               hbuf, cap)
        else:
            bad = convert_rows(xsrc, xkind, start, r, xbuf, scale, offset, rescale)
            if bad >= 0:
                status[0] = bad
                return False
            ok &= forward_pass(xbuf[:r], theta, sizes, codes, hbuf, cap)
        h = layer_rows(hbuf, sizes, cap, L - 1, r)
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
