"""The training step, cut into tiles that a team of threads shares.

One call of :func:`train_steps` runs mini-batch steps ``step_begin ..
step_end - 1`` of an epoch on one thread of a team (``worker`` of
``n_workers``; see ``kernels.team``). Every thread of the team makes the same
call. A step is a sequence of phases with a barrier after each:

1. gather: the batch's rows, converted (``kernels.gather``), split by rows
   (sparse input: worker 0 builds the batch CSR, ``kernels.sparse``);
2. forward, layer by layer: ``H_l = phi(H_{l-1} W_l + b_l)`` by tiles of the
   layer's output columns (``ftiles[l]`` of them), each a single-threaded
   BLAS product (a sparse first layer: its CSR product) fused with its
   bias, activation and dropout;
3. the fused loss and output delta (worker 0; the output is narrow);
4. backward, layer by layer from the last: by tiles of the layer's input
   units (``btiles[l]``): the input delta ``Delta_{l-1}[:, I] = (Delta_l
   W_l[I, :]^T) * phi'`` and the weight gradient ``W_l[I, :]``'s rows
   ``H_{l-1}[:, I]^T Delta_l`` (a sparse first layer: from its stored
   entries), updated right away while they are in cache
   (plain SGD goes into the product itself: ``W <- (1 - lr wd) W - lr H^T Delta``);
   the bias by one worker;
5. with several processes (MPI) or gradient clipping, the whole gradient
   first: one allreduce (worker 0), the clipping norm (on one process, from
   the sums of squares each backward tile took of its piece; else over fixed
   chunks), then the update, the chunks split across the team.

The tiles are the same whatever ``n_workers`` is, and each is computed whole
by one thread with the same BLAS call, so one thread and two give
bit-identical results; which thread takes a tile is ``tile % n_workers``.

A network is flat arrays, so that any depth is one compiled function per
dtype: ``theta`` holds every parameter, layer by layer ``W_l`` (row-major,
``(m_l, m_{l+1})``) then ``b_l``; ``grad`` and the optimizer state share the
layout; ``hbuf``/``dbuf`` the outputs ``H_l`` and deltas of every layer for
up to ``cap`` rows, layer after layer; ``xb``/``tb`` the gathered features
and targets (flat, ``cap`` rows).
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from ._config import JIT
from .blas import gemm
from .dense import column_sums
from .features import (WHOLE, activation_backward_of, bias_activation_of, csr_product_if,
                       csr_weight_gradient_if, dropout_forward_if, gather_csr_if,
                       gather_targets, loss_delta, sgd_from_gradient_if, update_with, without)
from .gather import gather_rows
from .losses import count_correct
from .mpi import allreduce
from .optimizers import (CLIP_NORM, LR, MOMENTUM, SGD, WEIGHT_DECAY, clip_scale, clips,
                         squared_norm)
from .team import barrier, matrix, row

# ``status[0]`` after ``train_steps`` stops early: why (``status[1]``: the step).
STOP_NONFINITE, STOP_ZERO_WEIGHT, STOP_BAD_X, STOP_BAD_Y, STOP_PEER_BAD_INPUT = range(5)
# ``mpi`` array of ``train_steps``: the allreduce address (0: one process) and handles.
MPI_FN, MPI_COMM, MPI_TYPE, MPI_OP = range(4)
# The stop flag a process adds into the summed gradient: 1 for a non-finite
# step, BAD_INPUT for bad input rows (exact in float32 for up to 2**20 processes).
BAD_INPUT = 2.0 ** 20
# No optimizer: compute the gradient into ``grad`` and stop (``Network.loss_and_gradients``).
NO_UPDATE = -1
# The parameters are updated (and clipped) in chunks of this many, split across the team.
UPDATE_CHUNK = 16384
# The per-worker slots of ``shared``: bad input index, its kind, forward ok.
SLOT, SLOT_BAD, SLOT_KIND, SLOT_OK = 8, 0, 1, 2


@njit(inline="always", **JIT)
def _split(total, parts, k):
    """The ``k``-th of ``parts`` near-equal ranges of ``range(total)``."""
    return total * k // parts, total * (k + 1) // parts


@njit(**JIT)
def layer_offsets(sizes, cap):
    """``(woff, hoff)``: where each layer's W in ``theta`` and rows in ``hbuf`` start."""
    L = sizes.shape[0] - 1
    woff = np.empty(L + 1, np.int64)
    hoff = np.empty(L + 1, np.int64)
    woff[0] = 0
    hoff[0] = 0
    for l in range(L):
        woff[l + 1] = woff[l] + sizes[l] * sizes[l + 1] + sizes[l + 1]
        hoff[l + 1] = hoff[l] + cap * sizes[l + 1]
    return woff, hoff


