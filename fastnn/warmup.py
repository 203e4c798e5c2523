"""Compile (or load from the on-disk cache) every kernel ahead of timing."""

import time

import numpy as np


def warmup(dtypes=("float32", "float64")):
    """Run every kernel once on tiny data so later calls start at full speed.

    The first call in a fresh environment compiles the kernels and writes
    numba's cache (seconds); later processes load them from the cache.

    Parameters
    ----------
    dtypes : sequence of {"float32", "float64"}

    Returns
    -------
    float
        Seconds spent, so callers can report compile time apart from training.
    """
    from .layers import Dense
    from .network import Network
    from .optimizers import SGD, Adam

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 3))
    labels = np.array([0, 1, 0, 1, 1, 0])
    targets = np.eye(2)[labels]
    for dtype in dtypes:
        for loss, y in (("cross_entropy", labels), ("cross_entropy", targets),
                        ("binary_cross_entropy", targets), ("mse", targets)):
            net = Network([Dense(3, 4, "relu"), Dense(4, 2)], loss=loss, dtype=dtype)
            net.fit(X, y, epochs=1, batch_size=4, optimizer=SGD(0.1), verbose=0)
            net.fit(X, y, epochs=1, batch_size=4, optimizer=Adam(0.01), verbose=0)
            net.predict(X)
            net.loss_and_gradients(X, y)
    return time.perf_counter() - start
