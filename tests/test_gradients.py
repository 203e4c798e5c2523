"""Whole-network gradients against central finite differences, in float64.

``net.loss_and_gradients`` must match ``(L(p + eps) - L(p - eps)) / (2 eps)``
for every parameter. With eps = 1e-6 the truncation error is ~eps**2 * L''' ~ 1e-12
and the cancellation error ~1e-16 * |L| / eps ~ 1e-10, so a correct gradient
agrees to ~1e-9 of the largest gradient entry; the bound 1e-6 leaves a wide
margin, while any real mistake (a missing factor, a wrong derivative) is O(1).
The error is measured as ``max|num - ana| / max(max|num|, max|ana|, 1e-12)``
(``conftest.relative_error``): entry-wise relative errors would blow up on
gradients that are legitimately ~0 (dead relu units, saturated sigmoids).

Coverage: every hidden activation x every loss case at depth 2; depths 1 and 3
over a rotating subset; batch sizes 1 and 7; widths 3, 5, 7; both backends.
Random inputs make an exact relu kink (|u| < eps) unlikely, and the seeds are fixed.
"""

import numpy as np
import pytest

from conftest import (ACTIVATION_NAMES, BACKENDS, LOSS_CASES, finite_difference_gradients,
                      flat, make_net, make_problem, relative_error)

FD_BOUND = 1e-6


def check_gradients(widths, hidden, case, n, backend, seed=0):
    net = make_net(widths, hidden=hidden, case=case, dtype="float64", seed=seed,
                   backend=backend)
    X, y = make_problem(widths, case, n, seed=seed)
    _, analytic = net.loss_and_gradients(X, y)
    analytic = flat(analytic)  # copy before the perturbations reuse any buffer
    numeric = flat(finite_difference_gradients(net, X, y, eps=1e-6))
    assert np.abs(numeric).max() > 1e-4, "degenerate check: the loss barely depends on theta"
    err = relative_error(numeric, analytic)
    assert err <= FD_BOUND, f"relative error {err:.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", LOSS_CASES)
@pytest.mark.parametrize("hidden", ACTIVATION_NAMES)
def test_depth2_every_activation_and_loss(hidden, case, backend):
    # Batch size alternates with the pairing, so both 1 and 7 meet every loss case.
    n = 7 if (ACTIVATION_NAMES.index(hidden) + LOSS_CASES.index(case)) % 2 else 1
    check_gradients([5, 7, 3], hidden, case, n, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("case", LOSS_CASES)
def test_depth1(case, n, backend):
    # No hidden layer: the output activation and the loss on their own.
    check_gradients([3, 5], [], case, n, backend)


# Depth 3 mixes two different hidden activations; each one appears in both
# positions, each loss case at least once, with both batch sizes.
DEPTH3 = [
    (("relu", "tanh"), "ce_labels", 7),
    (("tanh", "sigmoid"), "ce_onehot", 1),
    (("sigmoid", "leaky_relu"), "bce", 7),
    (("leaky_relu", "identity"), "mse_identity", 1),
    (("identity", "relu"), "mse_relu", 7),
    (("tanh", "leaky_relu"), "mse_leaky_relu", 7),
    (("sigmoid", "relu"), "mse_sigmoid", 1),
    (("relu", "sigmoid"), "mse_tanh", 7),
    (("leaky_relu", "tanh"), "poisson", 7),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("hidden, case, n", DEPTH3)
def test_depth3(hidden, case, n, backend):
    check_gradients([3, 7, 5, 3], list(hidden), case, n, backend, seed=1)