@njit(**JIT)
def forward_tiles(worker, n_workers, xb, x0, bp, bi, bd, theta, sizes, codes, rates, seed, step,
                  row0, hbuf, woff, hoff, ftiles, r, team, features):
    """Phase 2 for ``r`` rows of the input; whether this worker's tiles were finite.

    The input is ``xb``'s rows from flat offset ``x0`` on or, when ``bp`` is
    not empty, the CSR rows ``x0 ..`` of ``(bp, bi, bd)`` (``kernels.sparse``).
    ``features``: what is compiled in (``kernels.features``).
    """
    L = sizes.shape[0] - 1
    sparse = bp.shape[0] > 0
    ok = True
    for l in range(L):
        mi, mo = sizes[l], sizes[l + 1]
        bias = woff[l] + mi * mo
        tiles = ftiles[l]
        for tile in range(worker, tiles, n_workers):
            j0, j1 = _split(mo, tiles, tile)
            h = matrix(hbuf, hoff[l] + j0, r, j1 - j0, mo)
            W = matrix(theta, woff[l] + j0, mi, j1 - j0, mo)
            if l == 0 and sparse:
                csr_product_if(features, bp, bi, bd, x0, W, h)
            else:
                if l == 0:
                    h_in = matrix(xb, x0, r, mi, mi)
                else:
                    h_in = matrix(hbuf, hoff[l - 1], r, mi, mi)
                gemm(False, False, 1.0, h_in, W, 0.0, h)
            ok &= bias_activation_of(features, h, theta[bias + j0:bias + j1], codes[l])
            if l < rates.shape[0] and rates[l] > 0:
                dropout_forward_if(features, h, rates[l], seed, step, l, row0, mo, j0)
        barrier(team, n_workers)
    return ok


@njit(**JIT)
def _sgd_bias(delta, b, lr, weight_decay):
    """Plain SGD of a bias: ``b <- (1 - lr wd) b - lr sum_rows(delta)``."""
    rate = b.dtype.type(lr)
    keep = b.dtype.type(1.0 - lr * weight_decay)
    for j in range(b.shape[0]):
        b[j] *= keep
    for i in range(delta.shape[0]):
        di = row(delta, i)
        for j in range(delta.shape[1]):
            b[j] -= rate * di[j]


