"""Two tiny networks worked through by hand: forward, backward, one SGD step.

The numbers in the comments were computed on paper; the weights are chosen so
that they stay short (binary fractions, and ln 3 to make a softmax come out as
3/4 and 1/4). The math is that of ``fastnn.reference``:

    u_l = h_{l-1} W_l + b_l,  h_l = phi(u_l);  delta_L = d loss / d u_L
    dW_l = h_{l-1}^T delta_l,  db_l = delta_l,  delta_{l-1} = (delta_l W_l^T) * phi'(u_{l-1})
"""

import math

import numpy as np
import pytest

import fastnn

BACKENDS = ["numba", "numpy"]
LN3 = math.log(3.0)


def build(layers, loss, backend, weights):
    net = fastnn.Network(layers, loss=loss, dtype="float64", backend=backend)
    for layer, (W, b) in zip(net.layers, weights):
        layer.W[...] = W
        layer.b[...] = b
    return net


def assert_grads(grads, expected):
    for (dW, db), (eW, eb) in zip(grads, expected):
        np.testing.assert_allclose(dW, eW, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(db, eb, rtol=1e-14, atol=1e-15)


def assert_weights(net, expected):
    for layer, (eW, eb) in zip(net.layers, expected):
        np.testing.assert_allclose(layer.W, eW, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(layer.b, eb, rtol=1e-14, atol=1e-15)


# ---- 3-2-1, relu hidden layer, identity output, mean squared error ---------------

# x = [1, 2, -1], target t = 2
#
# u1 = x W1 + b1
#   unit 0: 1*0.5 + 2*0.25 + (-1)*(-0.5) + 0.25 = 0.5 + 0.5 + 0.5 + 0.25 = 1.75
#   unit 1: 1*(-1) + 2*0.5 + (-1)*1.0   + 0.5  = -1 + 1 - 1 + 0.5      = -0.5
# h1 = relu(u1) = [1.75, 0]                  (unit 1 is off)
# u2 = h1 W2 + b2 = 1.75*2 + 0*(-1) - 0.5 = 3.0;  output y_hat = 3.0
# loss = (1/2n) sum (y_hat - t)^2 = 0.5 * (3 - 2)^2 = 0.5           (n = 1)
#
# delta2 = (y_hat - t) / n * identity' = 1.0
# dW2 = h1^T delta2 = [[1.75], [0]];  db2 = [1.0]
# delta1 = (delta2 W2^T) * relu'(u1) = [2, -1] * [1, 0] = [2, 0]
# dW1 = x^T delta1 = [[1*2, 0], [2*2, 0], [-1*2, 0]] = [[2, 0], [4, 0], [-2, 0]]
# db1 = [2, 0]
#
# SGD, lr = 0.1: p <- p - 0.1 dp
#   W1 = [[0.5-0.2, -1], [0.25-0.4, 0.5], [-0.5+0.2, 1]] = [[0.3, -1], [-0.15, 0.5], [-0.3, 1]]
#   b1 = [0.25-0.2, 0.5] = [0.05, 0.5]
#   W2 = [[2-0.175], [-1]] = [[1.825], [-1]];  b2 = [-0.5-0.1] = [-0.6]
# New output: u1_0 = 0.3 + 2*(-0.15) + (-1)*(-0.3) + 0.05 = 0.35, u1_1 = -1+1-1+0.5 = -0.5 -> 0
#   y_hat = 0.35*1.825 - 0.6 = 0.63875 - 0.6 = 0.03875

MSE_X = np.array([[1.0, 2.0, -1.0]])
MSE_T = np.array([[2.0]])
MSE_WEIGHTS = [(np.array([[0.5, -1.0], [0.25, 0.5], [-0.5, 1.0]]), np.array([0.25, 0.5])),
               (np.array([[2.0], [-1.0]]), np.array([-0.5]))]


def mse_net(backend):
    layers = [fastnn.Dense(3, 2, activation="relu"), fastnn.Dense(2, 1, activation="identity")]
    return build(layers, "mse", backend, MSE_WEIGHTS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mse_forward_and_backward(backend):
    net = mse_net(backend)
    np.testing.assert_allclose(net.predict(MSE_X), [[3.0]], rtol=1e-15)
    loss, grads = net.loss_and_gradients(MSE_X, MSE_T)
    assert loss == pytest.approx(0.5, rel=1e-15)
    assert_grads(grads, [([[2.0, 0.0], [4.0, 0.0], [-2.0, 0.0]], [2.0, 0.0]),
                         ([[1.75], [0.0]], [1.0])])


@pytest.mark.parametrize("backend", BACKENDS)
def test_mse_one_sgd_step(backend):
    net = mse_net(backend)
    net.fit(MSE_X, MSE_T, epochs=1, batch_size=1, optimizer=fastnn.SGD(lr=0.1), verbose=0)
    assert_weights(net, [([[0.3, -1.0], [-0.15, 0.5], [-0.3, 1.0]], [0.05, 0.5]),
                         ([[1.825], [-1.0]], [-0.6])])
    np.testing.assert_allclose(net.predict(MSE_X), [[0.03875]], rtol=1e-14)


# ---- 2-2-2, leaky relu hidden layer, softmax cross-entropy ---------------------------

# x = [1, -1], label 0; leaky slope 0.01
#
# u1 = x W1 + b1, W1 = [[1, 0.5], [0, 1]], b1 = 0
#   unit 0: 1*1 + (-1)*0 = 1;  unit 1: 1*0.5 + (-1)*1 = -0.5
# h1 = leaky_relu(u1) = [1, -0.005]
# u2 = h1 W2 + b2, W2 = [[ln 3, 0], [1, 3]], b2 = [0.005, 0.015]
#   logit 0: 1*ln 3 + (-0.005)*1 + 0.005 = ln 3
#   logit 1: 1*0    + (-0.005)*3 + 0.015 = 0
# p = softmax([ln 3, 0]) = [3, 1] / 4 = [0.75, 0.25]
# loss = -ln p_0 = -ln 0.75 = ln(4/3) = 0.28768207245178...
#
# delta2 = p - onehot(0) = [-0.25, 0.25]
# dW2 = h1^T delta2 = [[1*(-0.25), 1*0.25], [-0.005*(-0.25), -0.005*0.25]]
#     = [[-0.25, 0.25], [0.00125, -0.00125]];  db2 = [-0.25, 0.25]
# delta2 W2^T = [-0.25*ln 3 + 0.25*0, -0.25*1 + 0.25*3] = [-0.25 ln 3, 0.5]
# delta1 = that * leaky'(u1) = [-0.25 ln 3 * 1, 0.5 * 0.01] = [-0.25 ln 3, 0.005]
#   (-0.25 ln 3 = -0.274653072167...)
# dW1 = x^T delta1 = [[-0.25 ln 3, 0.005], [0.25 ln 3, -0.005]];  db1 = [-0.25 ln 3, 0.005]
#
# SGD, lr = 0.5: p <- p - 0.5 dp
#   W1 = [[1 + 0.125 ln 3, 0.5 - 0.0025], [-0.125 ln 3, 1 + 0.0025]]
#   b1 = [0.125 ln 3, -0.0025]
#   W2 = [[ln 3 + 0.125, -0.125], [1 - 0.000625, 3 + 0.000625]]
#   b2 = [0.005 + 0.125, 0.015 - 0.125] = [0.13, -0.11]

CE_X = np.array([[1.0, -1.0]])
CE_Y = np.array([0])
CE_WEIGHTS = [(np.array([[1.0, 0.5], [0.0, 1.0]]), np.array([0.0, 0.0])),
              (np.array([[LN3, 0.0], [1.0, 3.0]]), np.array([0.005, 0.015]))]
CE_GRADS = [([[-0.25 * LN3, 0.005], [0.25 * LN3, -0.005]], [-0.25 * LN3, 0.005]),
            ([[-0.25, 0.25], [0.00125, -0.00125]], [-0.25, 0.25])]


def ce_net(backend):
    layers = [fastnn.Dense(2, 2, activation="leaky_relu"), fastnn.Dense(2, 2, activation="softmax")]
    return build(layers, "cross_entropy", backend, CE_WEIGHTS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "onehot"])
def test_cross_entropy_forward_and_backward(backend, one_hot):
    net = ce_net(backend)
    np.testing.assert_allclose(net.predict_proba(CE_X), [[0.75, 0.25]], rtol=1e-14)
    assert net.predict(CE_X).tolist() == [0]
    y = np.array([[1.0, 0.0]]) if one_hot else CE_Y
    loss, grads = net.loss_and_gradients(CE_X, y)
    assert loss == pytest.approx(math.log(4 / 3), rel=1e-14)
    assert_grads(grads, CE_GRADS)
    assert net.evaluate(CE_X, y) == pytest.approx({"loss": math.log(4 / 3), "accuracy": 1.0})


@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_entropy_one_sgd_step(backend):
    net = ce_net(backend)
    history = net.fit(CE_X, CE_Y, epochs=1, batch_size=1, optimizer=fastnn.SGD(lr=0.5),
                      verbose=0)
    assert history.history["loss"] == [pytest.approx(math.log(4 / 3), rel=1e-14)]
    q = 0.125 * LN3
    assert_weights(net, [([[1 + q, 0.4975], [-q, 1.0025]], [q, -0.0025]),
                         ([[LN3 + 0.125, -0.125], [0.999375, 3.000625]], [0.13, -0.11])])
