"""Fused output-delta + loss kernels.

Every loss is a mean over the ``n`` samples of a per-sample sum over the
outputs, and every kernel writes the output delta ``d loss / d u`` of the last
layer's pre-activation ``u`` and returns the loss value:

* softmax + cross-entropy: ``delta = (P - T) / n``
* sigmoid + binary cross-entropy: ``delta = (sigmoid(U) - T) / n``
* mean squared error ``(1/2n) sum ||h - t||^2``: ``delta = (H - T)/n * phi'(U)``
* exp + half Poisson deviance of the log-mean ``u``: ``delta = (exp(U) - T) / n``

Softmax and the log-sum-exp are shifted by the row maximum and the binary
cross-entropy uses ``max(u, 0) - t u + log1p(exp(-|u|))``, so logits of any
finite size give a finite loss and delta and ``log(0)`` never happens. The
Poisson deviance is summed as ``t (expm1(d) - d)``, ``d = u - log t``, which
has no cancellation of large terms near a perfect fit.
"""

import math

from numba import njit

from ._config import JIT
from .activations import LEAKY_SLOPE, derivative

CE_LABELS, CE_TARGETS, BCE, MSE, POISSON = 0, 1, 2, 3, 4


@njit(inline="always", **JIT)
def _softmax_row(u, i, p):
    """p[i] = softmax(u[i]); return ``(top, log sum exp(u[i] - top))``.

    The two parts stay separate so callers can subtract ``top`` from the
    logits before adding the log-sum-exp (no cancellation in float32).
    """
    m = u.shape[1]
    top = u[i, 0]
    for j in range(1, m):
        top = max(top, u[i, j])
    total = u.dtype.type(0)
    for j in range(m):
        e = math.exp(u[i, j] - top)
        p[i, j] = e
        total += e
    inv = u.dtype.type(1) / total
    for j in range(m):
        p[i, j] *= inv
    return top, math.log(total)


@njit(**JIT)
def softmax(u, p):
    """Row-wise softmax.

    Parameters
    ----------
    u : ndarray of shape (n_samples, n_classes)
        Logits.
    p : ndarray of shape (n_samples, n_classes)
        Output probabilities; may be ``u`` itself.
    """
    for i in range(u.shape[0]):
        _softmax_row(u, i, p)


@njit(**JIT)
def sigmoid(u, p):
    """Element-wise logistic function; ``p`` may be ``u`` itself."""
    n, m = u.shape
    one = u.dtype.type(1)
    for i in range(n):
        for j in range(m):
            p[i, j] = one / (one + math.exp(-u[i, j]))


@njit(**JIT)
def softmax_cross_entropy(u, y, delta):
    """Cross-entropy of softmax(u) with integer labels, and its delta.

    Parameters
    ----------
    u : ndarray of shape (n_samples, n_classes)
        Logits.
    y : ndarray of shape (n_samples,), int64
        Class labels in ``0 .. n_classes - 1``.
    delta : ndarray of shape (n_samples, n_classes)
        Output ``(P - onehot(y)) / n``; may be ``u`` itself.

    Returns
    -------
    float
        ``-(1/n) sum_q log p[q, y_q]``.
    """
    n = u.shape[0]
    inv_n = u.dtype.type(1.0 / n)
    loss = 0.0
    for i in range(n):
        label = y[i]
        u_label = u[i, label]
        top, log_total = _softmax_row(u, i, delta)
        loss += log_total + (top - u_label)
        # p_y - 1 as -(sum of the other p_j): no cancellation when p_y ~ 1.
        rest = 0.0
        for j in range(u.shape[1]):
            if j != label:
                rest += delta[i, j]
            delta[i, j] *= inv_n
        delta[i, label] = -rest * inv_n
    return loss / n


@njit(**JIT)
def softmax_cross_entropy_targets(u, t, delta):
    """Cross-entropy of softmax(u) with target distributions (one-hot).

    Parameters
    ----------
    u : ndarray of shape (n_samples, n_classes)
    t : ndarray of shape (n_samples, n_classes)
        Rows are target probabilities (one-hot for hard labels).
    delta : ndarray of shape (n_samples, n_classes)
        Output ``(P - T) / n``; may be ``u`` itself.

    Returns
    -------
    float
        ``-(1/n) sum_q sum_j t[q, j] log p[q, j]``.
    """
    n, m = u.shape
    inv_n = u.dtype.type(1.0 / n)
    loss = 0.0
    for i in range(n):
        # Relative to the row maximum (found before ``delta`` may overwrite ``u``),
        # so large logits do not cancel in float32.
        top = u[i, 0]
        for j in range(1, m):
            top = max(top, u[i, j])
        dot = 0.0
        mass = 0.0
        for j in range(m):
            dot += t[i, j] * (u[i, j] - top)
            mass += t[i, j]
        _, log_total = _softmax_row(u, i, delta)
        loss += mass * log_total - dot
        # p_j - t_j = (1 - t_j) p_j - t_j (1 - p_j), with 1 - p_j of the largest
        # p (the only one that can be near 1) summed from the others.
        big = 0
        for j in range(1, m):
            if delta[i, j] > delta[i, big]:
                big = j
        rest = 0.0
        for j in range(m):
            if j != big:
                rest += delta[i, j]
        for j in range(m):
            p = delta[i, j]
            q = rest if j == big else 1.0 - p
            delta[i, j] = ((1.0 - t[i, j]) * p - t[i, j] * q) * inv_n
    return loss / n


