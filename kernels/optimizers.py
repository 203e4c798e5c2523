"""Optimizer update kernels: one fused pass over a parameter array per step.

The formulas are those of PyTorch's ``torch.optim`` documentation (SGD with
momentum, dampening and Nesterov; Adam with L2 added to the gradient; AdamW
with decoupled decay; RMSprop, not centered). Hyperparameters arrive as one
float64 array indexed by the constants below, so every optimizer shares one
kernel signature.
"""

import math

from numba import njit

from ._config import JIT

SGD, ADAM, ADAMW, RMSPROP = 0, 1, 2, 3
LR, MOMENTUM, DAMPENING, WEIGHT_DECAY, NESTEROV, BETA1, BETA2, EPS, ALPHA = range(9)
N_HYPER = 9


@njit(**JIT)
def sgd_update(w, g, lr, weight_decay):
    """Plain SGD in place: ``w <- w - lr (g + weight_decay w)``.

    Parameters
    ----------
    w, g : ndarray of shape (n_params,)
        Parameters (updated) and their gradient.
    lr, weight_decay : float
    """
    lr = w.dtype.type(lr)
    wd = w.dtype.type(weight_decay)
    for i in range(w.shape[0]):
        w[i] -= lr * (g[i] + wd * w[i])


@njit(**JIT)
def sgd_momentum_update(w, g, buf, t, lr, momentum, dampening, weight_decay, nesterov):
    """SGD with momentum (PyTorch): ``b <- mu b + (1 - tau) g``; ``b = g`` at t = 1.

    Parameters
    ----------
    w, g, buf : ndarray of shape (n_params,)
        Parameters, gradient and momentum buffer (both updated in place).
    t : int
        Step number, counted from 1.
    """
    dt = w.dtype.type
    # 1 - tau in float64 before rounding: float32(1) - float32(tau) loses digits.
    lr, mu, keep, wd = dt(lr), dt(momentum), dt(1.0 - dampening), dt(weight_decay)
    first = t == 1
    for i in range(w.shape[0]):
        gi = g[i] + wd * w[i]
        b = gi if first else mu * buf[i] + keep * gi
        buf[i] = b
        w[i] -= lr * (gi + mu * b if nesterov else b)


@njit(**JIT)
def adam_update(w, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled):
    """Adam (L2 added to the gradient) or AdamW (``decoupled``), in place.

    Parameters
    ----------
    w, g, m, v : ndarray of shape (n_params,)
        Parameters, gradient, first and second moment (moments updated).
    t : int
        Step number, counted from 1 (bias correction).
    """
    dt = w.dtype.type
    # 1 - beta in float64 before rounding: float32(1) - float32(0.999) is off by 1e-5.
    b1, b2, c1, c2, e = dt(beta1), dt(beta2), dt(1.0 - beta1), dt(1.0 - beta2), dt(eps)
    step = dt(lr / (1.0 - beta1 ** t))
    inv_sqrt_c2 = dt(1.0 / math.sqrt(1.0 - beta2 ** t))
    decay = dt(1.0 - lr * weight_decay) if decoupled else dt(1)
    l2 = dt(0) if decoupled else dt(weight_decay)
    for i in range(w.shape[0]):
        gi = g[i] + l2 * w[i]
        mi = b1 * m[i] + c1 * gi
        vi = b2 * v[i] + c2 * gi * gi
        m[i] = mi
        v[i] = vi
        w[i] = w[i] * decay - step * mi / (math.sqrt(vi) * inv_sqrt_c2 + e)


@njit(**JIT)
def rmsprop_update(w, g, v, buf, lr, alpha, eps, weight_decay, momentum):
    """RMSprop (PyTorch, not centered), in place.

    Parameters
    ----------
    w, g, v, buf : ndarray of shape (n_params,)
        Parameters, gradient, square average and momentum buffer.
    """
    dt = w.dtype.type
    lr, a, c, e = dt(lr), dt(alpha), dt(1.0 - alpha), dt(eps)
    wd, mu = dt(weight_decay), dt(momentum)
    for i in range(w.shape[0]):
        gi = g[i] + wd * w[i]
        vi = a * v[i] + c * gi * gi
        v[i] = vi
        step = gi / (math.sqrt(vi) + e)
        if momentum > 0:
            step = mu * buf[i] + step
            buf[i] = step
        w[i] -= lr * step


@njit(**JIT)
def optimizer_update(code, w, g, s1, s2, t, hyper):
    """Update one parameter array with the optimizer named by ``code``.

    Parameters
    ----------
    code : int
        ``SGD``, ``ADAM``, ``ADAMW`` or ``RMSPROP``.
    w, g : ndarray of shape (n_params,)
    s1, s2 : ndarray of shape (n_params,)
        Optimizer state: momentum buffer (SGD), first and second moment
        (Adam/AdamW), square average and momentum buffer (RMSprop).
    t : int
        Step number, counted from 1.
    hyper : ndarray of shape (N_HYPER,), float64
    """
    if code == SGD:
        if hyper[MOMENTUM] == 0:
            sgd_update(w, g, hyper[LR], hyper[WEIGHT_DECAY])
        else:
            sgd_momentum_update(w, g, s1, t, hyper[LR], hyper[MOMENTUM], hyper[DAMPENING],
                                hyper[WEIGHT_DECAY], hyper[NESTEROV] != 0)
    elif code == ADAM or code == ADAMW:
        adam_update(w, g, s1, s2, t, hyper[LR], hyper[BETA1], hyper[BETA2], hyper[EPS],
                    hyper[WEIGHT_DECAY], code == ADAMW)
    else:
        rmsprop_update(w, g, s2, s1, hyper[LR], hyper[ALPHA], hyper[EPS],
                       hyper[WEIGHT_DECAY], hyper[MOMENTUM])
