"""Pure-numpy reference of fastnn's math: the correctness oracle and the baseline.

Written for clarity, like the textbook derivation, with one sample per row:

    U_l = H_{l-1} W_l + b_l,   H_l = phi_l(U_l),   H_0 = X
    Delta_L = d loss / d U_L                       (fused with the loss)
    Delta_{l-1} = (Delta_l W_l^T) * phi'_{l-1}(U_{l-1})
    dW_l = H_{l-1}^T Delta_l,   db_l = column sums of Delta_l

``Network(backend="numpy")`` trains with these functions; the tests compare
the numba kernels against them, and the benchmarks time them side by side.
"""

import numpy as np

LEAKY_SLOPE = 0.01


# ---- activations: phi(u), and phi'(u) computed from h = phi(u) ----

def sigmoid(u):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-u))


FORWARD = {
    "identity": lambda u: u,
    "relu": lambda u: np.maximum(u, 0),
    "leaky_relu": lambda u: np.where(u > 0, u, LEAKY_SLOPE * u),
    "sigmoid": sigmoid,
    "tanh": np.tanh,
}

DERIVATIVE = {
    "identity": lambda h: np.ones_like(h),
    "relu": lambda h: (h > 0).astype(h.dtype),
    "leaky_relu": lambda h: np.where(h > 0, 1, LEAKY_SLOPE).astype(h.dtype),
    "sigmoid": lambda h: h * (1 - h),
    "tanh": lambda h: 1 - h * h,
}