@njit(**JIT)
def backward_tiles(worker, n_workers, xb, bp, bi, bd, theta, grad, sizes, codes, rates, seed, step, row0,
                   hbuf, dbuf, woff, hoff, btiles, r, mode, opt_code, hyper, s1, s2, norms,
                   tile_norms, team, features):
    """Phase 4: deltas and weight gradients by tiles of input units.

    ``mode`` 0: gradient into ``grad`` only; 1: plain SGD fused into the
    products; 2: every tile's optimizer update right after its gradient
    (never with ``clip_norm``, which needs the whole gradient first: mode 0).
    With a batch CSR (``bp`` not empty) the first layer's weight gradient
    comes from its stored entries (``kernels.sparse``), then plain SGD or the
    update as in modes 1 and 2. With ``tile_norms`` (mode 0, for
    ``clip_norm``) each tile's and bias's sum of squares goes into its own
    slot of ``norms`` while the gradient is still in cache (see
    :func:`norm_slots`).
    """
    L = sizes.shape[0] - 1
    sparse = bp.shape[0] > 0
    lr, wd = hyper[LR], hyper[WEIGHT_DECAY]
    one = 1.0                           # mode 2: no clip_norm, so no scale
    for l in range(L - 1, -1, -1):
        mi, mo = sizes[l], sizes[l + 1]
        w0 = woff[l]
        bias = w0 + mi * mo
        delta = matrix(dbuf, hoff[l], r, mo, mo)
        tiles = btiles[l]
        slot0 = 0
        for k in range(l):
            slot0 += btiles[k] + 1
        for tile in range(worker, tiles, n_workers):
            i0, i1 = _split(mi, tiles, tile)
            rows = matrix(theta, w0 + i0 * mo, i1 - i0, mo, mo)
            if l > 0:
                prev = matrix(dbuf, hoff[l - 1] + i0, r, i1 - i0, mi)
                h_prev = matrix(hbuf, hoff[l - 1] + i0, r, i1 - i0, mi)
                gemm(False, True, 1.0, delta, rows, 0.0, prev)
                activation_backward_of(features, prev, h_prev, codes, rates, l - 1, seed, step,
                                       row0, mi, i0)
                h_in = h_prev
            elif sparse:
                g = matrix(grad, w0 + i0 * mo, i1 - i0, mo, mo)
                csr_weight_gradient_if(features, bp, bi, bd, r, i0, i1, delta, g)
                if tile_norms:
                    norms[slot0 + tile] = squared_norm(grad, w0 + i0 * mo, w0 + i1 * mo)
                if mode == 1:
                    sgd_from_gradient_if(features, rows, g, lr, wd)
                elif mode == 2:
                    a, b = w0 + i0 * mo, w0 + i1 * mo
                    update_with(opt_code, features, theta[a:b], grad[a:b], s1[a:b], s2[a:b],
                                step, hyper, one)
                continue
            else:
                h_in = matrix(xb, i0, r, i1 - i0, mi)
            if mode == 1:
                gemm(True, False, -lr, h_in, delta, 1.0 - lr * wd, rows)
            else:
                gemm(True, False, 1.0, h_in, delta, 0.0,
                     matrix(grad, w0 + i0 * mo, i1 - i0, mo, mo))
                if tile_norms:
                    norms[slot0 + tile] = squared_norm(grad, w0 + i0 * mo, w0 + i1 * mo)
                if mode == 2:
                    a, b = w0 + i0 * mo, w0 + i1 * mo
                    update_with(opt_code, features, theta[a:b], grad[a:b], s1[a:b], s2[a:b],
                                step, hyper, one)
        if worker == l % n_workers:
            if mode == 1:
                _sgd_bias(delta, theta[bias:bias + mo], lr, wd)
            else:
                column_sums(delta, grad[bias:bias + mo])
                if tile_norms:
                    norms[slot0 + tiles] = squared_norm(grad, bias, bias + mo)
                if mode == 2:
                    update_with(opt_code, features, theta[bias:bias + mo], grad[bias:bias + mo],
                                s1[bias:bias + mo], s2[bias:bias + mo], step, hyper, one)
        barrier(team, n_workers)


@njit(**JIT)
def norm_slots(sizes, btiles):
    """How many slots of ``norms`` the backward tiles fill: each tile, then the bias, per layer."""
    slots = 0
    for l in range(sizes.shape[0] - 1):
        slots += btiles[l] + 1
    return slots


