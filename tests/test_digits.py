"""End to end on the bundled UCI digits: a 64-32-10 relu network learns them.

SGD(lr=0.1), batch 32, 20 epochs, float32, seed 0: ~97% test accuracy (96-97%
over seeds 0..5), in well under a second per backend once compiled. The two
backends follow the same trajectory (same initialization and shuffles), so
their accuracies must agree to half a percentage point (under 2 of the 360
test images).
"""

import numpy as np
import pytest

import fastnn
from fastnn.datasets import load_digits, train_test_split

from conftest import BACKENDS

EPOCHS = 20


@pytest.fixture(scope="module")
def split():
    X, y = load_digits()
    return train_test_split(X, y, test_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def trained(split):
    X_train, X_test, y_train, y_test = split
    results = {}
    for backend in BACKENDS:
        net = fastnn.Network([fastnn.Dense(64, 32, activation="relu"), fastnn.Dense(32, 10)],
                             loss="cross_entropy", dtype="float32", seed=0, backend=backend)
        history = net.fit(X_train, y_train, epochs=EPOCHS, batch_size=32,
                          optimizer=fastnn.SGD(lr=0.1), verbose=0)
        results[backend] = (net, history, net.evaluate(X_test, y_test))
    return results


def test_split_shapes(split):
    X_train, X_test, y_train, y_test = split
    assert X_train.shape == (1437, 64) and X_test.shape == (360, 64)
    assert set(np.unique(y_test)) == set(range(10))


@pytest.mark.parametrize("backend", BACKENDS)
def test_reaches_95_percent(trained, split, backend):
    net, history, metrics = trained[backend]
    assert metrics["accuracy"] >= 0.95, metrics
    # Training went the right way, and predict agrees with evaluate.
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    _, X_test, _, y_test = split
    assert np.mean(net.predict(X_test) == y_test) == pytest.approx(metrics["accuracy"])


def test_backends_agree(trained):
    acc = {backend: trained[backend][2]["accuracy"] for backend in BACKENDS}
    assert abs(acc["numba"] - acc["numpy"]) <= 0.005, acc
    losses = [trained[backend][1].history["loss"] for backend in BACKENDS]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
