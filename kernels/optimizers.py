"""Optimizer update kernels: one fused pass over a parameter array per step.

The formulas are those of PyTorch's ``torch.optim`` documentation (SGD with
momentum, dampening and Nesterov; Adam with L2 added to the gradient; AdamW
with decoupled decay; RMSprop, not centered). Hyperparameters arrive as one
float64 array indexed by the constants below, so every optimizer shares one
kernel signature.

Gradient clipping acts on the loss gradient before weight decay and the
update, inside the update loop: every update kernel reads ``g[i]`` through
:func:`clipped`, which clamps it to ``[-clip_value, clip_value]``
(``torch.nn.utils.clip_grad_value_``) and multiplies it by ``scale``. With
``clip_norm`` the scale is :func:`clip_scale` of the global L2 norm, the rule
of ``torch.nn.utils.clip_grad_norm_``, which costs one pass over the gradient
(:func:`squared_norm`) before the update pass. :func:`optimizer_update` does
both over one array; a caller that updates the parameters in pieces (threads,
chunks) sums :func:`squared_norm` over the pieces first and gives every piece
the same scale through :func:`update_scaled`.
"""

import math

import numpy as np
from numba import njit
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from ._config import FASTMATH, JIT

SGD, ADAM, ADAMW, RMSPROP = 0, 1, 2, 3
(LR, MOMENTUM, DAMPENING, WEIGHT_DECAY, NESTEROV, BETA1, BETA2, EPS, ALPHA, CLIP_NORM,
 CLIP_VALUE) = range(11)
N_HYPER = 11
# clip_grad_norm_'s guard in max_norm / (total_norm + 1e-6).
NORM_EPS = 1e-6


# squared_norm's blocks: each block's squares are summed in the gradient's dtype, in
# NORM_LANES running sums (one per position modulo NORM_LANES, added in a fixed order).
NORM_BLOCK = 1024
NORM_LANES = 64


@njit(**JIT)
def _add_squares(block, lanes):
    """``lanes[k] += sum of block[i]**2`` over ``i % NORM_LANES == k``, in ``i``'s order.

    The lanes are independent sums, so the loop vectorizes in IEEE arithmetic
    (one float sum would need ``reassoc``, which lets LLVM choose the order
    and so the bits, see ``kernels._config``).
    """
    m = block.shape[0]
    full = m - m % NORM_LANES
    for i in range(0, full, NORM_LANES):
        for k in range(NORM_LANES):
            v = block[i + k]
            lanes[k] += v * v
    for i in range(full, m):
        v = block[i]
        lanes[i - full] += v * v


@njit(**JIT)
def squared_norm(g, start, stop):
    """``sum g[start:stop]**2``: float64 over blocks summed in ``g``'s dtype.

    Each block of ``NORM_BLOCK`` entries is summed in the gradient's dtype,
    in ``NORM_LANES`` independent running sums (each adds up 16 squares; they
    vectorize without ``reassoc``), and added to a float64 total, with a
    relative error of about 1e-7 for float32 (PyTorch's float32 norm is
    float32 throughout); float64 is float64 throughout. 109k float32 took
    about 23 us, against 12 us for the single ``reassoc`` sum it replaced
    (both measured beside other work).

    Parameters
    ----------
    g : ndarray of shape (>= stop,)
        A flat gradient (the summed one, under distributed training).
    start, stop : int
        The entries summed (a distributed ``g`` carries a flag after the gradient).
    """
    # Slices from 0: indices LLVM knows are not negative, so it vectorizes with
    # plain loads (over ``range(start, stop)`` it gathered, 4x slower).
    piece = g[start:stop]
    n = piece.shape[0]
    lanes = np.zeros(NORM_LANES, g.dtype)
    total = 0.0
    for b0 in range(0, n, NORM_BLOCK):
        lanes[:] = 0
        _add_squares(piece[b0:min(n, b0 + NORM_BLOCK)], lanes)
        part = 0.0
        for k in range(NORM_LANES):
            part += float(lanes[k])
        total += part
    return total


@njit(**JIT)
def gradient_norm(g, n):
    """The Euclidean norm of ``g[:n]``."""
    return math.sqrt(squared_norm(g, 0, n))


@njit(**JIT)
def clip_scale(norm, max_norm):
    """The factor ``clip_grad_norm_`` scales by: ``min(1, max_norm / (norm + 1e-6))``.

    1 without clipping (``max_norm == 0``) and whenever the norm is small
    enough; a non-finite norm gives 1 too, so a NaN gradient stays NaN and
    the divergence checks see it.
    """
    if max_norm == 0:
        return 1.0
    coef = max_norm / (norm + NORM_EPS)
    return coef if coef < 1.0 else 1.0


