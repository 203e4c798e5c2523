"""Sparse X (scipy.sparse CSR/CSC/...): every result equals the same data dense.

The first layer runs over the stored entries (``kernels.sparse``); these tests
hold it to the dense path: gradients to float64 rounding, parameters after
a few epochs to 1e-10 relative, predictions to rounding and batch-invariant,
one thread and two bit-identical, and bad input refused as for dense X
without changing the network.
"""

import numpy as np
import pytest

import fastnn
from conftest import BACKENDS, make_net, make_targets

sp = pytest.importorskip("scipy.sparse")

FORMATS = {
    "csr_matrix": sp.csr_matrix, "csc_matrix": sp.csc_matrix, "csr_array": sp.csr_array,
    "csc_array": sp.csc_array, "coo_matrix": sp.coo_matrix,
}
WIDTHS = [37, 9, 5]
CASES = ["ce_labels", "ce_onehot", "bce", "mse_tanh", "poisson"]


def sparse_X(n, m, density=0.15, seed=0, empty_rows=(1,)):
    """A random ``(n, m)`` CSR matrix with some empty rows (float64)."""
    X = sp.random(n, m, density=density, format="csr", random_state=seed,
                  data_rvs=np.random.default_rng(seed).standard_normal).tolil()
    for i in empty_rows:
        X[i, :] = 0
    return X.tocsr()


def rel(a, b):
    return float(np.abs(np.asarray(a) - b).max() / max(np.abs(b).max(), 1e-300))


def flat(grads):
    return np.concatenate([a.ravel() for pair in grads for a in pair])


# ---- the math: loss, gradients, predictions ----------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_matrix", "csr_array"])
def test_loss_and_gradients_equal_dense(backend, case, fmt):
    X = sparse_X(23, WIDTHS[0])
    y = make_targets(case, 23, WIDTHS[-1], np.random.default_rng(1))
    net = make_net(WIDTHS, hidden="relu", case=case, backend=backend)
    w = np.random.default_rng(2).uniform(0.5, 2, 23)
    loss, grads = net.loss_and_gradients(FORMATS[fmt](X), y, sample_weight=w)
    loss_d, grads_d = net.loss_and_gradients(X.toarray(), y, sample_weight=w)
    assert loss == pytest.approx(loss_d, rel=1e-12)
    assert rel(flat(grads), flat(grads_d)) < 1e-12


def test_dropout_gradients_equal_dense():
    X = sparse_X(19, 40)
    y = np.arange(19) % 3
    net = fastnn.Network([fastnn.Dense(40, 16, "relu"), fastnn.Dropout(0.3),
                          fastnn.Dense(16, 3)], dtype="float64")
    loss, grads = net.loss_and_gradients(X, y, dropout_step=4)
    loss_d, grads_d = net.loss_and_gradients(X.toarray(), y, dropout_step=4)
    assert loss == pytest.approx(loss_d, rel=1e-12)
    assert rel(flat(grads), flat(grads_d)) < 1e-12


def test_explicit_zeros_unsorted_indices_duplicates_and_empty_rows():
    dense = np.zeros((6, 8))
    dense[0, [5, 1, 3]] = [1.5, -2.0, 0.25]
    dense[2, 7] = 3.0                         # stored as 1.0 + 2.0 (a duplicate)
    dense[4, 0] = -1.0
    indptr = np.array([0, 4, 5, 7, 7, 8, 9])  # rows 1 and 3: only explicit zeros / empty
    indices = np.array([5, 1, 6, 3, 2, 7, 7, 0, 4])
    data = np.array([1.5, -2.0, 0.0, 0.25, 0.0, 1.0, 2.0, -1.0, 0.0])
    X = sp.csr_matrix((data, indices, indptr), shape=(6, 8))
    assert not X.has_sorted_indices or not X.has_canonical_format
    np.testing.assert_array_equal(X.toarray(), dense)
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    net = make_net([8, 4, 3], hidden="tanh", case="ce_labels")
    y = np.array([0, 1, 2, 0, 1, 2])
    loss, grads = net.loss_and_gradients(X, y)
    loss_d, grads_d = net.loss_and_gradients(dense, y)
    assert loss == pytest.approx(loss_d, rel=1e-12)
    assert rel(flat(grads), flat(grads_d)) < 1e-12
    np.testing.assert_allclose(net.predict_proba(X), net.predict_proba(dense), rtol=1e-12)
    for a, b in zip(before, (X.data, X.indices, X.indptr)):
        np.testing.assert_array_equal(a, b)   # the caller's matrix is not touched


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predictions_equal_dense_and_are_batch_invariant(dtype):
    X = sparse_X(53, 60, density=0.1, empty_rows=(0, 17, 52))
    net = fastnn.Network([fastnn.Dense(60, 20, "relu"), fastnn.Dense(20, 4)], dtype=dtype,
                         seed=3)
    for layer in net.dense_layers:
        layer.b[...] = np.random.default_rng(5).standard_normal(layer.n_out)
    full = net.predict_proba(X)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(full, net.predict_proba(X.toarray()), rtol=tol, atol=tol)
    rng = np.random.default_rng(0)
    for rows in ([7], [52], rng.permutation(53)[:20], np.arange(53)[::-1]):
        np.testing.assert_array_equal(net.predict_proba(X[rows]), full[rows])
    np.testing.assert_array_equal(net.predict(sp.csc_matrix(X)), full.argmax(axis=1))


