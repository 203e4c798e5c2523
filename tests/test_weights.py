"""Sample and class weights: a batch's loss is sum w_i l_i / sum w_i.

Proven four ways, in float64 and on both backends:

* a weight of 2 is the sample twice, a weight of 0 the sample removed (full
  batch: the same loss and gradient, and the same weights after a few
  epochs of ``fit``);
* ``class_weight`` is the ``sample_weight`` it stands for;
* against PyTorch: the per-sample losses of ``reduction="none"`` times the
  weights, summed and divided by the summed weights (written out), and the
  autograd gradient of that, for every loss, in the fused kernels, their
  numpy twins and through ``Network.loss_and_gradients``;
* ``evaluate`` against the weighted mean of per-sample losses and hits.

Bad weights are refused with a message naming the problem and change nothing,
and a batch whose weights sum to 0 stops ``fit`` mid-epoch, restoring the
network, its optimizer and its shuffling state.
"""

import numpy as np
import pytest
from scipy.special import xlogy

import fastnn
from fastnn import reference
from fastnn.activations import ACTIVATIONS
from fastnn.data import DataError
from fastnn.kernels import losses as kl

from conftest import (BACKENDS, LOSS_CASES, TORCH_MISSING, assert_close, flat, loss_case,
                      make_net, make_problem, make_targets)

WIDTHS = [5, 7, 3]
BOUND = 1e-10          # float64 against torch: rounding of tiny sums is ~1e-16


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason=TORCH_MISSING)


def repeated(X, y, w):
    """``(X, y)`` with row i repeated ``w[i]`` times (integer weights)."""
    return np.repeat(X, w, axis=0), np.repeat(y, w, axis=0)


INT_WEIGHTS = np.array([1, 2, 0, 3, 1, 2, 1])       # twice, removed, three times


