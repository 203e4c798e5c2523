"""The numba and numpy backends compute the same thing.

Same seed means same initial weights and the same shuffles, so after training
the two parameter vectors may differ only by rounding.

Float64: one step's rounding is ~1e-16 relative and a few steps of a tiny
network do not amplify it much (observed ~1e-15), so 1e-9 is a strict bound.

Float32 (unit roundoff u = 2**-24 ~ 6e-8): every gradient entry is a sum of at
most batch x width = 5 x 7 = 35 products, whose rounding (the numba kernels'
BLAS and the numpy reference sum in different orders) differs by at most ~35 u
relative to the gradient's size; an update moves a weight by lr * g <~ |w|, and
storing the new weight adds 1 u. Over k = 5 steps the weights can drift apart by
about k * (35 + 1) * u ~ 1e-5 of the largest weight in the worst case; errors of
random sign add up like sqrt, and we observe ~3e-7. We assert 1e-5: tight enough
that a real difference (a wrong update of even one parameter by 1e-4 of its
size) fails.
"""

import numpy as np
import pytest

import fastnn

from conftest import (BACKENDS, LOSS_CASES, flat, make_net, make_problem, relative_error)

WIDTHS = [6, 7, 5, 3]
N, BATCH = 23, 5  # 4 full steps and a partial one of 3 samples
BOUND = {"float64": 1e-9, "float32": 1e-5}

OPTIMIZERS = {
    "sgd": lambda: fastnn.SGD(lr=0.1),
    "sgd_momentum": lambda: fastnn.SGD(lr=0.1, momentum=0.9, weight_decay=1e-3),
    "adam": lambda: fastnn.Adam(lr=0.01),
}


def train(backend, case, dtype, opt_name, epochs=1):
    net = make_net(WIDTHS, hidden=["relu", "tanh"], case=case, dtype=dtype, seed=2,
                   backend=backend)
    X, y = make_problem(WIDTHS, case, N, seed=2)
    before = net.get_params()
    history = net.fit(X, y, epochs=epochs, batch_size=BATCH, optimizer=OPTIMIZERS[opt_name](),
                      verbose=0)
    return net, before, history, X, y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", ["ce_labels", "ce_onehot", "bce", "mse_tanh", "poisson"])
@pytest.mark.parametrize("opt_name", OPTIMIZERS)
def test_one_epoch_same_weights(opt_name, case, dtype):
    (a, a0, ha, X, y), (b, b0, hb, _, _) = (train(be, case, dtype, opt_name) for be in BACKENDS)
    np.testing.assert_array_equal(a0, b0)  # same seed, same start
    assert relative_error(a0, a.get_params()) > 1e-3, "training did not move the weights"
    assert a.optimizer.state["t"] == b.optimizer.state["t"] == 5
    assert relative_error(a.get_params(), b.get_params()) <= BOUND[dtype]
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=BOUND[dtype])
    if "accuracy" in ha.history:
        assert ha.history["accuracy"] == hb.history["accuracy"]
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X),
                               rtol=10 * BOUND[dtype], atol=10 * BOUND[dtype])




@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt_name", OPTIMIZERS)
def test_one_epoch_same_optimizer_state(opt_name, dtype, request):
    """Momentum buffer (s1) and second moment (s2) agree like the weights do."""
    a, b = (train(be, "ce_labels", dtype, opt_name)[0] for be in BACKENDS)
    for key in ("s1", "s2"):
        sa, sb = a.optimizer.state[key], b.optimizer.state[key]
        assert relative_error(sa, sb) <= BOUND[dtype], key


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adam_state_carries_across_epochs_and_fit_calls(dtype):
    """Bias correction uses the global step count: 3 epochs, then one more fit call."""
    results = []
    for backend in BACKENDS:
        net, _, _, X, y = train(backend, "ce_labels", dtype, "adam", epochs=3)
        net.fit(X, y, epochs=1, batch_size=BATCH, verbose=0)  # keeps the optimizer
        assert net.optimizer.state["t"] == 20
        results.append(net.get_params())
    # 20 steps instead of 5: the float32 bound scales with k (see the module docstring).
    assert relative_error(*results) <= BOUND[dtype] * (4 if dtype == "float32" else 1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_and_gradients_agree(case, dtype):
    out = []
    for backend in BACKENDS:
        net = make_net([4, 5, 3], hidden="sigmoid", case=case, dtype=dtype, backend=backend)
        X, y = make_problem([4, 5, 3], case, 7)
        loss, grads = net.loss_and_gradients(X, y)
        assert all(g.dtype == np.dtype(dtype) for pair in grads for g in pair)
        out.append((loss, flat(grads)))
    (la, ga), (lb, gb) = out
    # One forward and backward pass: ~width x u of rounding.
    bound = 1e-12 if dtype == "float64" else 1e-6
    assert abs(la - lb) <= bound * max(abs(la), 1.0)
    assert relative_error(ga, gb) <= bound


@pytest.mark.parametrize("backend", BACKENDS)
def test_poisson_predicts_the_mean_exp_of_the_last_layer(backend):
    net = make_net([4, 5, 3], hidden="tanh", case="poisson", backend=backend)
    X, y = make_problem([4, 5, 3], "poisson", 7)
    W1, b1, W2, b2 = net.layers[0].W, net.layers[0].b, net.layers[1].W, net.layers[1].b
    mean = np.exp(np.tanh(X @ W1 + b1) @ W2 + b2)
    np.testing.assert_allclose(net.predict(X), mean, rtol=1e-12)
    np.testing.assert_allclose(net.predict_proba(X), mean, rtol=1e-12)
    assert set(net.evaluate(X, y)) == {"loss"}        # regression: no accuracy


@pytest.mark.parametrize("case", ["ce_labels", "bce", "mse_sigmoid", "poisson"])
def test_predict_and_evaluate_agree(case):
    out = []
    for backend in BACKENDS:
        net = make_net([4, 5, 3], hidden="leaky_relu", case=case, backend=backend)
        X, y = make_problem([4, 5, 3], case, 7)
        out.append((net.predict(X), net.predict_proba(X), net.evaluate(X, y)))
    (pa, qa, ea), (pb, qb, eb) = out
    np.testing.assert_array_equal(pa, pb) if case in ("ce_labels", "bce") else \
        np.testing.assert_allclose(pa, pb, rtol=1e-12)
    np.testing.assert_allclose(qa, qb, rtol=1e-12)
    assert ea.keys() == eb.keys()
    for key in ea:
        assert ea[key] == pytest.approx(eb[key], rel=1e-12)