# ---- training --------------------------------------------------------------------------

OPTIMIZERS = {
    "adam": lambda: fastnn.Adam(0.01),
    "sgd": lambda: fastnn.SGD(0.05),
    "sgd_wd": lambda: fastnn.SGD(0.05, weight_decay=1e-3),
    "momentum": lambda: fastnn.SGD(0.05, momentum=0.9),
    "adam_clipped": lambda: fastnn.Adam(0.01, clip_norm=0.5),
}


def fit(X, y, optimizer, threads=1, dtype="float64", dropout=False, weights=None,
        backend="numba", epochs=3, loss="cross_entropy"):
    layers = [fastnn.Dense(X.shape[1], 24, "relu")]
    if dropout:
        layers.append(fastnn.Dropout(0.2))
    layers.append(fastnn.Dense(24, 4 if loss == "cross_entropy" else 2))
    net = fastnn.Network(layers, loss=loss, dtype=dtype, seed=1, threads=threads,
                         backend=backend)
    history = net.fit(X, y, epochs=epochs, batch_size=16, optimizer=OPTIMIZERS[optimizer](),
                      verbose=0, sample_weight=weights)
    return net, history.history


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_fit_equals_dense(optimizer):
    X = sparse_X(90, 150, density=0.05)
    y = np.arange(90) % 4
    net, history = fit(X, y, optimizer, dropout=True)
    net_d, history_d = fit(X.toarray(), y, optimizer, dropout=True)
    assert rel(net.get_params(), net_d.get_params()) < 1e-10
    np.testing.assert_allclose(history["loss"], history_d["loss"], rtol=1e-10)
    assert history["accuracy"] == history_d["accuracy"]


def test_fit_with_weights_regression_and_the_numpy_backend_equal_dense():
    X = sparse_X(70, 50, density=0.1)
    y = np.random.default_rng(3).standard_normal((70, 2))
    w = np.random.default_rng(4).uniform(0.5, 2, 70)
    for backend in BACKENDS:
        net, _ = fit(sp.csc_matrix(X), y, "adam", weights=w, backend=backend, loss="mse")
        net_d, _ = fit(X.toarray(), y, "adam", weights=w, backend=backend, loss="mse")
        assert rel(net.get_params(), net_d.get_params()) < 1e-10


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adam_clipped"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_threads_give_the_bits_of_one(optimizer, dtype):
    X = sparse_X(301, 700, density=0.02)
    y = np.arange(301) % 4
    # 700 inputs: 5 backward tiles of the first layer, shared by the two threads.
    one, history_one = fit(X, y, optimizer, threads=1, dtype=dtype, dropout=True)
    two, history_two = fit(X, y, optimizer, threads=2, dtype=dtype, dropout=True)
    np.testing.assert_array_equal(one.get_params(), two.get_params())
    assert history_one["loss"] == history_two["loss"]


def test_float32_fit_is_close_to_dense():
    X = sparse_X(80, 100, density=0.05)
    y = np.arange(80) % 4
    net, _ = fit(X, y, "adam", dtype="float32")
    net_d, _ = fit(X.toarray(), y, "adam", dtype="float32")
    assert rel(net.get_params(), net_d.get_params()) < 1e-4