@njit(**JIT)
def clip_coefficient(g, n, max_norm):
    """:func:`clip_scale` of ``g[:n]``'s norm; no pass over ``g`` without clipping."""
    if max_norm == 0:
        return 1.0
    return clip_scale(gradient_norm(g, n), max_norm)


@njit(inline="always", **JIT)
def clipped(gi, scale, limit):
    """Gradient entry ``gi`` clamped to ``[-limit, limit]`` (when ``limit > 0``), times ``scale``.

    ``scale`` and ``limit`` are in ``gi``'s dtype; a NaN stays NaN.
    """
    if limit > 0:
        if gi > limit:
            gi = limit
        elif gi < -limit:
            gi = -limit
    return gi * scale


def smallest_normal(a):
    """The smallest normal number of ``a``'s dtype (numba only: a compile-time constant)."""
    raise NotImplementedError


@overload(smallest_normal)
def _smallest_normal(a):
    tiny = a.dtype(np.finfo(np.dtype(str(a.dtype))).tiny)
    return lambda a: tiny


def flushed(x, tiny):
    """``x``, or 0 when it is subnormal (``|x| < tiny``, the dtype's smallest normal).

    The optimizer state of a parameter whose gradient stays 0 (a dead unit)
    decays geometrically into the subnormal range, where every operation on
    it takes a slow microcode path: Adam and momentum epochs ran 4-6x slower
    once that happened. Flushed, such state ends at 0 (as it would a few
    hundred steps later anyway); the change to the update is below the
    dtype's smallest normal number. A NaN stays NaN (numba only).
    """
    raise NotImplementedError


@overload(flushed, inline="always", fastmath=FASTMATH)
def _flushed(x, tiny):
    as_x = as_dtype(x).type

    def impl(x, tiny):
        # A multiply by the comparison, not a select of x: it vectorizes
        # (the select ran 3x slower), and NaN * 0 is NaN.
        return x * as_x(abs(x) >= tiny)
    return impl


@njit(**JIT)
def sgd_update(w, g, lr, weight_decay, scale, limit):
    """Plain SGD in place: ``w <- w - lr (clipped(g) + weight_decay w)``.

    Parameters
    ----------
    w, g : ndarray of shape (n_params,)
        Parameters (updated) and their gradient.
    lr, weight_decay : float
    scale, limit : float
        Gradient clipping (see :func:`clipped`): 1 and 0 for none.
    """
    dt = w.dtype.type
    lr, wd, scale, limit = dt(lr), dt(weight_decay), dt(scale), dt(limit)
    for i in range(w.shape[0]):
        w[i] -= lr * (clipped(g[i], scale, limit) + wd * w[i])


@njit(**JIT)
def sgd_momentum_update(w, g, buf, t, lr, momentum, dampening, weight_decay, nesterov, scale,
                        limit):
    """SGD with momentum (PyTorch): ``b <- mu b + (1 - tau) g``; ``b = g`` at t = 1.

    Parameters
    ----------
    w, g, buf : ndarray of shape (n_params,)
        Parameters, gradient and momentum buffer (both updated in place).
    t : int
        Step number, counted from 1.
    scale, limit : float
        Gradient clipping (see :func:`clipped`): 1 and 0 for none.
    """
    dt = w.dtype.type
    # 1 - tau in float64 before rounding: float32(1) - float32(tau) loses digits.
    lr, mu, keep, wd = dt(lr), dt(momentum), dt(1.0 - dampening), dt(weight_decay)
    scale, limit = dt(scale), dt(limit)
    first = t == 1
    tiny = smallest_normal(w)
    for i in range(w.shape[0]):
        gi = clipped(g[i], scale, limit) + wd * w[i]
        b = flushed(gi if first else mu * buf[i] + keep * gi, tiny)
        buf[i] = b
        w[i] -= lr * (gi + mu * b if nesterov else b)


