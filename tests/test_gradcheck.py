"""``fastnn.gradcheck``: central differences against the trainer's gradient, per layer.

It must (1) compute the central differences it claims (against a loop written
here over ``layer.W``/``layer.b`` in place), (2) report tiny errors for the
correct gradients of every loss, with sample weights and with dropout masks,
on both backends and for float32 networks (checked in float64, the network
untouched), and (3) point at the layer whose gradient is wrong.
"""

import numpy as np
import pytest

import fastnn

from conftest import BACKENDS, LOSS_CASES, flat, make_net, make_problem

WIDTHS = [4, 6, 5, 3]


def test_public_name():
    assert fastnn.gradcheck.__module__ == "fastnn.gradcheck"
    assert "gradcheck" in fastnn.__all__


def test_numerical_gradient_is_the_central_difference():
    net = make_net([3, 4, 2], hidden="tanh", case="mse_identity")
    X, y = make_problem([3, 4, 2], "mse_identity", 5, seed=1)
    eps = 1e-5
    result = fastnn.gradcheck(net, X, y, eps=eps)
    for layer, (dW, db) in zip(net.layers, result.numerical):
        for param, num in ((layer.W, dW), (layer.b, db)):
            for idx in np.ndindex(param.shape):
                saved = param[idx]
                param[idx] = saved + eps
                up = net.loss_and_gradients(X, y)[0]
                param[idx] = saved - eps
                down = net.loss_and_gradients(X, y)[0]
                param[idx] = saved
                assert num[idx] == pytest.approx((up - down) / (2 * eps), rel=1e-9, abs=1e-13)
    assert result.loss == net.loss_and_gradients(X, y)[0]
    np.testing.assert_array_equal(flat(result.analytical), flat(net.loss_and_gradients(X, y)[1]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", LOSS_CASES)
def test_correct_gradients_pass(case, backend):
    net = make_net(WIDTHS, hidden=["tanh", "sigmoid"], case=case, backend=backend)
    X, y = make_problem(WIDTHS, case, 6, seed=2)
    result = fastnn.gradcheck(net, X, y)
    assert [layer["shape"] for layer in result.layers] == [(4, 6), (6, 5), (5, 3)]
    assert all(layer["scale"] > 1e-4 for layer in result.layers)     # not a vacuous check
    assert result.max_error < 1e-6, result
    assert result.max_error == max(layer["error"] for layer in result.layers)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_weight_and_dropout(backend):
    layers = [fastnn.Dense(4, 8, "tanh"), fastnn.Dropout(0.3), fastnn.Dense(8, 3)]
    net = fastnn.Network(layers, dtype="float64", seed=3, backend=backend)
    X, y = make_problem(WIDTHS, "ce_labels", 7, seed=3)
    w = np.random.default_rng(4).uniform(0, 3, 7)
    result = fastnn.gradcheck(net, X, y, sample_weight=w, dropout_step=5)
    assert result.max_error < 1e-6, result
    _, masked = net.loss_and_gradients(X, y, dropout_step=5, sample_weight=w)
    _, plain = net.loss_and_gradients(X, y, sample_weight=w)
    np.testing.assert_array_equal(flat(result.analytical), flat(masked))
    assert not np.allclose(flat(masked), flat(plain))     # the masks were used


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_network_is_checked_in_float64_and_left_alone(backend):
    net = make_net(WIDTHS, case="ce_labels", dtype="float32", backend=backend)
    X, y = make_problem(WIDTHS, "ce_labels", 6, seed=5)
    before = net.get_params()
    result = fastnn.gradcheck(net, X, y)
    assert result.max_error < 1e-6, result           # float32 differences would be ~1e-2
    assert all(dW.dtype == np.float64 for dW, _ in result.numerical)
    np.testing.assert_array_equal(net.get_params(), before)
    assert net.dtype == np.float32 and net.optimizer is None


def test_a_wrong_gradient_is_found_in_its_layer(monkeypatch):
    net = make_net(WIDTHS, case="ce_labels")
    X, y = make_problem(WIDTHS, "ce_labels", 6, seed=6)
    backend_cls = type(net.backend)
    right = backend_cls.loss_and_gradients
    start = WIDTHS[0] * WIDTHS[1] + WIDTHS[1]            # layer 1's first weight

    def wrong(self, *args, **kwargs):
        loss, grad = right(self, *args, **kwargs)
        grad = grad.copy()
        grad[start:start + WIDTHS[1] * WIDTHS[2]] *= 1.05   # layer 1's W off by 5 %
        return loss, grad

    monkeypatch.setattr(backend_cls, "loss_and_gradients", wrong)
    result = fastnn.gradcheck(net, X, y)
    errors = [layer["error"] for layer in result.layers]
    assert errors[1] > 1e-3 and result.layers[1]["W"] > 1e-3 and result.layers[1]["b"] < 1e-6
    assert errors[0] < 1e-6 and errors[2] < 1e-6
    assert result.max_error == errors[1]
    assert "layer" in repr(result) and f"{errors[1]:.2e}" in repr(result)


def test_max_per_layer_checks_a_sample():
    net = make_net(WIDTHS, case="bce")
    X, y = make_problem(WIDTHS, "bce", 6, seed=7)
    full = fastnn.gradcheck(net, X, y)
    part = fastnn.gradcheck(net, X, y, max_per_layer=5, seed=1)
    for (nW, nb), (fW, fb) in zip(part.numerical, full.numerical):
        checked = np.concatenate([np.isfinite(nW).ravel(), np.isfinite(nb)])
        assert checked.sum() == 5
        both = np.concatenate([nW.ravel(), nb])[checked]
        np.testing.assert_array_equal(both, np.concatenate([fW.ravel(), fb])[checked])
    assert part.max_error < 1e-6


@pytest.mark.parametrize("kwargs, message", [
    (dict(eps=0), "eps must be a finite positive number"),
    (dict(eps="1e-6"), "eps must be"),
    (dict(max_per_layer=0), "max_per_layer must be an integer >= 1"),
    (dict(dropout_step=-1), "dropout_step must be an integer >= 0"),
    (dict(sample_weight=np.ones(5)), r"sample_weight must have shape \(6,\)"),
])
def test_bad_arguments(kwargs, message):
    net = make_net(WIDTHS)
    X, y = make_problem(WIDTHS, "ce_labels", 6, seed=8)
    with pytest.raises(ValueError, match=message):
        fastnn.gradcheck(net, X, y, **kwargs)
