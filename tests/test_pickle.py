"""A pickled Network comes back whole: layers view the parameters, training continues."""

import pickle

import numpy as np

import fastnn
from fastnn import Dense, Dropout, Network


def test_pickled_network_keeps_views_and_trains_identically():
    rng = np.random.default_rng(0)
    X, y = rng.random((30, 4)), rng.integers(0, 3, 30)
    net = Network([Dense(4, 5, "relu"), Dropout(0.2), Dense(5, 3)], seed=2)
    net.fit(X, y, epochs=2, batch_size=8, verbose=0, optimizer=fastnn.Adam(0.01))
    copy = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(copy.predict_proba(X), net.predict_proba(X))
    assert np.shares_memory(copy.layers[0].W, copy.get_params.__self__._theta)
    copy.layers[0].W[0, 0] = 5.0                       # in-place edits reach the parameters
    assert copy.get_params()[0] == 5.0
    copy.layers[0].W[0, 0] = net.layers[0].W[0, 0]
    net.fit(X, y, epochs=1, batch_size=8, verbose=0)
    copy.fit(X, y, epochs=1, batch_size=8, verbose=0)   # optimizer and shuffle state came along
    assert copy.get_params().tobytes() == net.get_params().tobytes()
    np.testing.assert_array_equal(copy.layers[2].W, net.layers[2].W)