@njit(**JIT)
def sigmoid_binary_cross_entropy(u, t, delta):
    """Binary cross-entropy of sigmoid(u) with 0/1 targets, and its delta.

    Parameters
    ----------
    u : ndarray of shape (n_samples, n_labels)
        Logits.
    t : ndarray of shape (n_samples, n_labels)
        Targets in [0, 1].
    delta : ndarray of shape (n_samples, n_labels)
        Output ``(sigmoid(U) - T) / n``; may be ``u`` itself.

    Returns
    -------
    float
        ``-(1/n) sum [t log s(u) + (1 - t) log(1 - s(u))]``.
    """
    n, m = u.shape
    inv_n = u.dtype.type(1.0 / n)
    zero, one = u.dtype.type(0), u.dtype.type(1)
    loss = 0.0
    for i in range(n):
        for j in range(m):
            v = u[i, j]
            e = math.exp(-abs(v))
            loss += max(v, zero) - t[i, j] * v + math.log1p(e)
            # sigmoid(v) and 1 - sigmoid(v), each without cancellation, so that
            # s - t = (1 - t) s - t (1 - s) keeps saturated gradients.
            s = one / (one + e) if v >= zero else e / (one + e)
            c = e / (one + e) if v >= zero else one / (one + e)
            delta[i, j] = ((one - t[i, j]) * s - t[i, j] * c) * inv_n
    return loss / n


@njit(**JIT)
def mean_squared_error(h, t, code, delta):
    """Half mean squared error and its delta through the output activation.

    Parameters
    ----------
    h : ndarray of shape (n_samples, n_out)
        Network output ``phi(u)``.
    t : ndarray of shape (n_samples, n_out)
    code : int
        Output activation code (phi' is taken from ``h``).
    delta : ndarray of shape (n_samples, n_out)
        Output ``(H - T) / n * phi'(U)``; may be ``h`` only if ``h`` is not
        needed afterwards.

    Returns
    -------
    float
        ``(1/2n) sum_q ||h_q - t_q||^2``.
    """
    n, m = h.shape
    inv_n = h.dtype.type(1.0 / n)
    zero, one, slope = h.dtype.type(0), h.dtype.type(1), h.dtype.type(LEAKY_SLOPE)
    loss = 0.0
    for i in range(n):
        for j in range(m):
            r = h[i, j] - t[i, j]
            loss += r * r
            delta[i, j] = r * inv_n * derivative(h[i, j], code, zero, one, slope)
    return 0.5 * loss / n


@njit(**JIT)
def poisson_deviance(u, t, delta):
    """Half Poisson deviance of the means ``exp(u)``, and its delta.

    Parameters
    ----------
    u : ndarray of shape (n_samples, n_out)
        Log-means (the loss owns the exp, as softmax for cross-entropy).
    t : ndarray of shape (n_samples, n_out)
        Targets, ``>= 0``.
    delta : ndarray of shape (n_samples, n_out)
        Output ``(exp(U) - T) / n``; may be ``u`` itself.

    Returns
    -------
    float
        ``(1/n) sum [exp(u) - t u + t log t - t]`` (``t log t = 0`` at
        ``t = 0``): 0 for a perfect fit, as scikit-learn's ``poisson_loss``.
        Summed as ``t (expm1(d) - d)`` with ``d = u - log t`` (``exp(u)`` where
        ``t = 0``).
    """
    n, m = u.shape
    inv_n = u.dtype.type(1.0 / n)
    zero = u.dtype.type(0)
    loss = 0.0
    for i in range(n):
        for j in range(m):
            v = u[i, j]
            y = t[i, j]
            mu = math.exp(v)
            if y > zero:
                d = v - math.log(y)
                loss += y * (math.expm1(d) - d)
            else:
                loss += mu
            delta[i, j] = (mu - y) * inv_n
    return loss / n


@njit(**JIT)
def count_correct(loss_code, out, y, t):
    """Correct predictions in a batch, from the last layer's output.

    Cross-entropy: rows whose arg-max matches the label (or the target's
    arg-max); binary cross-entropy: label entries with ``(u > 0) == (t > 0.5)``;
    regression (mse, Poisson): 0.
    """
    n, m = out.shape
    correct = 0
    if loss_code == MSE or loss_code == POISSON:
        return correct
    for i in range(n):
        if loss_code == BCE:
            for j in range(m):
                correct += (out[i, j] > 0) == (t[i, j] > 0.5)
            continue
        best = 0
        for j in range(1, m):
            if out[i, j] > out[i, best]:
                best = j
        if loss_code == CE_LABELS:
            correct += best == y[i]
        else:
            truth = 0
            for j in range(1, m):
                if t[i, j] > t[i, truth]:
                    truth = j
            correct += best == truth
    return correct


@njit(**JIT)
def output_delta(loss_code, out, y, t, out_code, delta):
    """Dispatch to the fused loss kernel named by ``loss_code``; return the loss.

    ``out`` is the last layer's output (logits for the two cross-entropies,
    log-means for Poisson),
    ``y`` the integer labels (``CE_LABELS`` only), ``t`` the float targets
    (every other loss).
    """
    if loss_code == CE_LABELS:
        return softmax_cross_entropy(out, y, delta)
    if loss_code == CE_TARGETS:
        return softmax_cross_entropy_targets(out, t, delta)
    if loss_code == BCE:
        return sigmoid_binary_cross_entropy(out, t, delta)
    if loss_code == POISSON:
        return poisson_deviance(out, t, delta)
    return mean_squared_error(out, t, out_code, delta)
