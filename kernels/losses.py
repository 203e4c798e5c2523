"""Fused output-delta + loss kernels.

Every loss is a mean over the ``n`` samples of a per-sample sum over the
outputs, and every kernel writes the output delta ``d loss / d u`` of the last
layer's pre-activation ``u`` and returns the loss value:

* softmax + cross-entropy: ``delta = (P - T) / n``
* sigmoid + binary cross-entropy: ``delta = (sigmoid(U) - T) / n``
* mean squared error ``(1/2n) sum ||h - t||^2``: ``delta = (H - T)/n * phi'(U)``
* exp + half Poisson deviance of the log-mean ``u``: ``delta = (exp(U) - T) / n``

With sample weights ``w`` the per-sample terms are weighted and ``n`` becomes
the total weight ``norm`` (``sum w``); a process that computes a share of a
batch normalizes by the whole batch's ``norm``, so the shares' gradients sum
to the batch's.

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


SOFTMAX, SIGMOID, EXP = 0, 1, 2
#: The losses' output activations by name (``Loss.output_activation``).
OUTPUT_ACTIVATIONS = {"softmax": SOFTMAX, "sigmoid": SIGMOID, "exp": EXP}


@njit(**JIT)
def output_activation(code, u, p):
    """``p = softmax(u)`` row by row, ``sigmoid(u)`` or ``exp(u)``; each row alone.

    Every row is computed by the same loop over its columns, so a row's
    result does not depend on the other rows (predictions are batch-invariant).
    """
    if code == SOFTMAX:
        softmax(u, p)
        return
    n, m = u.shape
    one = u.dtype.type(1)
    for i in range(n):
        for j in range(m):
            if code == SIGMOID:
                p[i, j] = one / (one + math.exp(-u[i, j]))
            else:
                p[i, j] = math.exp(u[i, j])


@njit(inline="always", **JIT)
def _row_factor(w, i, inv_norm, like):
    """``w[i] / norm`` in the dtype of the array ``like`` (``1 / norm`` when ``w`` is empty)."""
    if w.shape[0] == 0:
        return like.dtype.type(inv_norm)
    return like.dtype.type(w[i] * inv_norm)


@njit(inline="always", **JIT)
def _weighted(w, i, value):
    """``w[i] * value`` (``value`` when ``w`` is empty)."""
    if w.shape[0] == 0:
        return value
    return w[i] * value


@njit(**JIT)
def softmax_cross_entropy(u, y, w, norm, delta):
    """Cross-entropy of softmax(u) with integer labels, and its delta.

    Parameters
    ----------
    u : ndarray of shape (n_samples, n_classes)
        Logits.
    y : ndarray of shape (n_samples,), int64
        Class labels in ``0 .. n_classes - 1``.
    w : ndarray of shape (n_samples,) or (0,), float64
        Sample weights; empty for none (every weight 1).
    norm : float
        The normalizer: the batch's number of samples, or its total weight.
        A process computing a share of a batch passes the whole batch's.
    delta : ndarray of shape (n_samples, n_classes)
        Output ``w (P - onehot(y)) / norm``; may be ``u`` itself.

    Returns
    -------
    float
        ``-(1/norm) sum_q w_q log p[q, y_q]``.
    """
    n = u.shape[0]
    inv_norm = 1.0 / norm
    loss = 0.0
    for i in range(n):
        label = y[i]
        u_label = u[i, label]
        f = _row_factor(w, i, inv_norm, u)
        top, log_total = _softmax_row(u, i, delta)
        loss += _weighted(w, i, log_total + (top - u_label))
        # p_y - 1 as -(sum of the other p_j): no cancellation when p_y ~ 1.
        rest = 0.0
        for j in range(u.shape[1]):
            if j != label:
                rest += delta[i, j]
            delta[i, j] *= f
        delta[i, label] = -rest * f
    return loss / norm


@njit(**JIT)
def softmax_cross_entropy_targets(u, t, w, norm, delta):
    """Cross-entropy of softmax(u) with target distributions (one-hot).

    Parameters
    ----------
    u : ndarray of shape (n_samples, n_classes)
    t : ndarray of shape (n_samples, n_classes)
        Rows are target probabilities (one-hot for hard labels).
    w, norm : sample weights (or empty) and normalizer, as for ``softmax_cross_entropy``.
    delta : ndarray of shape (n_samples, n_classes)
        Output ``w (P - T) / norm``; may be ``u`` itself.

    Returns
    -------
    float
        ``-(1/norm) sum_q w_q sum_j t[q, j] log p[q, j]``.
    """
    n, m = u.shape
    inv_norm = 1.0 / norm
    loss = 0.0
    for i in range(n):
        inv_n = _row_factor(w, i, inv_norm, u)
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
        loss += _weighted(w, i, mass * log_total - dot)
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
    return loss / norm


@njit(**JIT)
def sigmoid_binary_cross_entropy(u, t, w, norm, delta):
    """Binary cross-entropy of sigmoid(u) with 0/1 targets, and its delta.

    Parameters
    ----------
    u : ndarray of shape (n_samples, n_labels)
        Logits.
    t : ndarray of shape (n_samples, n_labels)
        Targets in [0, 1].
    w, norm : sample weights (or empty) and normalizer, as for ``softmax_cross_entropy``.
    delta : ndarray of shape (n_samples, n_labels)
        Output ``w (sigmoid(U) - T) / norm``; may be ``u`` itself.

    Returns
    -------
    float
        ``-(1/norm) sum_q w_q sum [t log s(u) + (1 - t) log(1 - s(u))]``.
    """
    n, m = u.shape
    zero, one = u.dtype.type(0), u.dtype.type(1)
    inv_norm = 1.0 / norm
    loss = 0.0
    for i in range(n):
        inv_n = _row_factor(w, i, inv_norm, u)
        row = 0.0
        for j in range(m):
            v = u[i, j]
            e = math.exp(-abs(v))
            row += max(v, zero) - t[i, j] * v + math.log1p(e)
            # sigmoid(v) and 1 - sigmoid(v), each without cancellation, so that
            # s - t = (1 - t) s - t (1 - s) keeps saturated gradients.
            s = one / (one + e) if v >= zero else e / (one + e)
            c = e / (one + e) if v >= zero else one / (one + e)
            delta[i, j] = ((one - t[i, j]) * s - t[i, j] * c) * inv_n
        loss += _weighted(w, i, row)
    return loss / norm


@njit(**JIT)
def mean_squared_error(h, t, w, norm, code, delta):
    """Half mean squared error and its delta through the output activation.

    Parameters
    ----------
    h : ndarray of shape (n_samples, n_out)
        Network output ``phi(u)``.
    t : ndarray of shape (n_samples, n_out)
    w, norm : sample weights (or empty) and normalizer, as for ``softmax_cross_entropy``.
    code : int
        Output activation code (phi' is taken from ``h``).
    delta : ndarray of shape (n_samples, n_out)
        Output ``w (H - T) / norm * phi'(U)``; may be ``h`` only if ``h`` is
        not needed afterwards.

    Returns
    -------
    float
        ``(1/2 norm) sum_q w_q ||h_q - t_q||^2``.
    """
    n, m = h.shape
    zero, one, slope = h.dtype.type(0), h.dtype.type(1), h.dtype.type(LEAKY_SLOPE)
    inv_norm = 1.0 / norm
    loss = 0.0
    for i in range(n):
        inv_n = _row_factor(w, i, inv_norm, h)
        row = 0.0
        for j in range(m):
            r = h[i, j] - t[i, j]
            row += r * r
            delta[i, j] = r * inv_n * derivative(h[i, j], code, zero, one, slope)
        loss += _weighted(w, i, row)
    return 0.5 * loss / norm


@njit(**JIT)
def poisson_deviance(u, t, w, norm, delta):
    """Half Poisson deviance of the means ``exp(u)``, and its delta.

    Parameters
    ----------
    u : ndarray of shape (n_samples, n_out)
        Log-means (the loss owns the exp, as softmax for cross-entropy).
    t : ndarray of shape (n_samples, n_out)
        Targets, ``>= 0``.
    w, norm : sample weights (or empty) and normalizer, as for ``softmax_cross_entropy``.
    delta : ndarray of shape (n_samples, n_out)
        Output ``w (exp(U) - T) / norm``; may be ``u`` itself.

    Returns
    -------
    float
        ``(1/norm) sum_q w_q sum [exp(u) - t u + t log t - t]`` (``t log t = 0``
        at ``t = 0``): 0 for a perfect fit, as scikit-learn's ``poisson_loss``.
        Summed as ``t (expm1(d) - d)`` with ``d = u - log t`` (``exp(u)`` where
        ``t = 0``).
    """
    n, m = u.shape
    zero = u.dtype.type(0)
    inv_norm = 1.0 / norm
    loss = 0.0
    for i in range(n):
        inv_n = _row_factor(w, i, inv_norm, u)
        row = 0.0
        for j in range(m):
            v = u[i, j]
            y = t[i, j]
            mu = math.exp(v)
            if y > zero:
                d = v - math.log(y)
                row += y * (math.expm1(d) - d)
            else:
                row += mu
            delta[i, j] = (mu - y) * inv_n
        loss += _weighted(w, i, row)
    return loss / norm


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
def output_delta(loss_code, out, y, t, w, norm, out_code, delta):
    """Dispatch to the fused loss kernel named by ``loss_code``; return the loss.

    ``out`` is the last layer's output (logits for the two cross-entropies,
    log-means for Poisson),
    ``y`` the integer labels (``CE_LABELS`` only), ``t`` the float targets
    (every other loss), ``w`` the sample weights (empty for none) and
    ``norm`` the normalizer (see ``softmax_cross_entropy``).
    """
    if loss_code == CE_LABELS:
        return softmax_cross_entropy(out, y, w, norm, delta)
    if loss_code == CE_TARGETS:
        return softmax_cross_entropy_targets(out, t, w, norm, delta)
    if loss_code == BCE:
        return sigmoid_binary_cross_entropy(out, t, w, norm, delta)
    if loss_code == POISSON:
        return poisson_deviance(out, t, w, norm, delta)
    return mean_squared_error(out, t, w, norm, out_code, delta)
