"""What every suite shares: the parameter grids, the inputs, the helpers.

Inputs are built from a fixed seed and cached per process, so ``setup`` (which
asv_runner >= 0.3 re-runs before every timed call) only copies what a call
overwrites. The suites time a numba kernel against the ``fastnn.reference``
numpy function of the same math, selected by the ``backend`` parameter.
"""

import functools
import os
import subprocess
import sys
import time

import numpy as np

import fastnn
from fastnn import reference
from fastnn.activations import ACTIVATIONS
from fastnn.optimizers import SGD, Adam

BACKENDS = ("numba", "numpy")
DTYPES = ("float32", "float64")
ACTIVATION_NAMES = tuple(ACTIVATIONS)

# (batch, n_in, n_out) of one dense layer, from small to large.
SHAPES = ((16, 64, 64), (64, 784, 128), (256, 1024, 1024))
N_CLASSES = 10
BATCHES = tuple(batch for batch, _, _ in SHAPES)
# Flat parameter-vector lengths for the optimizer updates: one layer of each shape.
N_PARAMS = tuple(n_in * n_out + n_out for _, n_in, n_out in SHAPES)

# Optimizers as the benchmarks run them; t > 1 so SGD takes its momentum branch.
OPTIMIZERS = {
    "sgd_momentum": lambda: SGD(lr=0.01, momentum=0.9),
    "adam": lambda: Adam(lr=0.001),
}
OPTIMIZER_STEP = 10

# Whole networks: relu hidden layers, softmax cross-entropy output.
ARCHITECTURES = {"784-128-64-10": (784, 128, 64, 10), "784-1024-1024-10": (784, 1024, 1024, 10)}
# Training runs: "architecture bBATCH" -> (architecture, batch size).
TRAINING_RUNS = {f"{arch} b{batch}": (arch, batch) for arch, batch in [
    ("784-128-64-10", 16), ("784-128-64-10", 64), ("784-128-64-10", 256),
    ("784-1024-1024-10", 256)]}
N_TRAIN = 8_000
N_PREDICT = 10_000
N_FEATURES = 784
LEARNING_RATE = 0.01

# BLAS threads in every timed process. One by default: the ratios then compare
# the code, not how two BLAS thread pools cope with a busy machine (on a shared
# 2-core box a spinning OpenBLAS pool can cost 100x). Set FASTNN_BENCH_THREADS
# to time with more.
BLAS_THREADS = int(os.environ.get("FASTNN_BENCH_THREADS", "1"))


@functools.cache
def limit_blas_threads():
    """Cap numpy's and numba's (SciPy's) BLAS at ``BLAS_THREADS`` for this process."""
    import scipy.linalg.cython_blas  # noqa: F401  numba's BLAS, loaded before the scan
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().limit(limits=BLAS_THREADS, user_api="blas")


def rng(seed=0):
    return np.random.default_rng(seed)


@functools.lru_cache(maxsize=4)
def dense_layer(batch, n_in, n_out, dtype):
    """One dense layer's inputs; callers must not modify them.

    Returns
    -------
    x : ndarray of shape (batch, n_in)
    W : ndarray of shape (n_in, n_out)
        Glorot-scaled, so ``x @ W`` stays of order one.
    b : ndarray of shape (n_out,)
    delta : ndarray of shape (batch, n_out)
        A stand-in for d loss / d u.
    """
    r = rng()
    x = r.standard_normal((batch, n_in)).astype(dtype)
    W = (r.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = (0.1 * r.standard_normal(n_out)).astype(dtype)
    delta = r.standard_normal((batch, n_out)).astype(dtype)
    return x, W, b, delta


@functools.lru_cache(maxsize=4)
def layer_output(batch, n_in, n_out, dtype, activation):
    """``h = phi(x @ W + b)`` of :func:`dense_layer`, shape (batch, n_out)."""
    x, W, b, _ = dense_layer(batch, n_in, n_out, dtype)
    return reference.FORWARD[activation](x @ W + b).astype(dtype)


@functools.lru_cache(maxsize=4)
def logits(batch, dtype, n_classes=N_CLASSES):
    """Logits of shape (batch, n_classes) and int64 labels of shape (batch,)."""
    r = rng()
    return (3 * r.standard_normal((batch, n_classes))).astype(dtype), \
        r.integers(0, n_classes, batch)


@functools.lru_cache(maxsize=4)
def flat_params(n_params, dtype):
    """Parameters ``w``, gradient ``g`` and optimizer state ``s1``, ``s2`` (flat)."""
    r = rng()
    w = r.standard_normal(n_params).astype(dtype)
    g = (0.01 * r.standard_normal(n_params)).astype(dtype)
    s1 = (0.01 * r.standard_normal(n_params)).astype(dtype)
    s2 = (1e-4 * r.random(n_params)).astype(dtype)
    return w, g, s1, s2


@functools.lru_cache(maxsize=2)
def mnist_like(n_samples, seed=0):
    """Synthetic MNIST-shaped data: float32 pixels in [0, 1], labels 0..9.

    Returns
    -------
    X : ndarray of shape (n_samples, 784), float32
    y : ndarray of shape (n_samples,), int64
    """
    r = rng(seed)
    return r.random((n_samples, N_FEATURES), dtype=np.float32), r.integers(0, 10, n_samples)


def network(sizes, backend, dtype="float32"):
    """A relu MLP with a softmax cross-entropy output, seeded."""
    layers = [fastnn.Dense(n_in, n_out, "relu") for n_in, n_out in zip(sizes[:-2], sizes[1:-1])]
    layers.append(fastnn.Dense(sizes[-2], sizes[-1]))
    return fastnn.Network(layers, loss="cross_entropy", dtype=dtype, backend=backend)


def first_epoch_seconds(backend):
    """Seconds of the first one-epoch fit of a small network in this process.

    Run in a fresh interpreter, this is what a user waits for before the
    first epoch ends: kernel loading (or compiling) plus one epoch, after the
    imports.
    """
    limit_blas_threads()
    X, y = mnist_like(1_000)
    net = network(ARCHITECTURES["784-128-64-10"], backend)
    start = time.perf_counter()
    net.fit(X, y, epochs=1, batch_size=64, optimizer=SGD(LEARNING_RATE), verbose=0)
    return time.perf_counter() - start


def fresh_python_seconds(expression, numba_cache_dir, timeout):
    """Evaluate ``expression`` (a float) in a fresh interpreter and return it.

    The interpreter imports this module as ``common``; ``NUMBA_CACHE_DIR``
    points numba's on-disk kernel cache at ``numba_cache_dir``, so the
    caller decides whether the kernels start cold or cached.
    """
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"import common; print(repr(float({expression})))")
    env = dict(os.environ, NUMBA_CACHE_DIR=numba_cache_dir)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{done.stderr}")
    return float(done.stdout.split()[-1])
