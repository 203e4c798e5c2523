"""The two backends: numba kernels, and the pure-numpy reference.

Both see the network the same way: a flat parameter vector ``theta`` (see
``fastnn.kernels.training``), the widths ``sizes``, and per layer the
activation as the kernels apply it (identity on a fused-loss output layer).
"""

import numpy as np

from . import reference
from .kernels import losses as _kl
from .kernels import training as _kt


class NumbaBackend:
    """Runs the numba kernels; buffers are allocated once per batch size."""

    name = "numba"

    def __init__(self):
        self._train_buffers = {}

    @staticmethod
    def _work(spec, rows):
        width = int(spec.sizes[1:].sum())
        return np.empty(rows * width, spec.dtype), np.empty(rows * width, spec.dtype)

    def predict_raw(self, spec, theta, X, chunk=1024):
        """Last layer's output for ``X`` (logits for the fused losses), and a finiteness flag."""
        cap = min(chunk, X.shape[0])
        hbuf = np.empty(cap * int(spec.sizes[1:].sum()), spec.dtype)
        out = np.empty((X.shape[0], spec.sizes[-1]), spec.dtype)
        ok = _kt.predict_raw(X, theta, spec.sizes, spec.codes, hbuf, cap, out)
        return out, ok

    def loss_and_gradients(self, spec, theta, X, labels, targets, loss_code, step=0,
                           weights=None):
        hbuf, dbuf = self._work(spec, X.shape[0])
        grad = np.zeros_like(theta)
        w = _NO_WEIGHTS if weights is None else weights
        loss = _kt.loss_and_gradients(X, labels, targets, w, theta, spec.sizes, spec.codes,
                                      loss_code, hbuf, dbuf, X.shape[0], grad, spec.rates,
                                      spec.seed, step)
        return loss, grad

    def train_steps(self, spec, theta, data, perm, batch_size, step_begin, step_end, optimizer,
                    step_losses, step_correct, strategy):
        key = (batch_size, spec.dtype, tuple(spec.sizes))
        buffers = self._train_buffers.get(key)
        if buffers is None:
            hbuf, dbuf = self._work(spec, batch_size)
            grad = np.empty(theta.size + 1, spec.dtype)
            buffers = (hbuf, dbuf, grad,
                       np.empty_like(grad) if strategy.size > 1 else grad,
                       np.empty((batch_size, spec.sizes[0]), spec.dtype),
                       np.empty(batch_size, np.int64),
                       np.empty((batch_size, spec.sizes[-1]), spec.dtype),
                       np.empty(batch_size, np.float64), np.zeros(2, np.int64))
            self._train_buffers = {key: buffers}
        hbuf, dbuf, grad, gsum, xb, yb, tb, wb, status = buffers
        state = optimizer.state
        rank, size, *mpi = strategy.kernel_args(spec.dtype)
        completed = _kt.train_steps(
            data.X, data.labels, data.targets, data.weights, perm, batch_size, step_begin,
            step_end, theta, spec.sizes, spec.codes, spec.rates, spec.seed, data.code,
            optimizer.code, optimizer.hyper_array(), state["t"], state["s1"], state["s2"],
            grad, gsum, hbuf, dbuf, xb, yb, tb, wb, step_losses, step_correct, rank, size,
            np.array(mpi, np.int64), status)
        if completed < step_end - step_begin and status[0] == _kt.STOP_ZERO_WEIGHT:
            raise_zero_weight(int(status[1]))
        return completed


_NO_WEIGHTS = np.zeros(0, np.float64)


def raise_zero_weight(step):
    raise ValueError(f"sample_weight sums to 0 over the batch of step {step + 1} of the epoch; "
                     "every batch needs a positive total weight (use larger batches or give "
                     "every class some weight)")


class NumpyBackend:
    """The reference: the same math in plain numpy, one step at a time."""

    name = "numpy"

    def predict_raw(self, spec, theta, X, chunk=None):
        Ws, bs = reference.layer_views(theta, spec.sizes)
        with np.errstate(over="ignore", invalid="ignore"):
            Hs = reference.forward(X, Ws, bs, spec.kernel_activations)
        ok = all(np.isfinite(h).all() for h in Hs)
        return Hs[-1], ok

    def _loss_and_grad(self, spec, theta, X, y, step, weights=None):
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
                    step_losses, step_correct, strategy):
        X, code = data.X, data.code
        y_all = data.labels if code == _kl.CE_LABELS else data.targets
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
            w = data.weights[rows] if weighted else None
            norm = float(data.weights[perm[start:start + r]].sum()) if weighted else float(r)
            if norm == 0:
                raise_zero_weight(s)
            t = state["t"] + s - step_begin + 1
            Ws, bs = reference.layer_views(theta, spec.sizes)
            with np.errstate(over="ignore", invalid="ignore"):
                Hs, masks = reference.forward_train(X[rows], Ws, bs, spec.kernel_activations,
                                                    spec.rates, spec.seed, t, lo - start)
                loss, delta = reference.loss_and_delta(spec.loss.name, Hs[-1], y_all[rows],
                                                       spec.kernel_activations[-1], w, norm)
            step_correct[s - step_begin] = reference.count_correct(spec.loss.name, Hs[-1],
                                                                   y_all[rows])
            step_losses[s - step_begin] = loss
            bad = not np.isfinite(loss) or not all(np.isfinite(h).all() for h in Hs)
            if strategy.size == 1:
                if bad:
                    return s - step_begin
                grads = reference.backward(X[rows], Ws, spec.kernel_activations, Hs, delta,
                                           masks)
                grad = np.concatenate([a.ravel() for pair in grads for a in pair])
            else:
                # Every process enters every step's sum; the last entry says "stop".
                grad = np.zeros(theta.size + 1, theta.dtype)
                grad[-1] = bad
                if not bad:
                    grads = reference.backward(X[rows], Ws, spec.kernel_activations, Hs,
                                               delta, masks)
                    grad[:-1] = np.concatenate([a.ravel() for pair in grads for a in pair])
                strategy.sum(grad)
                if grad[-1]:
                    return s - step_begin
                grad = grad[:-1]
            reference.optimizer_update(optimizer.name, theta, grad.astype(theta.dtype),
                                       state["s1"], state["s2"], t, hp)
        return step_end - step_begin


BACKENDS = {"numba": NumbaBackend, "numpy": NumpyBackend}


def get_backend(name):
    try:
        return BACKENDS[name]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown backend {name!r}; valid names: {', '.join(BACKENDS)}") from None
