"""The training step's hot paths: each numba kernel against its numpy reference.

Every suite is parametrized by ``backend``: ``"numba"`` calls the kernel from
``fastnn.kernels`` on preallocated outputs, ``"numpy"`` calls the
``fastnn.reference`` expression of the same math. ``setup`` calls the chosen
side once, so the jit compile (or the load from numba's cache) is never timed;
compile time has its own benchmarks in ``bench_network.py``.
"""

import numpy as np

from fastnn import reference
from fastnn.activations import ACTIVATIONS
from fastnn.kernels.activations import activation_backward
from fastnn.kernels.dense import dense_forward, dense_gradients
from fastnn.kernels.losses import softmax_cross_entropy
from fastnn.kernels.optimizers import optimizer_update

from .common import (ACTIVATION_NAMES, BACKENDS, BATCHES, DTYPES, N_CLASSES, N_PARAMS,
                     OPTIMIZER_STEP, OPTIMIZERS, SHAPES, dense_layer, flat_params,
                     layer_output, limit_blas_threads, logits)

NO_WEIGHTS = np.zeros(0)  # unweighted: every sample weighs 1


class Kernel:
    """Base: ``setup`` binds ``self.run`` to the ``numba`` or ``numpy`` method.

    Subclasses set ``params``/``param_names`` (``backend`` first) and define
    ``prepare(*params)``, ``numba()`` and ``numpy()``.
    """

    # Each sample is one call after a fresh setup; take many, keep it short.
    repeat = (10, 50, 5.0)

    def setup(self, backend, *params):
        limit_blas_threads()
        self.prepare(*params)
        self.run = getattr(self, backend)
        self.run()


class DenseForward(Kernel):
    """Forward of one layer, ``h = phi(x @ W + b)``: gemm, then bias and activation fused."""

    params = [BACKENDS, DTYPES, SHAPES, ACTIVATION_NAMES]
    param_names = ["backend", "dtype", "shape", "activation"]

    def prepare(self, dtype, shape, activation):
        self.x, self.W, self.b, _ = dense_layer(*shape, dtype)
        self.h = np.empty((shape[0], shape[2]), dtype)
        self.code = ACTIVATIONS[activation].code
        self.phi = reference.FORWARD[activation]

    def numba(self):
        dense_forward(self.x, self.W, self.b, self.code, self.h)

    def numpy(self):
        self.phi(self.x @ self.W + self.b)

    def time_dense_forward(self, *params):
        self.run()


class SoftmaxCrossEntropy(Kernel):
    """Fused softmax cross-entropy: the loss and the output delta ``(P - T) / n``."""

    params = [BACKENDS, DTYPES, BATCHES]
    param_names = ["backend", "dtype", "batch"]

    def prepare(self, dtype, batch):
        self.u, self.y = logits(batch, dtype)
        self.delta = np.empty((batch, N_CLASSES), dtype)

    def numba(self):
        softmax_cross_entropy(self.u, self.y, NO_WEIGHTS, float(self.u.shape[0]), self.delta)

    def numpy(self):
        reference.cross_entropy(self.u, self.y)

    def time_softmax_cross_entropy(self, *params):
        self.run()


class ActivationBackward(Kernel):
    """Hadamard backward ``delta * phi'(u)``, with phi' from the saved output ``h``.

    The kernel works in place, so ``setup`` hands it a fresh copy of ``delta``
    before every timed call (asv_runner >= 0.3 re-runs ``setup`` per call):
    repeated products by phi' < 1 would otherwise sink it into denormals.
    """

    params = [BACKENDS, DTYPES, SHAPES, ACTIVATION_NAMES]
    param_names = ["backend", "dtype", "shape", "activation"]

    def prepare(self, dtype, shape, activation):
        self.h = layer_output(*shape, dtype, activation)
        self.delta = dense_layer(*shape, dtype)[3].copy()
        self.code = ACTIVATIONS[activation].code
        self.phi_prime = reference.DERIVATIVE[activation]

    def numba(self):
        activation_backward(self.delta, self.h, self.code)

    def numpy(self):
        self.delta * self.phi_prime(self.h)

    def time_activation_backward(self, *params):
        self.run()


class DenseGradients(Kernel):
    """Weight and bias gradients of one layer: ``dW = x.T @ delta``, ``db = sum_rows(delta)``."""

    params = [BACKENDS, DTYPES, SHAPES]
    param_names = ["backend", "dtype", "shape"]

    def prepare(self, dtype, shape):
        self.x, _, _, self.delta = dense_layer(*shape, dtype)
        self.dW = np.empty(shape[1:], dtype)
        self.db = np.empty(shape[2], dtype)

    def numba(self):
        dense_gradients(self.x, self.delta, self.dW, self.db)

    def numpy(self):
        self.x.T @ self.delta, self.delta.sum(axis=0)

    def time_dense_gradients(self, *params):
        self.run()


class OptimizerUpdate(Kernel):
    """One optimizer step over a flat parameter vector (one layer's ``W`` and ``b``)."""

    params = [BACKENDS, DTYPES, tuple(OPTIMIZERS), N_PARAMS]
    param_names = ["backend", "dtype", "optimizer", "n_params"]

    def prepare(self, dtype, optimizer, n_params):
        w, self.g, s1, s2 = flat_params(n_params, dtype)
        self.w, self.s1, self.s2 = w.copy(), s1.copy(), s2.copy()
        self.opt = OPTIMIZERS[optimizer]()
        self.hyper = self.opt.hyper_array()
        self.hp = self.opt.hyperparameters()

    def numba(self):
        optimizer_update(self.opt.code, self.w, self.g, self.s1, self.s2, OPTIMIZER_STEP,
                         self.hyper)

    def numpy(self):
        reference.optimizer_update(self.opt.name, self.w, self.g, self.s1, self.s2,
                                   OPTIMIZER_STEP, self.hp)

    def time_optimizer_update(self, *params):
        self.run()