def test_evaluate_and_validation_data_equal_dense():
    X = sparse_X(60, 30)
    y = np.arange(60) % 4
    net, _ = fit(X, y, "adam")
    assert net.evaluate(X, y) == pytest.approx(net.evaluate(X.toarray(), y), rel=1e-12)
    a = fastnn.Network([fastnn.Dense(30, 8, "relu"), fastnn.Dense(8, 4)], dtype="float64")
    b = fastnn.Network([fastnn.Dense(30, 8, "relu"), fastnn.Dense(8, 4)], dtype="float64")
    ha = a.fit(X, y, epochs=2, batch_size=8, verbose=0, validation_split=0.25)
    hb = b.fit(X.toarray(), y, epochs=2, batch_size=8, verbose=0, validation_split=0.25)
    np.testing.assert_allclose(ha.history["val_loss"], hb.history["val_loss"], rtol=1e-10)


def test_sparse_input_is_never_densified(monkeypatch):
    X = sparse_X(40, 20000, density=0.001)
    y = np.arange(40) % 4

    def refuse(*args, **kwargs):
        raise AssertionError("densified")

    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix):
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)
    net, _ = fit(sp.csc_matrix(X), y, "adam", epochs=1)
    net.predict(X)
    net.evaluate(X, y)
    net.loss_and_gradients(X, y)


# ---- bad input ------------------------------------------------------------------------

@pytest.mark.parametrize("call", ["fit", "predict", "evaluate", "loss_and_gradients"])
@pytest.mark.parametrize("bad, error, message", [
    ("nan", ValueError, r"X contains NaN or inf \(first at index \(4, 11\)\)"),
    ("inf", ValueError, r"X contains NaN or inf \(first at index \(4, 11\)\)"),
    ("big", ValueError, r"X has a value too large for float32 at index \(4, 11\)"),
    ("features", ValueError, r"X has 36 features but the network expects 37"),
    ("empty", ValueError, r"X is empty"),
    ("complex", TypeError, r"X must be numeric"),
])
def test_bad_sparse_X_is_refused_and_changes_nothing(call, bad, error, message):
    X = sparse_X(12, 37).tolil()
    if bad in ("nan", "inf", "big"):
        X[4, 11] = {"nan": np.nan, "inf": np.inf, "big": 1e300}[bad]
        X[7, 2] = np.nan                     # a later one: the first is named
    X = X.tocsr()
    if bad == "features":
        X = X[:, :36]
    elif bad == "empty":
        X = X[:0]
    elif bad == "complex":
        X = X.astype(np.complex128)
    net = make_net(WIDTHS, case="ce_labels", dtype="float32")
    before = net.get_params()
    y = np.arange(X.shape[0]) % WIDTHS[-1]
    with pytest.raises(error, match=message):
        if call in ("fit", "evaluate", "loss_and_gradients"):
            args = (X, y)
        else:
            args = (X,)
        getattr(net, call)(*args, **({"verbose": 0} if call == "fit" else {}))
    np.testing.assert_array_equal(net.get_params(), before)
    assert net.optimizer is None and net.history is None


def test_rescaling_with_sparse_input_is_refused():
    net = fastnn.Network([fastnn.Rescaling(0.5, offset=1.0), fastnn.Dense(37, 5)])
    with pytest.raises(ValueError, match="Rescaling"):
        net.predict(sparse_X(3, 37))


# ---- scikit-learn ----------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_array"])
def test_sklearn_estimators_take_sparse_X(solver, fmt):
    pytest.importorskip("sklearn")
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from fastnn.sklearn import MLPClassifier, MLPRegressor

    X = sparse_X(80, 40, density=0.2)
    y = np.arange(80) % 3
    kwargs = dict(hidden_layer_sizes=(10,), solver=solver, max_iter=15, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for estimator, target in ((MLPClassifier, y), (MLPRegressor, y / 2.0)):
            for early in ([False] if solver == "lbfgs" else [False, True]):
                dense = estimator(early_stopping=early, **kwargs).fit(X.toarray(), target)
                sparse = estimator(early_stopping=early, **kwargs).fit(FORMATS[fmt](X), target)
                for a, b in zip(sparse.coefs_ + sparse.intercepts_,
                                dense.coefs_ + dense.intercepts_):
                    assert rel(a, b) < 1e-10
                np.testing.assert_allclose(sparse.predict(X), dense.predict(X.toarray()),
                                           rtol=1e-10, atol=1e-12)
