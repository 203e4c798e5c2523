"""A row's prediction does not depend on the rows it is predicted with (numba backend)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn

SETTINGS = settings(max_examples=40, deadline=None)

LOSSES = [("cross_entropy", "identity"), ("binary_cross_entropy", "identity"),
          ("poisson", "identity"), ("mse", "tanh"), ("mse", "identity")]


@SETTINGS
@given(dtype=st.sampled_from(["float32", "float64"]),
       loss=st.sampled_from(LOSSES),
       hidden=st.sampled_from(["relu", "tanh", "sigmoid", "leaky_relu"]),
       widths=st.sampled_from([(7, 3), (30, 70, 4), (784, 128, 64, 10), (200, 33, 17, 5)]),
       n=st.integers(1, 90), seed=st.integers(0, 2 ** 16))
def test_predictions_equal_row_by_row_and_in_any_subset(dtype, loss, hidden, widths, n, seed):
    rng = np.random.default_rng(seed)
    name, out_act = loss
    layers = [fastnn.Dense(a, b, hidden) for a, b in zip(widths[:-2], widths[1:-1])]
    layers.append(fastnn.Dense(widths[-2], widths[-1], out_act))
    net = fastnn.Network(layers, loss=name, dtype=dtype, seed=seed)
    for layer in net.dense_layers:
        layer.b[...] = rng.standard_normal(layer.n_out)
    X = rng.standard_normal((n, widths[0]))
    full = net.predict_proba(X)
    for i in rng.choice(n, min(n, 5), replace=False):
        np.testing.assert_array_equal(net.predict_proba(X[i:i + 1])[0], full[i])
    subset = rng.permutation(n)[:rng.integers(1, n + 1)]
    np.testing.assert_array_equal(net.predict_proba(X[subset]), full[subset])
    np.testing.assert_array_equal(net.predict(X[subset]), net.predict(X)[subset])


def test_invariance_with_threads_and_rescaling():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (1000, 64), dtype=np.uint8)
    nets = [fastnn.Network([fastnn.Rescaling(1 / 255), fastnn.Dense(64, 300, "relu"),
                            fastnn.Dense(300, 10)], seed=4, threads=t) for t in (1, 2)]
    one, two = (net.predict_proba(X) for net in nets)
    np.testing.assert_array_equal(one, two)
    for start, stop in ((0, 1), (3, 20), (999, 1000), (17, 600)):
        np.testing.assert_array_equal(nets[1].predict_proba(X[start:stop]), one[start:stop])


def test_wide_network_uses_large_chunks_and_stays_invariant():
    from fastnn.backends import WIDE_PREDICT_ROWS, predict_rows
    sizes = [300, 1200, 40, 3]
    assert predict_rows(sizes) == WIDE_PREDICT_ROWS > 16
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2 * WIDE_PREDICT_ROWS + 37, sizes[0]))
    for dtype in ("float32", "float64"):
        nets = [fastnn.Network([fastnn.Dense(300, 1200, "relu"), fastnn.Dense(1200, 40, "tanh"),
                                fastnn.Dense(40, 3)], dtype=dtype, seed=2, threads=t)
                for t in (1, 2)]
        full = nets[0].predict_proba(X)
        np.testing.assert_array_equal(nets[1].predict_proba(X), full)
        for start, stop in ((0, 1), (5, 6), (100, 300), (len(X) - 1, len(X))):
            np.testing.assert_array_equal(nets[1].predict_proba(X[start:stop]), full[start:stop])
        order = rng.permutation(len(X))
        np.testing.assert_array_equal(nets[0].predict_proba(X[order]), full[order])
