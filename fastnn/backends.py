"""The two backends: numba kernels, and the pure-numpy reference.

Both see the network the same way: a flat parameter vector ``theta`` (see
``fastnn.kernels.step``), the widths ``sizes``, and per layer the
activation as the kernels apply it (identity on a fused-loss output layer).
"""

import inspect
import os
import pickle
import subprocess
import sys

import numpy as np
from numba import types as _nbtypes
from numba.core.errors import NumbaError
from numba._dispatcher import compute_fingerprint as _fingerprint
from numba.core.typing.typeof import Purpose, typeof

from . import reference
from .data import NO_WEIGHTS, DataError, bad_label_error, bad_value_error
from . import data as _data
from ._threads import available_cores, team
from .kernels import activations as _ka
from .kernels import features as _kf
from .kernels import losses as _kl
from .kernels import optimizers as _ko
from .kernels import step as _ks
from .kernels import team as _kteam
from .kernels import forward as _kt


class Specialized:
    """A kernel's entry point compiled for literal values of some of its arguments.

    ``kernels.features``: the training step and predict can be compiled for
    one configuration (loss, optimizer, optional parts), with those
    arguments typed as literals, so that a run compiles only the kernels it
    uses. numba's dispatcher would type them as plain ints (and compile
    every kernel), so the signature is built here from the arguments' types
    and compiled, or loaded from numba's cache, with ``Dispatcher.compile``;
    the compiled entry point is then called directly.

    Parameters
    ----------
    kernel : numba dispatcher
    literal : sequence of str
        The names of the arguments passed as literals (ints).
    """

    def __init__(self, kernel, literal):
        self.kernel = kernel
        names = list(inspect.signature(kernel.py_func).parameters)
        self.literal = frozenset(names.index(name) for name in literal)
        self._entries = {}

    def entry(self, args, literal=True, before_compile=None):
        """The compiled entry point for ``args`` (compiled or loaded on first use).

        ``literal=False``: the literal arguments typed as plain ints (the
        generic entry point, which dispatches on them at run time). Looked up
        by numba's own type fingerprints (5 us for the step's 57 arguments;
        building the numba types costs 270 us, once per new key).
        ``before_compile(signature)`` is called before a signature this process
        has not compiled or loaded yet is (see :func:`compile_on_two_cores`).
        """
        try:
            key = (literal,) + tuple(int(a) if i in self.literal else _fingerprint(a)
                                     for i, a in enumerate(args))
        except (TypeError, ValueError):         # a value numba has no fingerprint for
            key = None
        entry = self._entries.get(key)
        if entry is None:
            sig = tuple(_nbtypes.literal(int(a)) if literal and i in self.literal
                        else typeof(a, Purpose.argument) for i, a in enumerate(args))
            entry = self._entries.get(sig)
            if entry is None:
                if before_compile is not None:
                    before_compile(sig)
                entry = self._entries[sig] = self.kernel.compile(sig)
            if key is not None:
                self._entries[key] = entry
        return entry