# ---- a weight of 2 is the sample twice ------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", LOSS_CASES)
def test_integer_weights_equal_repeated_samples_full_batch(case, backend):
    net = make_net(WIDTHS, case=case, backend=backend)
    X, y = make_problem(WIDTHS, case, len(INT_WEIGHTS), seed=2)
    loss_w, grads_w = net.loss_and_gradients(X, y, sample_weight=INT_WEIGHTS)
    loss_r, grads_r = net.loss_and_gradients(*repeated(X, y, INT_WEIGHTS))
    loss_1, grads_1 = net.loss_and_gradients(X, y)
    assert loss_w == pytest.approx(loss_r, rel=1e-12)
    assert_close(flat(grads_w), flat(grads_r), np.float64)
    assert abs(loss_w - loss_1) > 1e-6 * abs(loss_1)        # the weights do matter


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case, optimizer", [
    ("ce_labels", lambda: fastnn.Adam(lr=0.05)),
    ("ce_onehot", lambda: fastnn.SGD(lr=0.2)),                 # the fused plain-SGD path
    ("bce", lambda: fastnn.SGD(lr=0.2, momentum=0.9)),
    ("mse_tanh", lambda: fastnn.RMSprop(lr=0.01)),
    ("poisson", lambda: fastnn.AdamW(lr=0.02)),
])
def test_integer_weights_equal_repeated_samples_in_fit(case, optimizer, backend):
    X, y = make_problem(WIDTHS, case, len(INT_WEIGHTS), seed=3)
    X_rep, y_rep = repeated(X, y, INT_WEIGHTS)
    weighted = make_net(WIDTHS, case=case, backend=backend)
    plain = make_net(WIDTHS, case=case, backend=backend)
    start = weighted.get_params()
    h_w = weighted.fit(X, y, sample_weight=INT_WEIGHTS, epochs=4, batch_size=len(X),
                       shuffle=False, optimizer=optimizer(), verbose=0)
    h_r = plain.fit(X_rep, y_rep, epochs=4, batch_size=len(X_rep), shuffle=False,
                    optimizer=optimizer(), verbose=0)
    assert not np.allclose(weighted.get_params(), start)
    np.testing.assert_allclose(weighted.get_params(), plain.get_params(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(h_w.history["loss"], h_r.history["loss"], rtol=1e-10)


# ---- class_weight is the sample_weight it stands for ------------------------------

def _fit(net, X, y, **kwargs):
    history = net.fit(X, y, epochs=2, batch_size=4, optimizer=fastnn.Adam(lr=0.02),
                      verbose=0, **kwargs)
    return net.get_params(), history.history["loss"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("targets", ["labels", "one-hot"])
@pytest.mark.parametrize("class_weight", [{0: 2.0, 2: 0.25}, "balanced"])
def test_class_weight_equals_matching_sample_weight(class_weight, targets, backend):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((14, WIDTHS[0]))
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    y = labels if targets == "labels" else np.eye(3)[labels]
    per_class = ({0: 2.0, 1: 1.0, 2: 0.25} if isinstance(class_weight, dict)
                 else {c: 14 / (3 * np.sum(labels == c)) for c in range(3)})  # n / (k count)
    sample_weight = np.array([per_class[c] for c in labels])
    base = rng.uniform(0.5, 2.0, 14)

    runs = {}
    for name, kwargs in (("class", dict(class_weight=class_weight)),
                         ("sample", dict(sample_weight=sample_weight)),
                         ("both", dict(class_weight=class_weight, sample_weight=base)),
                         ("product", dict(sample_weight=base * sample_weight)),
                         ("none", {})):
        runs[name] = _fit(make_net(WIDTHS, backend=backend), X, y, shuffle=False, **kwargs)
    for a, b in (("class", "sample"), ("both", "product")):
        np.testing.assert_array_equal(runs[a][0], runs[b][0])
        np.testing.assert_array_equal(runs[a][1], runs[b][1])
    assert not np.allclose(runs["class"][0], runs["none"][0])


def test_balanced_is_scikit_learns_compute_sample_weight():
    utils = pytest.importorskip("sklearn.utils.class_weight",
                                reason="scikit-learn is the oracle: pip install -e .[sklearn]")
    rng = np.random.default_rng(6)
    labels = np.array([0, 0, 0, 0, 0, 3, 3, 1])         # class 2 of 4 absent
    X = rng.standard_normal((8, 5))
    net = make_net([5, 4], case="ce_labels")
    data = net._check_data(X, labels)
    got = net._class_weighted(data, "balanced")
    np.testing.assert_allclose(got, utils.compute_sample_weight("balanced", labels),
                               rtol=1e-15)
    base = rng.uniform(0.1, 3, 8)
    got = net._class_weighted(net._check_data(X, labels, base), {0: 0.5, 3: 4})
    np.testing.assert_allclose(
        got, base * utils.compute_sample_weight({0: 0.5, 1: 1, 3: 4}, labels), rtol=1e-15)


def test_class_weight_weights_training_only():
    # validation_split: the held-out rows are scored with sample weights alone.
    rng = np.random.default_rng(7)
    X = rng.standard_normal((20, 5))
    y = rng.integers(0, 3, 20)
    net = make_net(WIDTHS)
    history = net.fit(X, y, class_weight={1: 5.0}, validation_split=0.25, epochs=1,
                      batch_size=5, shuffle=False, verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(net.evaluate(X[15:], y[15:])["loss"],
                                                           rel=1e-12)


# ---- against PyTorch: reduction="none" losses times the weights -------------------

def torch_per_sample(torch, case, U, y):
    """Per-sample losses of ``case`` (summed over outputs), PyTorch's ``reduction="none"``."""
    F = torch.nn.functional
    if case == "ce_labels":
        return F.cross_entropy(U, torch.from_numpy(y), reduction="none")
    T = torch.from_numpy(np.asarray(y, np.float64))
    if case == "ce_onehot":
        return F.cross_entropy(U, T, reduction="none")
    if case == "bce":
        return F.binary_cross_entropy_with_logits(U, T, reduction="none").sum(dim=1)
    if case.startswith("mse"):
        return 0.5 * F.mse_loss(U, T, reduction="none").sum(dim=1)
    # PoissonNLLLoss(log_input=True) is exp(u) - t u; the half deviance adds t log t - t.
    nll = torch.nn.PoissonNLLLoss(log_input=True, full=False, reduction="none")(U, T)
    return (nll + torch.from_numpy(xlogy(y, y) - y)).sum(dim=1)


def weighted_torch(torch, case, U, y, w):
    """``sum w_i l_i / sum w_i`` written out over torch's per-sample losses."""
    W = torch.from_numpy(w)
    return (W * torch_per_sample(torch, case, U, y)).sum() / W.sum()


KERNEL_CASES = {"ce_labels": (kl.CE_LABELS, "cross_entropy"),
                "ce_onehot": (kl.CE_TARGETS, "cross_entropy"),
                "bce": (kl.BCE, "binary_cross_entropy"),
                "mse_identity": (kl.MSE, "mse"),
                "poisson": (kl.POISSON, "poisson")}


def _kernel(code, u, y, case, w, norm):
    labels = y if case == "ce_labels" else np.zeros(0, np.int64)
    targets = np.zeros((0, u.shape[1])) if case == "ce_labels" else np.asarray(y, np.float64)
    delta = np.full_like(u, np.nan)
    loss = kl.output_delta(code, u.copy(), labels, targets, w, norm,
                           ACTIVATIONS["identity"].code, delta)
    return loss, delta


@pytest.mark.parametrize("case", KERNEL_CASES)
def test_weighted_loss_and_delta_match_torch(case, torch):
    rng = np.random.default_rng(sum(map(ord, case)))
    n, m = 6, 4
    u = rng.standard_normal((n, m)) * 2
    y = make_targets(case, n, m, rng)
    w = rng.uniform(0.0, 3.0, n)
    w[2] = 0.0
    U = torch.tensor(u, requires_grad=True)
    value = weighted_torch(torch, case, U, y, w)
    value.backward()
    want_loss, want_delta = value.item(), U.grad.numpy()

    code, name = KERNEL_CASES[case]
    got = {"kernel": _kernel(code, u, y, case, w, w.sum()),
           "reference": reference.loss_and_delta(name, u, y, "identity", w)}
    # A process computing a share of the batch normalizes by the whole batch's weight:
    # the two shares' losses and deltas add up to the batch's.
    top, bottom = _kernel(code, u[:4], y[:4], case, w[:4], w.sum()), \
        _kernel(code, u[4:], y[4:], case, w[4:], w.sum())
    got["shares"] = (top[0] + bottom[0], np.vstack([top[1], bottom[1]]))
    for where, (loss, delta) in got.items():
        assert loss == pytest.approx(want_loss, rel=BOUND, abs=BOUND), where
        np.testing.assert_allclose(delta, want_delta, rtol=BOUND,
                                   atol=BOUND * np.abs(want_delta).max(), err_msg=where)


def test_class_weights_are_torchs_weighted_cross_entropy(torch):
    # F.cross_entropy(weight=c) with reduction="mean" is sum c[y_i] l_i / sum c[y_i].
    rng = np.random.default_rng(8)
    u, y = rng.standard_normal((9, 3)) * 2, rng.integers(0, 3, 9)
    c = np.array([0.5, 3.0, 1.25])
    U = torch.tensor(u, requires_grad=True)
    value = torch.nn.functional.cross_entropy(U, torch.from_numpy(y), weight=torch.tensor(c))
    value.backward()
    loss, delta = _kernel(kl.CE_LABELS, u, y, "ce_labels", c[y], c[y].sum())
    assert loss == pytest.approx(value.item(), rel=BOUND)
    np.testing.assert_allclose(delta, U.grad.numpy(), rtol=BOUND, atol=BOUND)


NETWORK_CASES = ["ce_labels", "ce_onehot", "bce", "mse_identity", "mse_sigmoid", "poisson"]


def torch_network_loss(torch, net, X, y, w, case):
    """The weighted loss of ``net`` rebuilt in torch; returns (loss, [(W, b)] tensors)."""
    params = [(torch.tensor(layer.W, requires_grad=True), torch.tensor(layer.b,
                                                                       requires_grad=True))
              for layer in net.layers]
    h = torch.from_numpy(X)
    for i, (W, b) in enumerate(params):
        h = h @ W + b
        if i < len(params) - 1:
            h = torch.tanh(h)
    if case == "mse_sigmoid":
        h = torch.sigmoid(h)
    return weighted_torch(torch, case, h, y, w), params


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", NETWORK_CASES)
def test_weighted_network_gradients_match_torch(case, backend, torch):
    net = make_net(WIDTHS, hidden="tanh", case=case, backend=backend)
    X, y = make_problem(WIDTHS, case, 8, seed=9)
    w = np.random.default_rng(10).uniform(0.0, 4.0, 8)
    loss, grads = net.loss_and_gradients(X, y, sample_weight=w)
    value, params = torch_network_loss(torch, net, X, y, w, case)
    value.backward()
    assert loss == pytest.approx(value.item(), rel=BOUND, abs=BOUND)
    want = flat([(W.grad.numpy(), b.grad.numpy()) for W, b in params])
    np.testing.assert_allclose(flat(grads), want, rtol=BOUND, atol=BOUND * np.abs(want).max())


# ---- evaluate and validation ------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["ce_labels", "ce_onehot", "bce", "mse_relu", "poisson"])
def test_weighted_evaluate_is_the_weighted_mean(case, backend):
    net = make_net(WIDTHS, case=case, backend=backend)
    X, y = make_problem(WIDTHS, case, 10, seed=11)
    w = np.random.default_rng(12).uniform(0.0, 2.0, 10)
    per_sample = np.array([net.evaluate(X[i:i + 1], y[i:i + 1])["loss"] for i in range(10)])
    got = net.evaluate(X, y, sample_weight=w)
    assert got["loss"] == pytest.approx((w * per_sample).sum() / w.sum(), rel=1e-12)
    assert got["loss"] != pytest.approx(per_sample.mean(), rel=1e-6)
    loss_name = loss_case(case)[0]
    if loss_name == "cross_entropy":
        truth = y if y.ndim == 1 else y.argmax(axis=1)
        hits = (net.predict(X) == truth).astype(float)
    elif loss_name == "binary_cross_entropy":
        hits = (net.predict(X) == y).mean(axis=1)          # the fraction of right labels
    else:
        assert "accuracy" not in got
        return
    assert got["accuracy"] == pytest.approx((w * hits).sum() / w.sum(), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_validation_data(backend):
    net = make_net(WIDTHS, backend=backend)
    X, y = make_problem(WIDTHS, "ce_labels", 12, seed=13)
    Xv, yv = make_problem(WIDTHS, "ce_labels", 9, seed=14)
    wv = np.random.default_rng(15).uniform(0.0, 2.0, 9)
    history = net.fit(X, y, validation_data=(Xv, yv, wv), epochs=1, batch_size=4, verbose=0)
    want = net.evaluate(Xv, yv, sample_weight=wv)
    assert history.history["val_loss"][0] == pytest.approx(want["loss"], rel=1e-12)
    assert history.history["val_accuracy"][0] == pytest.approx(want["accuracy"], rel=1e-12)
    assert want["loss"] != pytest.approx(net.evaluate(Xv, yv)["loss"], rel=1e-6)


# ---- bad weights: refused, named, nothing changed ---------------------------------------

N = 6
BAD_WEIGHTS = {
    "negative": (np.array([1, 1, -0.5, 1, 1, 1.0]), ValueError,
                 r"sample_weight must be non-negative; found -0\.5 at index 2"),
    "nan": (np.array([1, 1, 1, np.nan, 1, 1]), ValueError, r"NaN or inf .*index 3"),
    "inf": (np.array([np.inf, 1, 1, 1, 1, 1]), ValueError, r"NaN or inf .*index 0"),
    "short": (np.ones(N - 1), ValueError, r"shape \(6,\) .*got \(5,\)"),
    "long": (np.ones(N + 1), ValueError, r"shape \(6,\) .*got \(7,\)"),
    "2-D": (np.ones((N, 1)), ValueError, r"shape \(6,\) .*got \(6, 1\)"),
    "scalar": (1.0, ValueError, r"shape \(6,\) .*got \(\)"),
    "all zero": (np.zeros(N), ValueError, r"sample_weight is zero for every sample"),
    "strings": (np.array(["1"] * N), TypeError, r"sample_weight must be numeric"),
}


def _state(net):
    opt = net.optimizer
    return (net.get_params(), net.history, opt, None if opt is None else opt.state_dict(),
            net._shuffle_rng.bit_generator.state)


def _assert_unchanged(net, before):
    params, history, opt, state, rng = before
    np.testing.assert_array_equal(net.get_params(), params)
    assert net.history is history and net.optimizer is opt
    assert net._shuffle_rng.bit_generator.state == rng
    if state is not None:
        now = net.optimizer.state_dict()
        assert now["t"] == state["t"]
        np.testing.assert_array_equal(now["s1"], state["s1"])
        np.testing.assert_array_equal(now["s2"], state["s2"])


CALLS = {
    "fit": lambda net, X, y, w: net.fit(X, y, sample_weight=w, epochs=1, verbose=0),
    "validation": lambda net, X, y, w: net.fit(X, y, validation_data=(X, y, w), epochs=1,
                                               verbose=0),
    "evaluate": lambda net, X, y, w: net.evaluate(X, y, sample_weight=w),
    "loss_and_gradients": lambda net, X, y, w: net.loss_and_gradients(X, y, sample_weight=w),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("case", BAD_WEIGHTS)
def test_bad_weights_refused_and_change_nothing(case, call, backend):
    net = make_net(WIDTHS, backend=backend)
    X, y = make_problem(WIDTHS, "ce_labels", N, seed=16)
    net.fit(X, y, epochs=1, batch_size=2, optimizer=fastnn.Adam(), verbose=0)
    before = _state(net)
    weights, error, message = BAD_WEIGHTS[case]
    with pytest.raises(error, match=message):
        CALLS[call](net, X, y, weights)
    _assert_unchanged(net, before)


def test_sparse_weights_refused():
    sparse = pytest.importorskip("scipy.sparse")
    net = make_net(WIDTHS)
    X, y = make_problem(WIDTHS, "ce_labels", N, seed=16)
    with pytest.raises(TypeError, match="sample_weight: sparse"):
        net.fit(X, y, sample_weight=sparse.csr_matrix(np.ones((1, N))), verbose=0)


BAD_CLASS_WEIGHTS = {
    "unknown label": ({0: 1.0, 3: 2.0}, ValueError,
                      r"class_weight has the label 3, but the labels are the integers 0\.\.2"),
    "negative label": ({-1: 2.0}, ValueError, r"class_weight has the label -1"),
    "string label": ({"1": 2.0}, ValueError, r"class_weight has the label '1'"),
    "float label": ({1.0: 2.0}, ValueError, r"class_weight has the label 1\.0"),
    "string weight": ({1: "2"}, ValueError,
                      r"class_weight\[1\] must be a finite non-negative number, got '2' \(str\)"),
    "None weight": ({1: None}, ValueError, r"class_weight\[1\] must be a finite"),
    "negative weight": ({2: -1.0}, ValueError, r"class_weight\[2\] must be a finite non-neg"),
    "nan weight": ({2: np.nan}, ValueError, r"class_weight\[2\] must be a finite"),
    "all zero": ({0: 0, 1: 0, 2: 0}, ValueError, r"class_weight is zero for every sample"),
    "typo": ("balance", ValueError, r"class_weight must be a dict .*'balanced' or None, "
                                    r"got 'balance'"),
    "list": ([1.0, 2.0, 3.0], TypeError, r"class_weight must be a dict .*got list"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", BAD_CLASS_WEIGHTS)
def test_bad_class_weight_refused_and_changes_nothing(case, backend):
    net = make_net(WIDTHS, backend=backend)
    X, y = make_problem(WIDTHS, "ce_labels", N, seed=16)
    net.fit(X, y, epochs=1, batch_size=2, optimizer=fastnn.Adam(), verbose=0)
    before = _state(net)
    class_weight, error, message = BAD_CLASS_WEIGHTS[case]
    with pytest.raises(error, match=message):
        net.fit(X, y, class_weight=class_weight, epochs=1, verbose=0)
    _assert_unchanged(net, before)


@pytest.mark.parametrize("case", ["bce", "mse_identity", "poisson"])
def test_class_weight_needs_cross_entropy(case):
    net = make_net(WIDTHS, case=case)
    X, y = make_problem(WIDTHS, case, N, seed=16)
    with pytest.raises(ValueError, match=r"class_weight needs loss='cross_entropy'.*"
                                         rf"loss is '{loss_case(case)[0]}'"):
        net.fit(X, y, class_weight="balanced", verbose=0)


# ---- a batch of zero total weight, mid-epoch -----------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", [lambda: fastnn.SGD(lr=0.1), lambda: fastnn.Adam()])
def test_zero_weight_batch_mid_epoch_raises_and_changes_nothing(optimizer, backend):
    net = make_net(WIDTHS, backend=backend)
    X, y = make_problem(WIDTHS, "ce_labels", 12, seed=17)
    net.fit(X, y, epochs=1, batch_size=4, optimizer=optimizer(), verbose=0)
    before = _state(net)
    w = np.ones(12)
    w[8:12] = 0.0                       # the third batch of the (unshuffled) epoch
    with pytest.raises(DataError, match=r"sample_weight sums to 0 over the batch of step 3 "
                                        r"of the epoch"):
        net.fit(X, y, sample_weight=w, epochs=2, batch_size=4, shuffle=False,
                optimizer=optimizer(), verbose=0)
    _assert_unchanged(net, before)
    # The same weights train once the batches are larger.
    net.fit(X, y, sample_weight=w, epochs=1, batch_size=6, shuffle=False, verbose=0)
    assert not np.array_equal(net.get_params(), before[0])