@njit(**JIT)
def update_chunks(worker, n_workers, opt_code, theta, g, s1, s2, t, hyper, norms, pieces, team,
                  features):
    """The optimizer update of every parameter, in ``UPDATE_CHUNK`` chunks split across the team.

    With ``hyper[CLIP_NORM]`` the gradient's global norm comes first: the
    sums of squares of its pieces are in ``norms[:pieces]`` (shared, float64;
    written by the backward tiles) or, with ``pieces == 0``, each chunk's
    goes there first, before a barrier. Every thread adds them up in order,
    so all of them (and one thread alone) scale by the same factor.
    """
    n = theta.shape[0]
    chunks = -(-n // UPDATE_CHUNK)
    scale = 1.0
    if hyper[CLIP_NORM] != 0:
        if pieces == 0:
            for chunk in range(worker, chunks, n_workers):
                norms[chunk] = squared_norm(g, chunk * UPDATE_CHUNK,
                                            min(n, (chunk + 1) * UPDATE_CHUNK))
            barrier(team, n_workers)
            pieces = chunks
        total = 0.0
        for piece in range(pieces):
            total += norms[piece]
        scale = clip_scale(math.sqrt(total), hyper[CLIP_NORM])
    for chunk in range(worker, chunks, n_workers):
        a, b = chunk * UPDATE_CHUNK, min(n, (chunk + 1) * UPDATE_CHUNK)
        update_with(opt_code, features, theta[a:b], g[a:b], s1[a:b], s2[a:b], t, hyper, scale)
    barrier(team, n_workers)


def update_chunks_if(features, worker, n_workers, opt_code, theta, g, s1, s2, t, hyper, norms,
                     pieces, team):
    """:func:`update_chunks` unless ``features`` is a literal without ``WHOLE`` (numba only)."""
    raise NotImplementedError


@overload(update_chunks_if, prefer_literal=True, inline="always")
def _update_chunks_if(features, worker, n_workers, opt_code, theta, g, s1, s2, t, hyper, norms,
                      pieces, team):
    if without(features, WHOLE):
        return lambda features, worker, n_workers, opt_code, theta, g, s1, s2, t, hyper, norms, \
            pieces, team: None

    def impl(features, worker, n_workers, opt_code, theta, g, s1, s2, t, hyper, norms, pieces,
             team):
        update_chunks(worker, n_workers, opt_code, theta, g, s1, s2, t, hyper, norms, pieces,
                      team, features)
    return impl


def tile_signatures(step_signature):
    """The signatures ``train_steps`` compiles ``forward_tiles`` and ``backward_tiles`` with.

    ``step_signature`` is ``train_steps``' own (a tuple of numba types, in
    its parameters' order). Most tile arguments are the step's own, passed
    through; the rest are the step's local integers, flag and offsets. Lets
    ``fastnn.backends`` have a tile compiled in another process while this
    one compiles the rest (``tests/test_features.py`` checks the prediction
    against what typing the step compiles).
    """
    def parameters(kernel):
        code = kernel.py_func.__code__
        return code.co_varnames[:code.co_argcount]

    of = dict(zip(parameters(train_steps), step_signature))
    of.update(x0=types.int64, step=types.int64, row0=types.int64, r=types.int64,
              mode=types.int64, tile_norms=types.boolean,
              woff=types.int64[::1], hoff=types.int64[::1])
    return tuple(tuple(of[n] for n in parameters(kernel))
                 for kernel in (forward_tiles, backward_tiles))


@njit(**JIT)
def train_steps(worker, n_workers, team, shared,
                X, Xp, Xi, Xd, labels, targets, scale, offset, rescale, order, sample_weight,
                perm,
                batch_size, step_begin, step_end,
                theta, sizes, codes, rates, seed, loss_code, features, ftiles, btiles,
                opt_code, hyper, t0, s1, s2,
                grad, gsum, hbuf, dbuf, xb, bp, bi, bd, yb, tb, wb, gathered, norms, step_losses,
                step_correct, rank, size, mpi, status):
    """Run mini-batch steps ``step_begin .. step_end - 1`` of one epoch on one thread of a team.

    Step ``s`` trains on the batch ``perm[s*batch_size : (s+1)*batch_size]``
    (the last batch may be partial). With ``size`` processes, process
    ``rank`` computes the share ``[r*rank//size, r*(rank+1)//size)`` of the
    batch's ``r`` rows and the shares' gradients are summed by one
    ``MPI_Allreduce`` a step before the same update on every process.

    Parameters
    ----------
    worker, n_workers : int
        This thread and the size of its team; every thread of the team makes
        the same call at once (one thread: ``0, 1``).
    team : ndarray of shape (team.TEAM_STATE_SIZE,), int64
        The team's barrier state (shared by the threads; zeros to start).
    shared : ndarray of shape (SLOT * n_workers,), int64
        The threads' findings (bad input, finiteness), shared.
    X : ndarray of shape (n_samples, m_0)
        The features in their own dtype (see ``kernels.gather``): converted
        to the network's dtype, and to ``x * scale + offset`` with
        ``rescale``, as each batch is read. Empty (shape (0, m_0)) for
        sparse input.
    Xp, Xi, Xd : ndarrays of shape (n_samples + 1,), (nnz,), (nnz,)
        Sparse input: the CSR ``indptr``, ``indices`` (int64) and ``data``
        (the network's dtype, checked finite; no rescaling), else empty.
    labels : ndarray of shape (n_samples, 1), integer
        Class labels (``CE_LABELS``), else empty.
    targets : ndarray of shape (n_samples, m_L), float
        Targets (the other losses), else empty. (Two arguments, so every
        loss shares one compiled step.)
    order : ndarray of shape (n_samples,) or (0,), int64
        For each position of ``perm`` in this process's share of its batch,
        the slot to read in its place (``fastnn.data.read_order``: file
        order, for memory maps; each worker reads its part of that order), or
        empty: slot order, the rows split among the workers.
    sample_weight : ndarray of shape (n_samples,) or (0,), float64
        Weights: a batch's loss is ``sum w_i l_i / sum w_i``; empty for none.
    perm : ndarray of shape (n_samples,), int64
        This epoch's sample order.
    theta : ndarray of shape (n_params,)
        Parameters, updated in place.
    sizes : ndarray of shape (n_layers + 1,), int64
        The widths ``m_0 .. m_L``.
    codes : ndarray of shape (n_layers,), int64
        Activation code per layer (identity for a fused-loss output).
    rates : ndarray of shape (n_layers,) or (0,), float64
        Dropout rate after each layer; masks keyed by ``seed``, the
        optimizer step and the unit's position in the batch.
    loss_code : int
    features : int
        ``kernels.features``' bits of the optional parts compiled in (SGD
        momentum, dropout, sparse input, the whole-gradient update). The entry point is compiled with
        ``loss_code``, ``features`` and ``opt_code`` as literals, so that
        only the run's loss and optimizer kernels are compiled; plain ints
        compile every one.
    ftiles, btiles : ndarray of shape (n_layers,), int64
        Tiles of each layer's output columns (forward) and input units (backward).
    opt_code : int
        Optimizer code (``NO_UPDATE``: only the gradient, into ``grad``);
        ``hyper`` its float64 hyperparameters (gradient clipping included: it
        applies to the step's whole, summed gradient).
    t0 : int
        Optimizer steps taken before this call (the next step is t0 + 1).
    s1, s2 : ndarrays shaped like ``theta``
        Optimizer state (updated).
    grad, gsum : ndarrays of shape (n_params + 1,)
        This process's gradient and, with several processes, their sum; the
        last entry carries a "stop" flag through the sum.
    hbuf, dbuf : ndarray of shape (batch_size * sum(sizes[1:]),)
    xb : ndarray of shape (batch_size * m_0,)
    bp, bi, bd : ndarrays of shape (batch_size + 1,), (nnz_cap,), (nnz_cap,)
        Sparse input: the batch CSR (``kernels.sparse.gather_csr``; ``nnz_cap``
        at least the stored entries of any batch), else empty (``xb`` then
        unused).
    yb : ndarray of shape (batch_size,), int64
    tb : ndarray of shape (batch_size * m_L,)
    wb : ndarray of shape (batch_size,), float64
        Gather buffers.
    gathered : bool
        The caller has put the one batch's rows in ``xb`` (or ``bp``/``bi``/``bd``)/``yb``/``tb``/``wb``
        (one step over ``perm = 0 .. n-1``; the sources are not read).
    norms : ndarray of shape (>= max(n_params / UPDATE_CHUNK, norm_slots(sizes, btiles)),), float64
        The pieces' sums of squares for ``clip_norm`` (shared).
    step_losses : ndarray of shape (>= step_end - step_begin,), float64
        This process's share of each step's mean batch loss (written by
        worker 0; the shares sum to the batch's).
    step_correct : ndarray of shape (>= step_end - step_begin,), int64
        Correct predictions of this process's rows, before the update.
    rank, size : int
        This process and the number of processes.
    mpi : ndarray of shape (4,), int64
        ``MPI_Allreduce``'s address (0 for one process), then the
        communicator, datatype and ``MPI_SUM`` handles (see ``kernels.mpi``).
    status : ndarray of shape (3,), int64
        When steps stop early (written by worker 0): why, the step, and for
        bad input the flat index ``row * width + column`` (or the row of a
        label). ``STOP_NONFINITE``: a non-finite forward pass or loss on
        some process; ``STOP_ZERO_WEIGHT``: a batch whose weights sum to 0;
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
    m0, mL = sizes[0], sizes[L]
    n_params = theta.shape[0]
    cap = batch_size
    woff, hoff = layer_offsets(sizes, cap)
    distributed = mpi[MPI_FN] != 0
    weighted = sample_weight.shape[0] > 0
    # The update needs the whole gradient first when it is summed over processes or
    # clipped by its norm; plain SGD goes into the products unless it is clipped.
    whole_gradient = distributed or opt_code == NO_UPDATE or hyper[CLIP_NORM] != 0
    if whole_gradient:
        mode = 0
    elif opt_code == SGD and hyper[MOMENTUM] == 0 and not clips(hyper):
        mode = 1
    else:
        mode = 2
    # clip_norm on one process: each backward tile adds up its own squares while they are
    # in cache (summed over processes, the gradient is only whole after the allreduce).
    tile_norms = mode == 0 and hyper[CLIP_NORM] != 0 and not distributed and \
        opt_code != NO_UPDATE
    pieces = norm_slots(sizes, btiles) if tile_norms else 0
    me = worker * SLOT
    sparse = bp.shape[0] > 0
    one, nothing, no = 1.0, 0.0, False            # typed values, not literals (one compile)
    no_pieces = np.int64(0)
    for s in range(step_begin, step_end):
        start = s * batch_size
        r = min(batch_size, n_total - start)
        lo = start + (r * rank) // size
        rl = start + (r * (rank + 1)) // size - lo
        t = t0 + s - step_begin + 1
        row0 = lo - start
        norm = float(r)
        if weighted:
            norm = 0.0
            for i in range(start, start + r):
                norm += sample_weight[perm[i]]
            if norm == 0:
                if worker == 0:
                    status[0] = STOP_ZERO_WEIGHT
                    status[1] = s
                return s - step_begin
        # 1. gather this worker's rows of the batch
        ordered = order.shape[0] > 0
        no_order = order[:0]
        if sparse:                            # one worker builds the batch CSR
            a, b = 0, rl if worker == 0 else 0
        else:
            a, b = _split(rl, n_workers, worker)
        if ordered:
            # A memory map: the share's rows sorted by their place in the file, each worker
            # reading its part of that order (so the pages fault in as few streams as there
            # are workers) into the rows' own slots.
            read = order[lo + a:lo + b]
            x_start, x_rows, x_out = lo, b - a, matrix(xb, 0, rl, m0, m0)
        else:
            read = no_order
            x_start, x_rows, x_out = lo + a, b - a, matrix(xb, a * m0, b - a, m0, m0)
        bad = -1
        kind = STOP_BAD_X
        if not gathered:
            if sparse:
                if worker == 0:
                    gather_csr_if(features, Xp, Xi, Xd, perm, lo, rl, bp, bi, bd)
            else:
                bad = gather_rows(X, perm, x_start, x_rows, x_out, scale, offset, rescale, read)
            if bad < 0:
                kind = STOP_BAD_Y
                bad = gather_targets(loss_code, labels, targets, perm, lo + a, b - a, yb[a:b],
                                     matrix(tb, a * mL, b - a, mL, mL), mL, one, nothing, no,
                                     no_order)
            if weighted:
                for i in range(a, b):
                    wb[i] = sample_weight[perm[lo + i]]
        shared[me + SLOT_BAD] = bad
        shared[me + SLOT_KIND] = kind
        barrier(team, n_workers)
        bad = -1
        for w in range(n_workers):            # the same choice on every worker
            found = shared[w * SLOT + SLOT_BAD]
            if found >= 0 and (bad < 0 or found < bad or
                               found == bad and shared[w * SLOT + SLOT_KIND] < kind):
                bad = found
                kind = shared[w * SLOT + SLOT_KIND]
        if bad >= 0:
            if worker == 0:
                status[0] = kind
                status[1] = s
                status[2] = bad
            if not distributed:
                return s - step_begin
        stop = bad >= 0
        # 2-3. forward, loss and output delta
        if not stop:
            ok = forward_tiles(worker, n_workers, xb, np.int64(0), bp, bi, bd, theta, sizes,
                               codes, rates, seed, t, row0, hbuf, woff, hoff, ftiles, rl, team,
                               features)
            shared[me + SLOT_OK] = 1 if ok else 0
            if worker == 0:
                out = matrix(hbuf, hoff[L - 1], rl, mL, mL)
                batch_targets = matrix(tb, 0, rl, mL, mL)
                step_correct[s - step_begin] = count_correct(loss_code, out, yb[:rl],
                                                             batch_targets)
                loss = loss_delta(loss_code, out, yb[:rl], batch_targets,
                                    wb[:rl] if weighted else wb[:0], norm, codes[L - 1],
                                    matrix(dbuf, hoff[L - 1], rl, mL, mL))
                step_losses[s - step_begin] = loss
                shared[SLOT_OK] = shared[SLOT_OK] if math.isfinite(loss) else 0
            barrier(team, n_workers)
            for w in range(n_workers):
                stop |= shared[w * SLOT + SLOT_OK] == 0
            if stop and not distributed:
                if worker == 0:
                    status[0] = STOP_NONFINITE
                    status[1] = s
                return s - step_begin
        # 4. backward (and, without a whole-gradient step, the update)
        if not stop:
            backward_tiles(worker, n_workers, xb, bp, bi, bd, theta, grad, sizes, codes, rates, seed, t,
                           row0, hbuf, dbuf, woff, hoff, btiles, rl, mode, opt_code, hyper, s1,
                           s2, norms, tile_norms, team, features)
        if opt_code == NO_UPDATE:
            continue
        # 5. the whole gradient: summed over processes, then updated
        if distributed:
            if worker == 0:
                grad[n_params] = BAD_INPUT if bad >= 0 else (1.0 if stop else 0.0)
                allreduce(mpi[MPI_FN], grad, gsum, n_params + 1, mpi[MPI_TYPE], mpi[MPI_OP],
                          mpi[MPI_COMM])
            barrier(team, n_workers)
            if gsum[n_params] != 0:
                if worker == 0 and bad < 0:
                    status[0] = STOP_PEER_BAD_INPUT if gsum[n_params] >= BAD_INPUT \
                        else STOP_NONFINITE
                    status[1] = s
                return s - step_begin
            update_chunks_if(features, worker, n_workers, opt_code, theta, gsum, s1, s2, t,
                             hyper, norms, no_pieces, team)
        elif mode == 0:
            update_chunks_if(features, worker, n_workers, opt_code, theta, grad, s1, s2, t,
                             hyper, norms, pieces, team)
    return step_end - step_begin
