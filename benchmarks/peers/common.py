"""What every worker shares: the configurations, the data, the initial weights.

Each worker process rebuilds the data from the seed, so no array crosses a
process boundary and every system trains on bit-identical inputs.
"""

import math
import os
import statistics
import time
from typing import NamedTuple

import numpy as np

N_FEATURES = 784
N_CLASSES = 10
N_TEST = 2000
N_PREDICT = 10000


class Config(NamedTuple):
    """One benchmark shape: layer widths (input .. output) and batch size."""

    name: str
    sizes: tuple
    batch_size: int

    @property
    def hidden(self):
        return self.sizes[1:-1]

    def describe(self):
        return f"{self.name}. {'-'.join(map(str, self.sizes))}, batch {self.batch_size}"


CONFIGS = {c.name: c for c in (
    Config("A", (784, 128, 64, 10), 16),
    Config("B", (784, 128, 64, 10), 64),
    Config("C", (784, 128, 64, 10), 256),
    Config("D", (784, 1024, 1024, 10), 256),
)}

# Hyperparameters per --optimizer, in PyTorch's naming; every system maps them
# onto its own optimizer (fastnn SGD/Adam, torch.optim, a hand-written JAX
# update, sklearn's solver="sgd"/"adam").
OPTIMIZERS = {
    "sgd": dict(kind="sgd", lr=0.01, momentum=0.0),
    "momentum": dict(kind="sgd", lr=0.01, momentum=0.9),
    "adam": dict(kind="adam", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8),
}


def make_data(samples, seed=0):
    """MNIST-shaped synthetic data labelled by a fixed random linear teacher.

    Parameters
    ----------
    samples : int
        Training samples; the test set (2,000) and predict set (10,000) do
        not depend on it.
    seed : int

    Returns
    -------
    dict
        ``X_train`` (samples, 784) float32 uniform in [0, 1], ``y_train``
        (samples,) int64 in 0..9, ``X_test``/``y_test`` (2000, ...) and
        ``X_predict`` (10000, 784).
    """
    teacher_seq, train_seq, test_seq, predict_seq = np.random.SeedSequence(seed).spawn(4)
    teacher = np.random.default_rng(teacher_seq).standard_normal((N_FEATURES, N_CLASSES))

    def draw(seq, n):
        X = np.random.default_rng(seq).random((n, N_FEATURES), dtype=np.float32)
        # Centring makes the ten classes about equally frequent.
        y = np.argmax((X - 0.5) @ teacher, axis=1).astype(np.int64)
        return X, y

    X_train, y_train = draw(train_seq, samples)
    X_test, y_test = draw(test_seq, N_TEST)
    X_predict, _ = draw(predict_seq, N_PREDICT)
    return dict(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                X_predict=X_predict)


def initial_params(sizes, seed=0):
    """He-normal weights and zero biases, float32: the common starting point.

    fastnn (both backends), PyTorch and JAX all start from these, so their
    accuracies differ only by shuffle order and rounding. (scikit-learn keeps
    its own Glorot-uniform initialization: it has no public way to set it.)

    Returns
    -------
    list of (W, b)
        ``W`` of shape (n_in, n_out), ``b`` of shape (n_out,).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(5)[4])
    return [((rng.standard_normal((n_in, n_out)) * math.sqrt(2.0 / n_in)).astype(np.float32),
             np.zeros(n_out, np.float32))
            for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def steps_per_epoch(n, batch_size):
    """ceil(n / batch_size): the last, partial batch is a step too."""
    return -(-n // batch_size)


def epoch_flops(sizes, n):
    """Floating-point operations of one epoch's matrix products (2 m n k each).

    Forward ``H W``, weight gradient ``H^T delta`` for every layer and
    ``delta W^T`` for all but the first: 6 n m_in m_out per layer, less
    2 n m_0 m_1.
    """
    total = sum(6 * n * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return total - 2 * n * sizes[0] * sizes[1]


def predict_flops(sizes, n=N_PREDICT):
    """Floating-point operations of the forward products of ``n`` rows (2 n m_in m_out each)."""
    return sum(2 * n * a * b for a, b in zip(sizes[:-1], sizes[1:]))


def all_cores():
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def peer_threads(opts):
    """The thread count a peer uses: ``--threads`` when given, else all cores.

    (fastnn itself gets ``threads=None``, its own measured choice, unless
    ``--threads`` pins it.)
    """
    return opts.threads if opts.threads is not None else all_cores()


def timed_repeats(fn, repeats):
    """Call ``fn`` ``repeats`` times; return the list of seconds each took."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summarize(epoch_seconds):
    """Split per-epoch seconds into the first epoch and the steady median."""
    return dict(epoch_seconds=list(map(float, epoch_seconds)),
                first_epoch=float(epoch_seconds[0]),
                steady_epoch=float(statistics.median(epoch_seconds[1:]))
                if len(epoch_seconds) > 1 else None)


def predict_result(fn, repeats):
    """Time ``fn()`` (a predict on the 10,000-sample set) once cold, then ``repeats`` times."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = timed_repeats(fn, repeats)
    return dict(predict_first=first, predict_seconds=float(statistics.median(times)),
                predict_times=times)
