"""Every fused loss kernel and its numpy twin against PyTorch's loss and autograd (float64).

PyTorch is an independent oracle: its value is ``torch.nn`` loss with
``reduction="sum"`` divided by the batch size n (fastnn's losses are a mean
over samples of a per-sample sum over outputs), and the delta is autograd's
gradient with respect to the last layer's pre-activation u. Float64 rounding
of these tiny sums is ~1e-16, so 1e-10 fails on any real difference.
"""

import numpy as np
import pytest
from scipy.special import xlogy

from fastnn import reference
from fastnn.activations import ACTIVATIONS
from fastnn.kernels import losses as kl

torch = pytest.importorskip("torch")

BOUND = 1e-10
# case -> (kernel loss code, reference loss name)
CASES = {"ce_labels": (kl.CE_LABELS, "cross_entropy"),
         "ce_onehot": (kl.CE_TARGETS, "cross_entropy"),
         "bce": (kl.BCE, "binary_cross_entropy"),
         "mse": (kl.MSE, "mse"),
         "poisson": (kl.POISSON, "poisson")}


def torch_loss(case, U, y):
    """The loss of ``case`` as PyTorch computes it, for logits/outputs ``U``."""
    n = U.shape[0]
    F = torch.nn.functional
    if case == "ce_labels":
        return F.cross_entropy(U, torch.from_numpy(y), reduction="sum") / n
    T = torch.from_numpy(y)
    if case == "ce_onehot":
        return F.cross_entropy(U, T, reduction="sum") / n
    if case == "bce":
        return F.binary_cross_entropy_with_logits(U, T, reduction="sum") / n
    if case == "mse":
        return 0.5 * F.mse_loss(U, T, reduction="sum") / n
    # PoissonNLLLoss(log_input=True) is exp(u) - t u; the half deviance adds the
    # constant t log t - t (so that a perfect fit scores 0), written out here.
    nll = torch.nn.PoissonNLLLoss(log_input=True, full=False, reduction="sum")(U, T)
    return (nll + float((xlogy(y, y) - y).sum())) / n


def problem(case, n, m, rng):
    u = rng.standard_normal((n, m)) * 2
    if case == "ce_labels":
        return u, rng.integers(0, m, n)
    if case == "ce_onehot":
        return u, np.eye(m)[rng.integers(0, m, n)]
    if case == "bce":
        return u, rng.integers(0, 2, (n, m)).astype(np.float64)
    if case == "poisson":
        t = rng.poisson(2.0, (n, m)).astype(np.float64)
        t[0, 0] = 0.0
        return u, t
    return u, rng.standard_normal((n, m))


@pytest.mark.parametrize("shape", [(1, 3), (6, 4)])
@pytest.mark.parametrize("case", CASES)
def test_loss_and_delta_match_torch(case, shape):
    rng = np.random.default_rng(sum(map(ord, case)) + shape[0])
    u, y = problem(case, *shape, rng)
    U = torch.tensor(u, requires_grad=True)
    value = torch_loss(case, U, y)
    value.backward()
    want_loss, want_delta = value.item(), U.grad.numpy()

    code, name = CASES[case]
    labels = y if case == "ce_labels" else np.zeros(0, np.int64)
    targets = np.zeros((0, shape[1])) if case == "ce_labels" else y
    delta = np.full_like(u, np.nan)
    loss = kl.output_delta(code, u.copy(), labels, targets, np.zeros(0), float(shape[0]),
                           ACTIVATIONS["identity"].code, delta)
    ref_loss, ref_delta = reference.loss_and_delta(name, u, y, "identity")
    for got_loss, got_delta in ((loss, delta), (ref_loss, ref_delta)):
        assert got_loss == pytest.approx(want_loss, rel=BOUND, abs=BOUND)
        np.testing.assert_allclose(got_delta, want_delta, rtol=BOUND,
                                   atol=BOUND * np.abs(want_delta).max())