def softmax(u):
    """Row-wise softmax, shifted by the row maximum."""
    e = np.exp(u - u.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(u):
    shifted = u - u.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


# ---- losses: value and output delta d loss / d U_L ----

def probabilities_minus_targets(p, t):
    """``P - T`` with ``1 - p_j`` taken as the sum of the other probabilities.

    Written as ``(1 - t) p - t (1 - p)``: for a confident correct prediction
    ``p_y - 1`` would cancel to 0 in floating point, the sum of the others does not.
    """
    m = p.shape[1]
    one_minus_p = p @ (1 - np.eye(m, dtype=p.dtype))
    return (1 - t) * p - t * one_minus_p


def weighted_mean(losses, g, w=None, norm=None):
    """``(sum w_i l_i / norm, w_i G_i / norm)`` from per-sample losses and deltas.

    Without weights ``w`` every weight is 1; ``norm`` defaults to the total
    weight (``n``, or ``sum w``). A share of a batch computed by one process
    passes the whole batch's ``norm``.
    """
    if w is None:
        norm = g.shape[0] if norm is None else norm
        return losses.sum() / norm, g / g.dtype.type(norm)
    norm = w.sum() if norm is None else norm
    factor = (w * (1.0 / norm)).astype(g.dtype)
    return (w * losses).sum() / norm, g * factor[:, None]


def cross_entropy(u, y, w=None, norm=None):
    """Softmax cross-entropy with integer labels ``y``: ``(loss, (P - T) / n)``.

    ``w``, ``norm``: sample weights and normalizer (see :func:`weighted_mean`).
    """
    n = u.shape[0]
    t = np.eye(u.shape[1], dtype=u.dtype)[y]
    return weighted_mean(-log_softmax(u)[np.arange(n), y],
                         probabilities_minus_targets(softmax(u), t), w, norm)


def cross_entropy_targets(u, t, w=None, norm=None):
    """Softmax cross-entropy with target rows ``t`` (one-hot)."""
    return weighted_mean(-(t * log_softmax(u)).sum(axis=1),
                         probabilities_minus_targets(softmax(u), t), w, norm)


def binary_cross_entropy(u, t, w=None, norm=None):
    """Sigmoid binary cross-entropy on logits ``u``, 0/1 targets ``t``.

    The delta ``sigmoid(u) - t`` is ``(1 - t) sigmoid(u) - t sigmoid(-u)``, the
    same value without cancellation for saturated logits.
    """
    losses = (np.maximum(u, 0) - t * u + np.log1p(np.exp(-np.abs(u)))).sum(axis=1)
    return weighted_mean(losses, (1 - t) * sigmoid(u) - t * sigmoid(-u), w, norm)


def mean_squared_error(h, t, activation, w=None, norm=None):
    """``(1/2n) sum ||h - t||^2`` and its delta through the output activation."""
    return weighted_mean(0.5 * ((h - t) ** 2).sum(axis=1),
                         (h - t) * DERIVATIVE[activation](h), w, norm)


def poisson_deviance(u, t, w=None, norm=None):
    """Half Poisson deviance of the log-means ``u``: ``(loss, (exp(U) - T) / n)``.

    ``(1/n) sum [exp(u) - t u + t log t - t]``, summed as ``t (expm1(d) - d)``
    with ``d = u - log t`` (``exp(u)`` where ``t = 0``), as the kernel does.
    """
    mu = np.exp(u)
    positive = t > 0
    d = u - np.log(np.where(positive, t, 1))
    per_entry = np.where(positive, t * (np.expm1(d) - d), mu)
    return weighted_mean(per_entry.sum(axis=1), mu - t, w, norm)


def loss_and_delta(loss, out, y, activation, w=None, norm=None):
    """Dispatch on the loss name; ``y`` is integer labels or float targets.

    ``w``, ``norm``: sample weights and normalizer (see :func:`weighted_mean`).
    """
    if loss == "cross_entropy":
        if y.ndim == 1:
            return cross_entropy(out, y, w, norm)
        return cross_entropy_targets(out, y, w, norm)
    if loss == "binary_cross_entropy":
        return binary_cross_entropy(out, y, w, norm)
    if loss == "poisson":
        return poisson_deviance(out, y, w, norm)
    return mean_squared_error(out, y, activation, w, norm)


def count_correct(loss, out, y):
    """Correct predictions from the last layer's output (see the kernel twin)."""
    if loss == "cross_entropy":
        truth = y if y.ndim == 1 else y.argmax(axis=1)
        return int((out.argmax(axis=1) == truth).sum())
    if loss == "binary_cross_entropy":
        return int(((out > 0) == (y > 0.5)).sum())
    return 0


# ---- the network ----

def layer_views(flat, sizes):
    """Views ``(Ws, bs)`` of every layer in a flat parameter (or gradient) vector.

    The layout of ``fastnn.kernels.step``: layer by layer, ``W_l`` row-major
    of shape ``(sizes[l], sizes[l+1])``, then ``b_l``.
    """
    Ws, bs, offset = [], [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        Ws.append(flat[offset:offset + n_in * n_out].reshape(n_in, n_out))
        offset += n_in * n_out
        bs.append(flat[offset:offset + n_out])
        offset += n_out
    return Ws, bs


def forward(x, Ws, bs, activations):
    """Outputs ``H_1 .. H_L`` of every layer (``activations`` are names)."""
    Hs = []
    h = x
    for W, b, act in zip(Ws, bs, activations):
        h = FORWARD[act](h @ W + b)
        Hs.append(h)
    return Hs


def dropout_scale(shape, rate, seed, step, layer, row0=0):
    """The inverted-dropout mask of the kernels: 0 or ``1 / (1 - rate)`` per unit.

    Unit ``(i, j)`` is kept when ``uniform(seed, step, layer, (row0 + i) *
    width + j) >= rate``, with the same splitmix64 hash as
    ``fastnn.kernels.dropout``; ``row0`` is the position of the first row in
    its batch.
    """
    def mix(z):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    golden = np.uint64(0x9E3779B97F4A7C15)
    index = np.arange(row0 * shape[1], (row0 + shape[0]) * shape[1],
                      dtype=np.uint64).reshape(shape)
    with np.errstate(over="ignore"):
        z = mix(np.uint64(seed) * golden + np.uint64(step))
        z = mix(z + np.uint64(layer) * golden + index)
    u = (z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    return np.where(u >= rate, 1.0 / (1.0 - rate), 0.0)


def forward_train(x, Ws, bs, activations, rates, seed, step, row0=0):
    """``forward`` with dropout after layer ``l`` when ``rates[l] > 0``.

    Returns the outputs ``H_l`` (after dropout) and per layer ``(mask, rate)``
    (None where no dropout), for ``backward``. ``row0`` is the position of
    ``x``'s first row in its batch (the masks are the batch's).
    """
    Hs, masks = [], []
    h = x
    for l, (W, b, act) in enumerate(zip(Ws, bs, activations)):
        h = FORWARD[act](h @ W + b)
        mask = None
        if l < len(rates) and rates[l] > 0:
            mask = (dropout_scale(h.shape, rates[l], seed, step, l, row0).astype(h.dtype),
                    rates[l])
            h = h * mask[0]
        Hs.append(h)
        masks.append(mask)
    return Hs, masks


def backward(x, Ws, activations, Hs, delta, masks=None):
    """Gradients ``[(dW_l, db_l)]`` from the output delta ``Delta_L``.

    With dropout masks, ``Hs`` are the outputs after dropout: a kept unit's
    activation output is ``h * (1 - rate)`` and the delta is scaled by the mask.
    """
    grads = []
    for l in range(len(Ws) - 1, -1, -1):
        h_prev = x if l == 0 else Hs[l - 1]
        grads.append((h_prev.T @ delta, delta.sum(axis=0)))
        if l > 0:
            dropout = None if masks is None else masks[l - 1]
            if dropout is None:
                delta = (delta @ Ws[l].T) * DERIVATIVE[activations[l - 1]](h_prev)
            else:
                mask, rate = dropout
                h_kept = h_prev * h_prev.dtype.type(1 - rate)     # phi(u) of the kept units
                delta = (delta @ Ws[l].T) * mask * DERIVATIVE[activations[l - 1]](h_kept)
    return grads[::-1]


def loss_and_gradients(x, y, Ws, bs, activations, loss, rates=(), seed=0, step=0, w=None):
    """Loss of the batch and ``[(dW_l, db_l)]`` for every layer.

    ``activations`` name each layer's activation as the kernels apply it:
    the output layer of a fused loss is ``"identity"`` (it emits logits).
    Dropout ``rates`` (per layer) use the masks of ``(seed, step)``; ``w``
    are optional sample weights (see :func:`loss_and_delta`).
    """
    Hs, masks = forward_train(x, Ws, bs, activations, rates, seed, step)
    value, delta = loss_and_delta(loss, Hs[-1], y, activations[-1], w)
    return value, backward(x, Ws, activations, Hs, delta, masks)


# ---- optimizers (PyTorch's torch.optim formulas) ----

def clip_gradient(g, clip_norm=None, clip_value=None):
    """``g`` clipped as ``torch.nn.utils`` clips before a step (None: no clipping).

    ``clip_grad_norm_``: ``g * min(1, clip_norm / (||g||_2 + 1e-6))`` over the
    whole flat gradient; ``clip_grad_value_``: ``g`` clamped to ``[-v, v]``.
    """
    if clip_value is not None:
        g = np.clip(g, -clip_value, clip_value)
    if clip_norm is not None:
        coef = clip_norm / (np.sqrt(np.sum(np.asarray(g, np.float64) ** 2)) + 1e-6)
        if coef < 1:
            g = g * g.dtype.type(coef)
    return g


def optimizer_update(name, w, g, s1, s2, t, hp):
    """Update ``w`` in place with the named optimizer.

    ``s1``/``s2`` are the state arrays shaped like ``w``, updated in place in
    the kernels' layout: SGD momentum buffer in ``s1``; Adam's first and
    second moments in ``s1``/``s2``; RMSprop's momentum buffer in ``s1`` and
    square average in ``s2``. ``hp`` maps ``lr``, ``momentum``, ``dampening``,
    ``nesterov``, ``weight_decay``, ``beta1``, ``beta2``, ``eps``, ``alpha`` to
    floats and optionally ``clip_norm``/``clip_value`` to a float or None (the
    gradient is clipped first, see :func:`clip_gradient`); ``t`` counts steps
    from 1.
    """
    lr, wd = hp["lr"], hp["weight_decay"]
    g = clip_gradient(g, hp.get("clip_norm"), hp.get("clip_value"))
    if name == "sgd":
        g = g + wd * w
        if hp["momentum"] != 0:
            if t == 1:
                s1[...] = g
            else:
                s1[...] = hp["momentum"] * s1 + (1 - hp["dampening"]) * g
            g = g + hp["momentum"] * s1 if hp["nesterov"] else s1
        w -= lr * g
    elif name in ("adam", "adamw"):
        b1, b2 = hp["beta1"], hp["beta2"]
        if name == "adamw":
            w *= 1 - lr * wd
        else:
            g = g + wd * w
        s1[...] = b1 * s1 + (1 - b1) * g
        s2[...] = b2 * s2 + (1 - b2) * g * g
        m_hat = s1 / (1 - b1 ** t)
        v_hat = s2 / (1 - b2 ** t)
        w -= lr * m_hat / (np.sqrt(v_hat) + hp["eps"])
    elif name == "rmsprop":
        g = g + wd * w
        s2[...] = hp["alpha"] * s2 + (1 - hp["alpha"]) * g * g
        step = g / (np.sqrt(s2) + hp["eps"])
        if hp["momentum"] > 0:
            s1[...] = hp["momentum"] * s1 + step
            step = s1
        w -= lr * step
    else:
        raise ValueError(f"unknown optimizer {name!r}")
