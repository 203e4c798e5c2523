"""``fastnn.gradcheck``: the trainer's gradients against float64 central differences.

The way to check a custom setup (a new architecture, activation mix, loss,
sample weights, dropout) before trusting a long run::

    result = fastnn.gradcheck(net, X[:16], y[:16])
    print(result)                      # worst relative error of every Dense layer
    assert result.max_error < 1e-6
"""

import copy

import numpy as np

from . import _checks
from .reference import layer_views

#: Floor of a layer's gradient scale, so a layer whose gradient vanishes does not divide by 0.
TINY = 1e-12


class GradcheckResult:
    """What :func:`gradcheck` measured.

    Attributes
    ----------
    layers : list of dict
        One per Dense layer, in order: ``layer`` (its index among the Dense
        layers), ``shape`` (``(n_in, n_out)``), ``W`` and ``b`` (the worst
        relative error of the weights and of the biases), ``error`` (the
        worse of the two), ``abs_error`` (the largest ``|numerical -
        analytical|``) and ``scale`` (the largest ``|gradient|`` of the layer,
        numerical or analytical, that the errors are relative to).
    max_error : float
        The largest ``error`` over the layers.
    loss : float
        The loss at the network's parameters.
    numerical, analytical : list of (dW, db)
        The central differences and ``Network.loss_and_gradients``' gradient,
        float64, shaped like the layers (entries not checked are NaN in
        ``numerical``).
    eps : float
    """

    def __init__(self, layers, loss, numerical, analytical, eps):
        self.layers, self.loss, self.eps = layers, loss, eps
        self.numerical, self.analytical = numerical, analytical
        self.max_error = max(layer["error"] for layer in layers)

    def __repr__(self):
        lines = [f"GradcheckResult(max_error={self.max_error:.3g}, eps={self.eps:g}, "
                 f"loss={self.loss:.6g})",
                 f"{'layer':>5}  {'shape':<12}{'W error':>10}{'b error':>10}{'scale':>10}"]
        for layer in self.layers:
            lines.append(f"{layer['layer']:>5}  {str(layer['shape']):<12}{layer['W']:>10.2e}"
                         f"{layer['b']:>10.2e}{layer['scale']:>10.2e}")
        return "\n".join(lines)


def _float64_copy(net):
    """A float64 network with ``net``'s layers and parameters (``net`` is never touched)."""
    from .network import Network

    layers = [copy.copy(layer) for layer in net.layers]
    twin = Network(layers, loss=net.loss.name, dtype="float64", seed=net.seed,
                   backend=net.backend.name, threads=net.threads)
    twin.set_params(net.get_params().astype(np.float64))
    return twin


def gradcheck(net, X, y, eps=1e-6, sample_weight=None, dropout_step=None, max_per_layer=None,
              seed=0):
    """Compare ``net.loss_and_gradients`` with float64 central differences of the loss.

    Like ``torch.autograd.gradcheck``, every checked parameter ``p`` is moved
    by ``+-eps`` and ``(L(p + eps) - L(p - eps)) / (2 eps)`` is compared with
    the analytical gradient; unlike it, nothing is raised: the result holds
    the worst relative error of every Dense layer. That error is
    ``max |numerical - analytical|`` over the layer's checked entries divided
    by the layer's largest ``|gradient|`` (not entry by entry: gradients that
    are legitimately ~0, a dead relu unit or a saturated sigmoid, would turn
    round-off into huge "relative" errors, while a wrong entry that matters
    shows at its true size).

    Everything runs on a float64 copy of ``net`` (``net`` itself, float32 or
    float64, is not modified), through the same backend. With ``eps = 1e-6``
    the truncation error is ~``eps**2`` and the cancellation error
    ~``1e-16 |L| / eps``, so a correct gradient shows errors of 1e-8 or
    below (1e-6 is a safe bound); a wrong one (a missing factor, a wrong
    derivative) shows ~1e-2 to 1. A relu
    kink within ``eps`` of a pre-activation can show a larger error for that
    layer: try another batch or seed.

    Parameters
    ----------
    net : Network
    X : array-like of shape (n_samples, n_features)
    y : array-like
        As for :meth:`fastnn.Network.fit`; the whole of ``(X, y)`` is one batch.
    eps : float, default 1e-6
        The step of the central differences.
    sample_weight : array-like of shape (n_samples,), optional
        The loss is ``sum w_i l_i / sum w_i``.
    dropout_step : int, optional
        Check with the Dropout masks of this optimizer step (fixed masks);
        by default no dropout.
    max_per_layer : int, optional
        Check at most this many entries of each layer (W and b together),
        drawn at random with ``seed``; by default all. The cost is two loss
        evaluations per checked entry.
    seed : int, default 0

    Returns
    -------
    GradcheckResult
        ``.layers`` (per-layer errors), ``.max_error``, the gradients.
    """
    eps = _checks.real("eps", eps, positive=True)
    if max_per_layer is not None:
        max_per_layer = _checks.integer("max_per_layer", max_per_layer, 1)
    twin = _float64_copy(net)
    batch = twin._check_data(X, y, sample_weight)
    if dropout_step is not None:
        dropout_step = _checks.integer("dropout_step", dropout_step, 0)
    arrays = twin._batch_arrays(batch)
    theta = twin._theta

    def loss():
        return twin._loss_and_flat_gradient(*arrays, dropout_step=dropout_step)[0]

    value, grad = twin._loss_and_flat_gradient(*arrays, dropout_step=dropout_step)
    grad = np.array(grad, np.float64)
    numeric = np.full(theta.size, np.nan)
    rng = np.random.default_rng(seed)
    offsets = np.cumsum([0] + [layer.n_in * layer.n_out + layer.n_out
                               for layer in twin.dense_layers])
    for lo, hi in zip(offsets[:-1], offsets[1:]):
        entries = np.arange(lo, hi)
        if max_per_layer is not None and entries.size > max_per_layer:
            entries = np.sort(rng.choice(entries, max_per_layer, replace=False))
        for k in entries:
            saved = theta[k]
            theta[k] = saved + eps
            up = loss()
            theta[k] = saved - eps
            down = loss()
            theta[k] = saved
            numeric[k] = (up - down) / (2 * eps)

    sizes = twin._spec.sizes
    num_layers = list(zip(*layer_views(numeric, sizes)))
    ana_layers = list(zip(*layer_views(grad, sizes)))
    layers = []
    for i, ((nW, nb), (aW, ab)) in enumerate(zip(num_layers, ana_layers)):
        pairs = [(n[np.isfinite(n)], a[np.isfinite(n)]) for n, a in ((nW, aW), (nb, ab))]
        scale = max([TINY] + [np.abs(v).max(initial=0.0) for pair in pairs for v in pair])
        errors = [float(np.abs(n - a).max(initial=0.0)) for n, a in pairs]
        layers.append({"layer": i, "shape": nW.shape, "W": errors[0] / scale,
                       "b": errors[1] / scale, "error": max(errors) / scale,
                       "abs_error": max(errors), "scale": float(scale)})
    return GradcheckResult(layers, float(value), [(W.copy(), b.copy()) for W, b in num_layers],
                           [(W.copy(), b.copy()) for W, b in ana_layers], eps)
