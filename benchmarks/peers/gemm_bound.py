"""The GEMM bound: only the matrix products one training epoch needs.

Per step and layer: forward ``H_{l-1} W_l``, weight gradient
``H_{l-1}^T delta_l``, and ``delta_l W_l^T`` (not for the first layer), on
preallocated float32 buffers with the real batch shapes, the partial last
batch included. No activation, loss, bias or update: a floor under any
trainer that calls this BLAS.

The predict bound is the same for inference: the forward products of all
10,000 prediction rows, one product per layer.

The machine's peak (``run_peak``) is one large square sgemm through the same
BLAS on all cores: what the step's BLAS reaches when nothing is small.
"""

import statistics

import numpy as np

from .common import (N_PREDICT, all_cores, epoch_flops, peer_threads, steps_per_epoch,
                     timed_repeats)


def _buffers(config, n):
    rng = np.random.default_rng(0)
    b = min(config.batch_size, n)
    sizes = config.sizes
    H = [rng.random((b, m), dtype=np.float32) for m in sizes]           # H[0] is the input batch
    D = [rng.random((b, m), dtype=np.float32) - 0.5 for m in sizes[1:]]
    W = [rng.random((a, c), dtype=np.float32) - 0.5 for a, c in zip(sizes[:-1], sizes[1:])]
    dW = [np.empty_like(w) for w in W]
    return b, H, D, W, dW


def _limit(threads):
    import scipy.linalg.cython_blas  # noqa: F401  SciPy's OpenBLAS, the one numba calls
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads, user_api="blas")


def _predict_buffers(config):
    rng = np.random.default_rng(1)
    H = [rng.random((N_PREDICT, m), dtype=np.float32) for m in config.sizes]
    W = [rng.random((a, c), dtype=np.float32) - 0.5
         for a, c in zip(config.sizes[:-1], config.sizes[1:])]
    return H, W


def _measure(epoch, predict, repeats, config, n):
    epoch()                                   # compile / first touch
    times = timed_repeats(epoch, repeats)
    seconds = statistics.median(times)
    flops = epoch_flops(config.sizes, n)
    predict()
    return dict(steady_epoch=seconds, times=times, steps=steps_per_epoch(n, config.batch_size),
                gflop_per_epoch=flops / 1e9, gflops=flops / seconds / 1e9,
                predict_seconds=float(statistics.median(timed_repeats(predict, repeats))))


def run_scipy(config, data, opts):
    """Through ``fastnn.kernels.blas.gemm`` from an ``@njit`` loop (SciPy's OpenBLAS)."""
    from numba import njit
    from numba.typed import List

    from fastnn.kernels.blas import gemm

    @njit
    def epoch_products(H, D, W, dW, n, b):
        L = len(W)
        for start in range(0, n, b):
            r = min(b, n - start)
            for l in range(L):
                gemm(False, False, 1.0, H[l][:r], W[l], 0.0, H[l + 1][:r])
            for l in range(L - 1, -1, -1):
                gemm(True, False, 1.0, H[l][:r], D[l][:r], 0.0, dW[l])
                if l > 0:
                    gemm(False, True, 1.0, D[l][:r], W[l], 0.0, D[l - 1][:r])

    @njit
    def predict_products(H, W):
        for l in range(len(W)):
            gemm(False, False, 1.0, H[l], W[l], 0.0, H[l + 1])

    n = data["X_train"].shape[0]
    b, H, D, W, dW = _buffers(config, n)
    H, D, W, dW = List(H), List(D), List(W), List(dW)
    HP, WP = (List(a) for a in _predict_buffers(config))
    with _limit(peer_threads(opts)):
        return _measure(lambda: epoch_products(H, D, W, dW, n, b),
                        lambda: predict_products(HP, WP), opts.repeats, config, n)


def run_numpy(config, data, opts):
    """The same products with ``np.matmul(..., out=...)`` (numpy's own OpenBLAS)."""
    n = data["X_train"].shape[0]
    b, H, D, W, dW = _buffers(config, n)
    L = len(W)

    def epoch_products():
        for start in range(0, n, b):
            r = min(b, n - start)
            for l in range(L):
                np.matmul(H[l][:r], W[l], out=H[l + 1][:r])
            for l in range(L - 1, -1, -1):
                np.matmul(H[l][:r].T, D[l][:r], out=dW[l])
                if l > 0:
                    np.matmul(D[l][:r], W[l].T, out=D[l - 1][:r])

    HP, WP = _predict_buffers(config)

    def predict_products():
        for l in range(L):
            np.matmul(HP[l], WP[l], out=HP[l + 1])

    with _limit(peer_threads(opts)):
        return _measure(epoch_products, predict_products, opts.repeats, config, n)


PEAK_REPEATS = 5


def run_peak(opts):
    """The machine's peak: a ``size``-cubed float32 product through fastnn's gemm, all cores.

    ``fastnn.kernels.blas.gemm`` from an ``@njit`` function, so SciPy's
    OpenBLAS through numba's ``numba_xxgemm``, the BLAS of fastnn's training
    step; its own thread pool set to every core this process may use
    (whatever ``--threads`` says: this is the machine's figure, not a run's).
    One warm-up call, then the median of at least ``PEAK_REPEATS`` calls.

    Returns
    -------
    dict
        ``gflops`` (2 size^3 / median seconds / 1e9), ``seconds``, ``times``,
        ``size``, ``threads``.
    """
    from numba import njit

    from fastnn.kernels.blas import gemm

    @njit
    def product(A, B, C):
        gemm(False, False, 1.0, A, B, 0.0, C)

    size, threads = opts.peak_size, all_cores()
    rng = np.random.default_rng(2)
    A = rng.random((size, size), dtype=np.float32) - 0.5
    B = rng.random((size, size), dtype=np.float32) - 0.5
    C = np.empty((size, size), np.float32)
    with _limit(threads):
        product(A, B, C)                      # compile, first touch, BLAS thread start
        times = timed_repeats(lambda: product(A, B, C), max(PEAK_REPEATS, opts.repeats))
    seconds = statistics.median(times)
    return dict(gflops=2 * size ** 3 / seconds / 1e9, seconds=seconds, times=times, size=size,
                threads=threads)
