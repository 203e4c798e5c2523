"""Whole networks: one training epoch, one predict pass, and the jit's compile time.

Synthetic MNIST-shaped data (784 float32 pixels in [0, 1], 10 classes):
8,000 training samples, 10,000 to predict; float32, ``SGD(lr=0.01)``.
``setup`` builds a fresh seeded network and runs a two-batch fit and a tiny
predict, so the numba kernels are compiled (or loaded) before the timed call.
"""

import os
import shutil
import tempfile

from fastnn.optimizers import SGD

from .common import (ARCHITECTURES, BACKENDS, LEARNING_RATE, N_PREDICT, N_TRAIN,
                     TRAINING_RUNS, fresh_python_seconds, limit_blas_threads, mnist_like,
                     network)


class Epoch:
    """One epoch of ``fit`` over 8,000 samples."""

    params = [BACKENDS, tuple(TRAINING_RUNS)]
    param_names = ["backend", "network"]
    timeout = 300
    # setup already warms the jit, and every sample is a whole epoch.
    warmup_time = 0

    def setup(self, backend, run):
        limit_blas_threads()
        arch, self.batch = TRAINING_RUNS[run]
        self.X, self.y = mnist_like(N_TRAIN)
        self.net = network(ARCHITECTURES[arch], backend)
        self.opt = SGD(LEARNING_RATE)
        warm = 2 * self.batch
        self.net.fit(self.X[:warm], self.y[:warm], batch_size=self.batch, optimizer=self.opt,
                     verbose=0)

    def time_epoch(self, backend, run):
        self.net.fit(self.X, self.y, batch_size=self.batch, optimizer=self.opt, verbose=0)

    def peakmem_epoch(self, backend, run):
        self.net.fit(self.X, self.y, batch_size=self.batch, optimizer=self.opt, verbose=0)


class Predict:
    """One ``predict`` pass over 10,000 samples."""

    params = [BACKENDS, tuple(ARCHITECTURES)]
    param_names = ["backend", "architecture"]
    timeout = 300

    def setup(self, backend, arch):
        limit_blas_threads()
        self.X, _ = mnist_like(N_PREDICT)
        self.net = network(ARCHITECTURES[arch], backend)
        self.net.predict(self.X[:2])

    def time_predict(self, backend, arch):
        self.net.predict(self.X)


class ColdCompile:
    """Seconds ``fastnn.warmup()`` takes in a fresh process with an empty numba cache.

    That is every kernel compiled for float32 and float64: what a user waits
    once after installing (numba then caches the machine code on disk).
    """

    timeout = 600
    unit = "seconds"

    def setup(self):
        self.cache = tempfile.mkdtemp(prefix="fastnn-numba-cache-")

    def teardown(self):
        shutil.rmtree(self.cache, ignore_errors=True)

    def track_cold_compile(self):
        return fresh_python_seconds("common.fastnn.warmup()", self.cache, self.timeout)


class FirstEpochWarmCache:
    """Seconds of the first epoch of a small fit in a fresh process, numba cache warm.

    784-128-64-10 on 1,000 samples at batch 64. ``setup_cache`` fills the
    numba cache with an earlier process running the same fit; the numba
    time is then kernel loading plus one epoch, the numpy time one epoch.
    """

    params = [BACKENDS]
    param_names = ["backend"]
    timeout = 600
    unit = "seconds"

    def setup_cache(self):
        # asv runs this in a temporary directory that it deletes afterwards.
        cache = os.path.abspath("numba-cache")
        fresh_python_seconds("common.first_epoch_seconds('numba')", cache, self.timeout)
        return cache

    setup_cache.timeout = 600

    def track_first_epoch_warm_cache(self, cache, backend):
        return fresh_python_seconds(f"common.first_epoch_seconds({backend!r})", cache,
                                    self.timeout)