def _cached(kernel, sig):
    """Whether numba's on-disk cache holds ``kernel`` compiled for ``sig`` (True if unsure)."""
    try:
        cache = kernel._cache
        key = cache._index_key(sig, kernel.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:                           # no cache (cache=False), another numba
        return True


#: Set to "0" in the environment (or ``COMPILE_HELPER["on"] = False`` here): a cold
#: training step compiles in this process only (``fastnn.warmup``'s own child
#: processes do, since they already use every core).
HELPER_ENV = "FASTNN_COMPILE_HELPER"
COMPILE_HELPER = {"on": True, "timeout": 20.0}
_HELPER = "import pickle, sys; from fastnn.kernels import step; " \
          "step.forward_tiles.compile(pickle.loads(sys.stdin.buffer.read()))"


def compiler_environment():
    """The environment of a child process that compiles into this one's numba cache.

    This process's own, with fastnn's folder first on ``PYTHONPATH`` (the
    same source, installed or not) and no compile helper of its own.
    """
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    env[HELPER_ENV] = "0"
    return env


def compile_on_two_cores(sig):
    """Compile a cold training step on two cores: ``forward_tiles`` in a helper process.

    numba compiles on one core, one function after another. When the step
    ``train_steps(sig)`` is not in numba's cache yet (a first run in a fresh
    environment) and another core is free, a child process compiles
    ``forward_tiles`` (about a fifth of the step's compile) into the same
    cache while this process compiles ``backward_tiles``; then, once the
    child is done, compiling the step loads ``forward_tiles`` from the cache.
    The signatures come from ``kernels.step.tile_signatures``. A child that
    fails or takes longer than ``COMPILE_HELPER["timeout"]`` seconds is
    stopped, and this process compiles what it did not (numba writes cache
    files whole, by renaming). Nothing here changes what is compiled, only
    where: the step's code is the same.
    """
    if not COMPILE_HELPER["on"] or os.environ.get(HELPER_ENV, "1") == "0" or \
            getattr(sys, "frozen", False) or available_cores() < 2 or \
            _cached(_ks.train_steps, sig):             # frozen: sys.executable is the app
        return
    forward, backward = _ks.tile_signatures(sig)
    if _cached(_ks.forward_tiles, forward):
        return
    try:
        child = subprocess.Popen([sys.executable, "-c", _HELPER], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env=compiler_environment())
    except OSError:                             # no process to be had: compile here
        return
    try:
        try:
            child.stdin.write(pickle.dumps(forward))
            child.stdin.close()
        except OSError:                         # the child is gone already
            pass
        try:
            _ks.backward_tiles.compile(backward)
        except NumbaError:                      # the step's own compile reports it
            pass
        child.wait(timeout=COMPILE_HELPER["timeout"])
    except subprocess.TimeoutExpired:
        pass
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


_TRAIN_STEPS = Specialized(_ks.train_steps, ("loss_code", "features", "opt_code"))
_PREDICT_RAW = Specialized(_kt.predict_raw, ("features",))
#: The (loss, optimizer) pairs whose training step is compiled on its own when the run
#: uses none of the optional parts (``kernels.features``; sigmoid or tanh layers, which
#: are no option, give a step of their own too, see ``CURVED_LEAN_DTYPES``): the common
#: first runs
#: (classification and regression, SGD and Adam, and ``loss_and_gradients``) compile
#: only their own kernels (about half of the step's cold compile). Every other
#: configuration shares one generic step that dispatches at run time, so a test suite
#: or a sweep over many configurations compiles it once, not once per configuration.
LEAN_STEPS = frozenset((loss, opt) for loss in (_kl.CE_LABELS, _kl.MSE)
                       for opt in (_ko.SGD, _ko.ADAM, _ks.NO_UPDATE))


#: The dtypes whose sigmoid or tanh networks get lean steps of their own (float32, the
#: default and the fast one); float64 ones, mostly checks against other libraries,
#: share the generic step (a lean step is a whole compile per configuration).
CURVED_LEAN_DTYPES = frozenset({np.dtype(np.float32)})


def _lean(loss_code, features, optimizer_code, dtype=np.float32):
    """Whether this run's step is compiled on its own (see ``LEAN_STEPS``)."""
    if features & _kf.CURVED and np.dtype(dtype) not in CURVED_LEAN_DTYPES:
        return False
    return features & ~_kf.CURVED == 0 and (int(loss_code), int(optimizer_code)) in LEAN_STEPS


def _curved(spec):
    """Whether a layer's activation is sigmoid or tanh (``kernels.features.CURVED``)."""
    codes = np.asarray(spec.codes)
    return bool(np.any((codes == _ka.SIGMOID) | (codes == _ka.TANH)))


def _step_features(spec, optimizer_code, hyper, sparse, mpi_fn=0):
    """``kernels.features``' bits of a run: what its compiled step contains.

    From the values the step's own conditions test: ``hyper`` (momentum,
    ``clip_norm``), the dropout rates, ``bp`` being a batch CSR, and the
    allreduce address ``mpi[MPI_FN]`` (several processes); and the layers'
    activation codes (sigmoid or tanh).
    """
    update = optimizer_code != _ks.NO_UPDATE
    return _kf.features_of(
        momentum=optimizer_code == _ko.SGD and hyper[_ko.MOMENTUM] != 0,
        dropout=bool(np.any(np.asarray(spec.rates) > 0)), sparse=sparse,
        whole=update and (mpi_fn != 0 or hyper[_ko.CLIP_NORM] != 0), curved=_curved(spec))


class NumbaBackend:
    """Runs the numba kernels; buffers are allocated once per batch size."""

    name = "numba"

    def __init__(self):
        self._train_buffers = {}

    @staticmethod
    def _work(spec, rows):
        width = int(spec.sizes[1:].sum())
        return np.empty(rows * width, spec.dtype), np.empty(rows * width, spec.dtype)

    def predict_raw(self, spec, theta, src, n_workers=1):
        """Last layer's output for the source ``src`` (logits for the fused losses).

        Returns ``(out, ok, bad)``: ``ok`` whether every value was finite,
        ``bad`` the flat index of a non-finite input value (or -1). Rows go
        through in chunks of :func:`predict_rows` rows (see
        ``kernels.forward.predict_raw``).
        """
        sizes = [int(v) for v in spec.sizes]
        # Sparse rows' first product costs their stored values, not the width.
        n, rows = src.n, predict_rows(sizes[1:] if src.sparse else sizes)
        n_workers = max(1, min(n_workers, -(-n // rows)))
        hbuf = np.empty(n_workers * rows * int(spec.sizes[1:].sum()), spec.dtype)
        xbuf = np.empty(0 if src.sparse else n_workers * rows * spec.sizes[0], spec.dtype)
        out = np.empty((n, spec.sizes[-1]), spec.dtype)
        status = np.zeros(2 * n_workers, np.int64)
        next_chunk = np.zeros(1, np.int64)
        scale, offset, rescale = _rescale_args(spec)
        ftiles = predict_tiles(spec.sizes, rows)

        features = _kf.features_of(momentum=False, dropout=False, sparse=src.sparse, whole=False,
                                    curved=_curved(spec))

        def args(worker):
            return (worker, n_workers, next_chunk, src.values, *src.csr_arrays(spec.dtype),
                    scale, offset, rescale, theta, spec.sizes, spec.codes, ftiles, hbuf, xbuf,
                    rows, out, status, features)

        entry = _PREDICT_RAW.entry(args(0))
        team().run(n_workers, lambda worker: entry(*args(worker)))
        bad = [int(b) for b in status[0::2] if b >= 0]
        return out, bool(status[1::2].all()), (min(bad) if bad else -1)

    @staticmethod
    def output_activation(name, out):
        """The loss's output activation of the logits ``out``, row by row (batch-invariant)."""
        probabilities = np.empty_like(out)
        _kl.output_activation(_kl.OUTPUT_ACTIVATIONS[name], out, probabilities)
        return probabilities

    def loss_and_gradients(self, spec, theta, X, labels, targets, loss_code, step=0,
                           weights=None):
        """One step of the training kernel over all of ``X``, with no update.

        ``X`` is a dense array or a canonical ``scipy.sparse.csr_matrix`` in
        the network's dtype (``fastnn.data.sparse_source``).
        """
        n = X.shape[0]
        hbuf, dbuf = self._work(spec, n)
        grad = np.zeros(theta.size + 1, spec.dtype)
        w = NO_WEIGHTS if weights is None else _writable(weights, np.float64)
        yb = _writable(labels, np.int64) if loss_code == _kl.CE_LABELS else np.zeros(n, np.int64)
        tb = np.zeros((n, spec.sizes[-1]), spec.dtype) if loss_code == _kl.CE_LABELS \
            else _writable(targets, spec.dtype)
        if hasattr(X, "tocsr"):
            bp, bi, bd = _data.sparse_source(X).csr
            X = np.zeros((0, spec.sizes[0]), spec.dtype)
        else:
            X = _writable(X, spec.dtype)
            bp, bi, bd = _data.NO_INDEX, _data.NO_INDEX, np.zeros(0, spec.dtype)
        losses, correct, status = np.zeros(1), np.zeros(1, np.int64), np.zeros(3, np.int64)
        no_hyper = np.zeros(_ko.N_HYPER)
        features = _step_features(spec, _ks.NO_UPDATE, no_hyper, bp.shape[0] > 0)
        args = (
            0, 1, np.zeros(_kteam.TEAM_STATE_SIZE, np.int64), np.zeros(_ks.SLOT, np.int64),
            X, _data.NO_INDEX, _data.NO_INDEX, bd[:0], _no_labels(), _no_targets(spec), 1.0, 0.0,
            False, _NO_ORDER, w,
            np.arange(n), n, 0, 1, theta, spec.sizes, spec.codes, spec.rates, spec.seed,
            loss_code, features, *tile_plan(spec.sizes, n), _ks.NO_UPDATE, no_hyper, step - 1,
            grad, grad, grad, grad, hbuf, dbuf, X.reshape(-1), bp, bi, bd, yb, tb.reshape(-1),
            w if w.shape[0] else np.empty(n), True, np.zeros(1),
            losses, correct, 0, 1, np.zeros(4, np.int64), status)
        done = _TRAIN_STEPS.entry(args, _lean(loss_code, features, _ks.NO_UPDATE, spec.dtype),
                                  compile_on_two_cores)(*args)
        return (losses[0] if done else np.nan), grad[:theta.size]

    def train_steps(self, spec, theta, data, perm, batch_size, step_begin, step_end, optimizer,
                    step_losses, step_correct, strategy, n_workers=1, first_step=0):
        nnz = data.X.max_batch_nnz(batch_size) if data.X.sparse else -1
        key = (batch_size, spec.dtype, tuple(spec.sizes), strategy.size > 1, n_workers,
               data.X.sparse)
        buffers = self._train_buffers.get(key)
        if buffers is not None and buffers[-1][1].shape[0] < nnz:
            buffers = None                   # a denser batch than these buffers hold
        if buffers is None:
            hbuf, dbuf = self._work(spec, batch_size)
            ftiles, btiles = tile_plan(spec.sizes, batch_size)
            grad = np.empty(theta.size + 1, spec.dtype)
            buffers = (hbuf, dbuf, grad,
                       np.empty_like(grad) if strategy.size > 1 else grad,
                       np.empty(batch_size * spec.sizes[0], spec.dtype),
                       np.empty(batch_size, np.int64),
                       np.empty(batch_size * spec.sizes[-1], spec.dtype),
                       np.empty(batch_size, np.float64), np.zeros(3, np.int64),
                       np.zeros(_kteam.TEAM_STATE_SIZE, np.int64),
                       np.zeros(_ks.SLOT * n_workers, np.int64),
                       np.zeros(max(-(-theta.size // _ks.UPDATE_CHUNK),
                                    _ks.norm_slots(spec.sizes, btiles))),
                       ftiles, btiles, _batch_csr(batch_size, nnz, spec.dtype))
            self._train_buffers = {key: buffers}
        (hbuf, dbuf, grad, gsum, xb, yb, tb, wb, status, team_state, shared, norms, ftiles,
         btiles, (bp, bi, bd)) = buffers
        state = optimizer.state
        rank, size, *mpi = strategy.kernel_args(spec.dtype)
        mpi = np.array(mpi, np.int64)
        scale, offset, rescale = _rescale_args(spec)
        hyper = optimizer.hyper_array()

        # A memory map reads each share's rows in file order (``perm`` is the block's
        # stretch of the epoch's order, so this costs the block's rows, not the epoch's).
        order = _data.read_order(perm, batch_size, strategy.rank, strategy.size) \
            if data.mapped else _NO_ORDER

        features = _step_features(spec, optimizer.code, hyper, bp.shape[0] > 0,
                                  mpi[_ks.MPI_FN])

        def args(worker):
            return (worker, n_workers, team_state, shared,
                    data.X.values, *data.X.csr_arrays(spec.dtype),
                    *_labels_and_targets(spec, data), scale, offset, rescale, order,
                    data.weights, perm, batch_size, step_begin, step_end, theta,
                    spec.sizes, spec.codes, spec.rates, spec.seed, data.code, features, ftiles,
                    btiles, optimizer.code, hyper, state["t"], state["s1"], state["s2"], grad,
                    gsum, hbuf, dbuf, xb, bp, bi, bd, yb, tb, wb, False, norms, step_losses,
                    step_correct, rank, size, mpi, status)

        # Several processes (MPI) already compile on every core: no helper.
        entry = _TRAIN_STEPS.entry(args(0), _lean(data.code, features, optimizer.code, spec.dtype),
                                   compile_on_two_cores if strategy.size == 1 else None)
        completed = team().run(n_workers, lambda worker: entry(*args(worker)))
        if completed < step_end - step_begin:
            _raise_input_error(spec, data, strategy, int(status[0]),
                               first_step + int(status[1]), int(status[2]))
        return completed


_NO_ORDER = np.zeros(0, np.int64)


def _batch_csr(batch_size, nnz, dtype):
    """The batch CSR buffers ``(bp, bi, bd)`` for up to ``nnz`` entries (empty for dense input)."""
    if nnz < 0:
        return _data.NO_INDEX, _data.NO_INDEX, np.zeros(0, dtype)
    return (np.zeros(batch_size + 1, np.int64), np.zeros(max(nnz, 1), np.int64),
            np.zeros(max(nnz, 1), dtype))


def _no_labels():
    return np.zeros((0, 1), np.int64)


def _no_targets(spec):
    return np.zeros((0, int(spec.sizes[-1])), spec.dtype)


def _labels_and_targets(spec, data):
    """The step's ``labels`` and ``targets`` arguments: the loss's, and an empty other one."""
    if data.code == _kl.CE_LABELS:
        return data.y.values, _no_targets(spec)
    return _no_labels(), data.y.values

#: Rows of a predict chunk: every chunk of a network has one shape (the last
#: one padded), so predictions do not depend on the batch (see
#: kernels.forward.predict_raw). Narrow networks use small chunks, whose
#: products fit OpenBLAS's small-matrix kernel (cut in tiles as the training
#: step's are); wide ones large chunks, one product a layer, over which the
#: packed kernel's packing pays. Measured on 10,000 rows against one product
#: a layer over all of them (``benchmarks/predict_cost.py``, one core): at
#: 784-128-64-10, 16-row chunks in tiles 1.03-1.07x (the same untiled 1.8x,
#: 256 rows 1.04-1.07x); at 784-1024-1024-10, 128-row chunks in tiles 1.21x,
#: untiled 1.19x, 256 rows untiled 1.05x. A single-row predict computes one
#: whole chunk.
PREDICT_ROWS = 16
WIDE_PREDICT_ROWS = 256


def predict_rows(sizes):
    """The rows of ``predict``'s chunks for a network of layer ``sizes``."""
    small = all(PREDICT_ROWS * a * b <= SMALL_PRODUCT * MAX_SMALL_TILES
                for a, b in zip(sizes[:-1], sizes[1:]))
    return PREDICT_ROWS if small else WIDE_PREDICT_ROWS


def predict_tiles(sizes, rows):
    """Tiles of each layer's output columns in a predict chunk of ``rows`` rows (int64).

    Threads share predict by whole chunks, so tiles only serve the
    small-matrix kernel: the training step's plan for small chunks, one
    product a layer for large ones.
    """
    if rows >= WIDE_PREDICT_ROWS:
        return np.ones(len(sizes) - 1, np.int64)
    return tile_plan(sizes, rows)[0]


#: OpenBLAS computes a product of at most this many multiply-adds (M * N * K)
#: with its small-matrix kernel (no packing; SkylakeX and later), much faster
#: for a small batch. The tile plan cuts a layer's products into tiles that fit
#: it when a few tiles do, and in two otherwise (one for each core here).
SMALL_PRODUCT = 1_000_000
MAX_SMALL_TILES = 4
LARGE_TILES = 2


def _tiles(rows, width, other):
    """Tiles of ``width`` for products of ``rows x other x width`` multiply-adds."""
    work = rows * width * other
    if work <= SMALL_PRODUCT:
        return 1
    small = -(-work // SMALL_PRODUCT)
    tiles = small if small <= MAX_SMALL_TILES else LARGE_TILES
    return max(1, min(tiles, width))


def tile_plan(sizes, rows):
    """``(ftiles, btiles)``: how the step cuts each layer's products (int64 arrays).

    Forward: tiles of each layer's output columns; backward: of its input
    units. A function of the widths and the batch's rows only, never of the
    number of threads, so every team size computes the same tiles, and the
    same bits.
    """
    sizes = [int(v) for v in sizes]
    pairs = list(zip(sizes[:-1], sizes[1:]))
    ftiles = [_tiles(rows, n_out, n_in) for n_in, n_out in pairs]
    btiles = [_tiles(rows, n_in, n_out) for n_in, n_out in pairs]
    return np.array(ftiles, np.int64), np.array(btiles, np.int64)


def _writable(array, dtype):
    """``array`` as a writable C-contiguous array of ``dtype`` (a copy only when needed).

    numba compiles read-only arrays as a type of their own: the kernels get writable ones.
    """
    array = np.ascontiguousarray(array, dtype)
    return array if array.flags.writeable else array.copy()


def _rescale_args(spec):
    """``(scale, offset, rescale)`` of the network's Rescaling layer for the kernels."""
    if spec.rescaling is None:
        return 1.0, 0.0, False
    return spec.rescaling.scale, spec.rescaling.offset, True


def raise_zero_weight(step):
    raise DataError(f"sample_weight sums to 0 over the batch of step {step + 1} of the epoch; "
                    "every batch needs a positive total weight (use larger batches or give "
                    "every class some weight)")


def _raise_input_error(spec, data, strategy, reason, step, index):
    """Raise the error for bad input that stopped the steps (on every process)."""
    if reason == _ks.STOP_ZERO_WEIGHT:
        raise_zero_weight(step)
    if reason not in (_ks.STOP_BAD_X, _ks.STOP_BAD_Y, _ks.STOP_PEER_BAD_INPUT):
        return                               # non-finite: the epoch runner rolls back
    with strategy.collective():              # the process that read it raises first
        if reason == _ks.STOP_BAD_X:
            raise bad_value_error(data.X, index, spec.dtype)
        if reason == _ks.STOP_BAD_Y:
            if data.code == _kl.CE_LABELS:
                raise bad_label_error(data.y, index, int(spec.sizes[-1]))
            raise bad_value_error(data.y, index, spec.dtype, name="y")


class NumpyBackend:
    """The reference: the same math in plain numpy, one step at a time."""

    name = "numpy"

    @staticmethod
    def output_activation(name, out):
        return {"softmax": reference.softmax, "sigmoid": reference.sigmoid,
                "exp": np.exp}[name](out)

    def predict_raw(self, spec, theta, src, n_workers=1):
        X = src.take(slice(None), spec.dtype, spec.rescaling)
        bad = _first_nonfinite(X) if src.dtype.kind == "f" else -1
        Ws, bs = reference.layer_views(theta, spec.sizes)
        with np.errstate(over="ignore", invalid="ignore"):
            Hs = reference.forward(X, Ws, bs, spec.kernel_activations)
        ok = bad < 0 and all(np.isfinite(h).all() for h in Hs)
        return Hs[-1], ok, bad

    def _loss_and_grad(self, spec, theta, X, y, step, weights=None):
        if hasattr(X, "toarray"):
            X = X.toarray()                  # the reference densifies sparse input
        Ws, bs = reference.layer_views(theta, spec.sizes)
        loss, grads = reference.loss_and_gradients(X, y, Ws, bs, spec.kernel_activations,
                                                   spec.loss.name, spec.rates, spec.seed, step,
                                                   weights)
        flat = np.concatenate([a.ravel() for pair in grads for a in pair])
        return loss, flat.astype(theta.dtype, copy=False)

    def loss_and_gradients(self, spec, theta, X, labels, targets, loss_code, step=0,
                           weights=None):
        y = labels if loss_code == _kl.CE_LABELS else targets
        return self._loss_and_grad(spec, theta, X, y, step, weights)

    def train_steps(self, spec, theta, data, perm, batch_size, step_begin, step_end, optimizer,
                    step_losses, step_correct, strategy, n_workers=1, first_step=0):
        code = data.code
        labels = code == _kl.CE_LABELS
        weighted = data.weights.shape[0] > 0
        hp = optimizer.hyperparameters()
        state = optimizer.state
        n = perm.shape[0]
        for s in range(step_begin, step_end):
            start = s * batch_size
            r = min(batch_size, n - start)
            lo = start + r * strategy.rank // strategy.size
            hi = start + r * (strategy.rank + 1) // strategy.size
            rows = perm[lo:hi]
            x = data.X.take(rows, spec.dtype, spec.rescaling)
            y = data.y.take(rows, np.int64 if labels else spec.dtype)
            with strategy.collective():      # a bad row on one process stops them all
                _check_rows(spec, data, rows, x, y, labels)
            if labels:
                y = y[:, 0]
            w = data.weights[rows] if weighted else None
            norm = float(data.weights[perm[start:start + r]].sum()) if weighted else float(r)
            if norm == 0:
                raise_zero_weight(first_step + s)
            t = state["t"] + s - step_begin + 1
            Ws, bs = reference.layer_views(theta, spec.sizes)
            with np.errstate(over="ignore", invalid="ignore"):
                Hs, masks = reference.forward_train(x, Ws, bs, spec.kernel_activations,
                                                    spec.rates, spec.seed, t, lo - start)
                loss, delta = reference.loss_and_delta(spec.loss.name, Hs[-1], y,
                                                       spec.kernel_activations[-1], w, norm)
            step_correct[s - step_begin] = reference.count_correct(spec.loss.name, Hs[-1], y)
            step_losses[s - step_begin] = loss
            bad = not np.isfinite(loss) or not all(np.isfinite(h).all() for h in Hs)
            if strategy.size == 1:
                if bad:
                    return s - step_begin
                grads = reference.backward(x, Ws, spec.kernel_activations, Hs, delta, masks)
                grad = np.concatenate([a.ravel() for pair in grads for a in pair])
            else:
                # Every process enters every step's sum; the last entry says "stop".
                grad = np.zeros(theta.size + 1, theta.dtype)
                grad[-1] = bad
                if not bad:
                    grads = reference.backward(x, Ws, spec.kernel_activations, Hs, delta,
                                               masks)
                    grad[:-1] = np.concatenate([a.ravel() for pair in grads for a in pair])
                strategy.sum(grad)
                if grad[-1]:
                    return s - step_begin
                grad = grad[:-1]
            reference.optimizer_update(optimizer.name, theta, grad.astype(theta.dtype),
                                       state["s1"], state["s2"], t, hp)
        return step_end - step_begin


def _first_nonfinite(values):
    """Flat index of the first non-finite value of a 2-D array, or -1."""
    bad = ~np.isfinite(values)
    return int(np.argmax(bad.ravel())) if bad.any() else -1


def _check_rows(spec, data, rows, x, y, labels):
    """The reference's checks of a batch read from a source (the kernels' twins)."""
    if data.X.dtype.kind == "f" and not data.X.sparse:   # sparse: checked up front
        bad = _first_nonfinite(np.asarray(data.X.array[rows], np.float64).astype(spec.dtype)
                               .reshape(len(rows), -1))
        if bad >= 0:
            row, col = divmod(bad, x.shape[1])
            raise bad_value_error(data.X, rows[row] * x.shape[1] + col, spec.dtype)
    if labels:
        out = (y[:, 0] < 0) | (y[:, 0] >= spec.sizes[-1])
        if out.any():
            raise bad_label_error(data.y, rows[int(np.argmax(out))], int(spec.sizes[-1]))
    elif data.y.dtype.kind == "f":
        bad = _first_nonfinite(y)
        if bad >= 0:
            row, col = divmod(bad, y.shape[1])
            raise bad_value_error(data.y, rows[row] * y.shape[1] + col, spec.dtype, name="y")


BACKENDS = {"numba": NumbaBackend, "numpy": NumpyBackend}


def get_backend(name):
    try:
        return BACKENDS[name]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown backend {name!r}; valid names: {', '.join(BACKENDS)}") from None
