"""Shared helpers of the correctness tests: tolerances, tiny networks, data, finite differences.

Everything here is written once and used by ``test_kernels``, ``test_gradients``,
``test_backends``, ``test_hand_worked``, ``test_properties`` and ``test_inputs``.
"""

import os

import numpy as np
import pytest
from hypothesis import settings

import fastnn
from fastnn import reference
from fastnn.activations import ACTIVATIONS

# CI (CI=true) replays the same hypothesis examples every run, so a red CI is
# always reproducible; local runs keep exploring new random examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

DTYPES = (np.float32, np.float64)
# The comparisons against real PyTorch skip with this reason where torch is absent: the
# README's light test command (pip install -e ".[dev]") does not install it.
TORCH_MISSING = 'compares against real PyTorch: pip install -e ".[dev,torch]" to run it'
ACTIVATION_NAMES = tuple(ACTIVATIONS)  # identity, relu, leaky_relu, sigmoid, tanh
BACKENDS = ("numba", "numpy")

# Kernel results are compared with the float64 reference evaluated on the same
# (dtype-rounded) inputs. float32 has a unit roundoff of u = 2**-24 ~ 6e-8; a dot
# product of k terms may lose ~k u, and the tiny shapes here keep k <= 10, so
# 1e-5 relative has a wide margin yet still fails on any real error (a wrong
# sign, index or factor is an O(1) relative error). Entries that cancel to ~0
# get an absolute floor scaled by the largest entry of the expected array
# (cancellation loses precision relative to the terms, not to the result).
# float64 gets the same reasoning with u = 2**-53 ~ 1e-16.
TOL = {
    np.float32: dict(rtol=1e-5, atol=1e-6),
    np.float64: dict(rtol=1e-12, atol=1e-14),
}


def tol(dtype):
    """``{"rtol", "atol"}`` for results computed in ``dtype`` (atol is relative to the scale)."""
    return TOL[np.dtype(dtype).type]


def assert_close(actual, expected, dtype):
    """``actual`` matches ``expected`` to the tolerance of ``dtype`` (see ``TOL``).

    The absolute floor is ``atol * max|expected|``, so arrays of tiny values
    (an optimizer's second moment, a gradient of ~1e-4) are held to relative
    precision too.
    """
    expected = np.asarray(expected, np.float64)
    t = tol(dtype)
    scale = max(np.abs(expected).max(initial=0.0), 1e-300)
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=t["rtol"],
                               atol=t["atol"] * scale)


# ---- losses as the tests spell them ------------------------------------------
#
# A "loss case" names the Network loss and how y is given. ``cross_entropy`` is
# tested with integer labels and with one-hot targets (two different kernels),
# ``mse`` with every output activation, ``poisson`` with counts (zeros included).

LOSS_CASES = ("ce_labels", "ce_onehot", "bce",
              *(f"mse_{name}" for name in ACTIVATION_NAMES), "poisson")


def loss_case(case):
    """``(loss name, output activation)`` of a loss case."""
    if case.startswith("ce"):
        return "cross_entropy", "identity"
    if case == "bce":
        return "binary_cross_entropy", "identity"
    if case == "poisson":
        return "poisson", "identity"
    return "mse", case[len("mse_"):]


def make_targets(case, n, n_out, rng):
    """Random ``y`` for ``n`` samples in the format of the loss case."""
    if case == "ce_labels":
        return rng.integers(0, n_out, n)
    if case == "ce_onehot":
        return np.eye(n_out)[rng.integers(0, n_out, n)]
    if case == "bce":
        return rng.integers(0, 2, (n, n_out)).astype(np.float64)
    if case in ("mse_sigmoid",):
        return rng.uniform(0, 1, (n, n_out))
    if case == "poisson":
        return rng.poisson(1.5, (n, n_out)).astype(np.float64)
    return rng.standard_normal((n, n_out))


def make_net(widths, hidden="tanh", case="ce_labels", dtype="float64", seed=0,
             backend="numba", output=None):
    """A tiny Network with ``widths = [n_in, ..., n_out]``.

    Every hidden layer uses ``hidden`` (a name or a list of names, one per hidden
    layer); the output layer uses the loss case's activation unless ``output``
    overrides it. Biases are randomized (the Network initializes them to zero,
    which would leave their effect on the tests untested).
    """
    loss, out_act = loss_case(case)
    if output is not None:
        out_act = output
    n_hidden = len(widths) - 2
    acts = [hidden] * n_hidden if isinstance(hidden, str) else list(hidden)
    assert len(acts) == n_hidden
    acts.append(out_act)
    layers = [fastnn.Dense(a, b, activation=act)
              for a, b, act in zip(widths[:-1], widths[1:], acts)]
    net = fastnn.Network(layers, loss=loss, dtype=dtype, seed=seed, backend=backend)
    rng = np.random.default_rng(seed + 1000)
    for layer in net.layers:
        layer.b[...] = rng.uniform(-0.5, 0.5, layer.n_out)
    return net


def make_problem(widths, case, n, seed=0):
    """Random ``(X, y)`` for a network of ``widths`` and a loss case."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, widths[0]))
    return X, make_targets(case, n, widths[-1], rng)


def reference_loss_and_gradients(net, X, y):
    """The float64 reference loss and ``[(dW, db)]`` of ``net`` at its current weights."""
    Ws = [np.asarray(l.W, np.float64) for l in net.layers]
    bs = [np.asarray(l.b, np.float64) for l in net.layers]
    acts = [l.activation for l in net.layers]
    if net.loss.output_activation is not None:
        acts[-1] = "identity"  # the fused losses take logits
    y = np.asarray(y)
    y = y.astype(np.int64) if y.ndim == 1 and net.loss.name == "cross_entropy" \
        else y.astype(np.float64).reshape(len(X), -1)
    return reference.loss_and_gradients(np.asarray(X, np.float64), y, Ws, bs, acts,
                                        net.loss.name)


# ---- finite differences --------------------------------------------------------

def finite_difference_gradients(net, X, y, eps=1e-6):
    """Central differences ``(L(p + eps) - L(p - eps)) / (2 eps)`` of every parameter.

    ``fastnn.gradcheck``'s (on a float64 copy of ``net``; ``net`` is not
    touched). Returns ``[(dW, db)]`` shaped like ``net.loss_and_gradients``.
    """
    return fastnn.gradcheck(net, X, y, eps=eps).numerical


def flat(grads):
    """``[(dW, db), ...]`` as one float64 vector."""
    return np.concatenate([np.ravel(a).astype(np.float64) for pair in grads for a in pair])


def relative_error(a, b, tiny=1e-12):
    """``max|a - b| / max(max|a|, max|b|, tiny)`` over whole vectors.

    Scaling by the largest entry of either vector (not entry by entry) keeps
    gradients that are legitimately ~0 (a dead relu unit, a saturated sigmoid)
    from turning round-off into a huge "relative" error, while a wrong
    gradient of any entry that matters still shows up at its true size.
    ``tiny`` guards against dividing by zero when both vectors vanish.
    """
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    scale = max(np.abs(a).max(initial=0), np.abs(b).max(initial=0), tiny)
    return float(np.abs(a - b).max(initial=0) / scale)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