@njit(**JIT)
def adam_update(w, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled, scale, limit):
    """Adam (L2 added to the gradient) or AdamW (``decoupled``), in place.

    Parameters
    ----------
    w, g, m, v : ndarray of shape (n_params,)
        Parameters, gradient, first and second moment (moments updated).
    t : int
        Step number, counted from 1 (bias correction).
    scale, limit : float
        Gradient clipping (see :func:`clipped`): 1 and 0 for none.
    """
    dt = w.dtype.type
    # 1 - beta in float64 before rounding: float32(1) - float32(0.999) is off by 1e-5.
    b1, b2, c1, c2, e = dt(beta1), dt(beta2), dt(1.0 - beta1), dt(1.0 - beta2), dt(eps)
    step = dt(lr / (1.0 - beta1 ** t))
    inv_sqrt_c2 = dt(1.0 / math.sqrt(1.0 - beta2 ** t))
    decay = dt(1.0 - lr * weight_decay) if decoupled else dt(1)
    l2 = dt(0) if decoupled else dt(weight_decay)
    scale, limit = dt(scale), dt(limit)
    tiny = smallest_normal(w)
    for i in range(w.shape[0]):
        gi = clipped(g[i], scale, limit) + l2 * w[i]
        mi = flushed(b1 * m[i] + c1 * gi, tiny)
        vi = flushed(b2 * v[i] + c2 * gi * gi, tiny)
        m[i] = mi
        v[i] = vi
        w[i] = w[i] * decay - step * mi / (math.sqrt(vi) * inv_sqrt_c2 + e)


@njit(**JIT)
def rmsprop_update(w, g, v, buf, lr, alpha, eps, weight_decay, momentum, scale, limit):
    """RMSprop (PyTorch, not centered), in place.

    Parameters
    ----------
    w, g, v, buf : ndarray of shape (n_params,)
        Parameters, gradient, square average and momentum buffer.
    scale, limit : float
        Gradient clipping (see :func:`clipped`): 1 and 0 for none.
    """
    dt = w.dtype.type
    lr, a, c, e = dt(lr), dt(alpha), dt(1.0 - alpha), dt(eps)
    wd, mu = dt(weight_decay), dt(momentum)
    scale, limit = dt(scale), dt(limit)
    tiny = smallest_normal(w)
    for i in range(w.shape[0]):
        gi = clipped(g[i], scale, limit) + wd * w[i]
        vi = flushed(a * v[i] + c * gi * gi, tiny)
        v[i] = vi
        step = gi / (math.sqrt(vi) + e)
        if momentum > 0:
            step = flushed(mu * buf[i] + step, tiny)
            buf[i] = step
        w[i] -= lr * step


@njit(**JIT)
def optimizer_update(code, w, g, s1, s2, t, hyper):
    """Update one parameter array with the optimizer named by ``code``.

    Parameters
    ----------
    code : int
        ``SGD``, ``ADAM``, ``ADAMW`` or ``RMSPROP``.
    w : ndarray of shape (n_params,)
    g : ndarray of shape (>= n_params,)
        The loss gradient (its first ``n_params`` entries), clipped by
        ``hyper[CLIP_NORM]`` / ``hyper[CLIP_VALUE]`` (0: no clipping) first.
    s1, s2 : ndarray of shape (n_params,)
        Optimizer state: momentum buffer (SGD), first and second moment
        (Adam/AdamW), square average and momentum buffer (RMSprop).
    t : int
        Step number, counted from 1.
    hyper : ndarray of shape (N_HYPER,), float64
    """
    update_scaled(code, w, g, s1, s2, t, hyper,
                  clip_coefficient(g, w.shape[0], hyper[CLIP_NORM]))


@njit(**JIT)
def update_scaled(code, w, g, s1, s2, t, hyper, scale):
    """:func:`optimizer_update` with the gradient scale given (1: none).

    For updates in pieces: ``scale`` is :func:`clip_scale` of the whole
    gradient's norm (``hyper[CLIP_NORM]`` is not read here); ``clip_value``
    is element-wise and applies piece by piece.
    """
    limit = hyper[CLIP_VALUE]
    if code == SGD:
        if hyper[MOMENTUM] == 0:
            sgd_update(w, g, hyper[LR], hyper[WEIGHT_DECAY], scale, limit)
        else:
            sgd_momentum_update(w, g, s1, t, hyper[LR], hyper[MOMENTUM], hyper[DAMPENING],
                                hyper[WEIGHT_DECAY], hyper[NESTEROV] != 0, scale, limit)
    elif code == ADAM or code == ADAMW:
        adam_update(w, g, s1, s2, t, hyper[LR], hyper[BETA1], hyper[BETA2], hyper[EPS],
                    hyper[WEIGHT_DECAY], code == ADAMW, scale, limit)
    else:
        rmsprop_update(w, g, s2, s1, hyper[LR], hyper[ALPHA], hyper[EPS],
                       hyper[WEIGHT_DECAY], hyper[MOMENTUM], scale, limit)


@njit(inline="always", **JIT)
def clips(hyper):
    """Whether the hyperparameters ask for gradient clipping (no fused SGD step then)."""
    return hyper[CLIP_NORM] != 0 or hyper[CLIP_VALUE] != 0
