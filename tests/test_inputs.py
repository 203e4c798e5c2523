"""Bad input is refused with a ValueError/TypeError that names the problem.

Never a numba typing traceback: the Python layer checks everything before a
kernel runs (``numba``'s ``TypingError`` is neither a ValueError nor a
TypeError, so ``pytest.raises`` would let it through as a failure). Awkward but
valid input (strided views, Fortran order, integers, lists) is accepted and
gives exactly what the contiguous float copy gives. A refused call changes
nothing: weights and optimizer state are as before.
"""

import numpy as np
import pytest

import fastnn
from fastnn import Dense, Network

from conftest import BACKENDS, flat, make_net, make_problem

WIDTHS = [4, 5, 3]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def net(backend):
    return make_net(WIDTHS, hidden="relu", case="ce_labels", backend=backend)


@pytest.fixture
def data():
    return make_problem(WIDTHS, "ce_labels", 6, seed=4)


def with_value(X, index, value):
    X = np.array(X, dtype=np.float64)
    X[index] = value
    return X


# ---- data: (call, X, y, error type, message) --------------------------------------

X6 = make_problem(WIDTHS, "ce_labels", 6, seed=4)[0]
Y6 = make_problem(WIDTHS, "ce_labels", 6, seed=4)[1]

BAD_DATA = {
    "too_few_features": (X6[:, :3], Y6, ValueError, r"X has 3 features but the network expects 4"),
    "too_many_features": (np.hstack([X6, X6]), Y6, ValueError, r"8 features .* expects 4"),
    "1d_X": (X6[0], Y6[:1], ValueError, r"2-D"),
    "3d_X": (X6.reshape(6, 2, 2), Y6, ValueError, r"2-D"),
    "lengths": (X6, Y6[:5], ValueError, r"different lengths.*6 samples.*5 samples"),
    "scalar_y": (X6, 1, ValueError, r"different lengths"),
    "nan_X": (with_value(X6, (2, 1), np.nan), Y6, ValueError, r"NaN or inf.*\(2, 1\)"),
    "inf_X": (with_value(X6, (0, 3), np.inf), Y6, ValueError, r"NaN or inf.*\(0, 3\)"),
    "neg_inf_X": (with_value(X6, (5, 0), -np.inf), Y6, ValueError, r"NaN or inf"),
    "label_too_big": (X6, np.array([0, 1, 2, 3, 0, 1]), ValueError,
                      r"labels must be in 0\.\.2.*found 3"),
    "label_negative": (X6, np.array([0, 1, -1, 2, 0, 1]), ValueError,
                       r"labels must be in 0\.\.2.*found -1"),
    "label_not_integer": (X6, Y6 + 0.5, ValueError, r"labels must be integers"),
    "label_nan": (X6, np.array([0, 1, np.nan, 2, 0, 1]), ValueError, r"labels must be integers"),
    "onehot_wrong_width": (X6, np.eye(4)[[0, 1, 2, 3, 0, 1]], ValueError,
                           r"y must have shape .*\(6, 4\)"),
    "empty": (np.zeros((0, 4)), np.zeros(0, np.int64), ValueError, r"empty"),
    "object_X": (X6.astype(object), Y6, TypeError, r"X must be numeric.*object"),
    "complex_X": (X6.astype(complex), Y6, TypeError, r"X must be numeric.*complex"),
    "string_X": (X6.astype(str), Y6, TypeError, r"X must be numeric.*<U"),
    "string_y": (X6, np.array(list("abcabc")), TypeError, r"y must be numeric"),
    "complex_y": (X6, Y6.astype(complex), TypeError, r"y must be numeric"),
}


@pytest.mark.parametrize("call", ["fit", "loss_and_gradients", "evaluate"])
@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_data_is_refused_and_changes_nothing(net, case, call):
    X, y, error, message = BAD_DATA[case]
    net.fit(X6, Y6, epochs=1, batch_size=4, optimizer=fastnn.Adam(), verbose=0)
    before, state = net.get_params(), net.optimizer.state_dict()
    kwargs = dict(verbose=0, optimizer=fastnn.SGD(lr=1.0)) if call == "fit" else {}
    with pytest.raises(error, match=message):
        getattr(net, call)(X, y, **kwargs)
    np.testing.assert_array_equal(net.get_params(), before)
    assert isinstance(net.optimizer, fastnn.Adam)  # the refused fit kept the old optimizer
    after = net.optimizer.state_dict()
    assert after["t"] == state["t"]
    np.testing.assert_array_equal(after["s1"], state["s1"])
    np.testing.assert_array_equal(after["s2"], state["s2"])


PREDICT_BAD = [k for k in BAD_DATA if k.endswith("_X") or "features" in k or k == "empty"]


@pytest.mark.parametrize("call", ["predict", "predict_proba"])
@pytest.mark.parametrize("case", PREDICT_BAD)
def test_bad_X_refused_by_predict(net, case, call):
    X, _, error, message = BAD_DATA[case]
    if case.endswith("inf_X") or case == "nan_X":
        # predict only scans X when the forward pass is not finite; it must still
        # name X rather than return NaN probabilities.
        message = r"NaN or inf|not finite"
    with pytest.raises(error, match=message):
        getattr(net, call)(X)


def test_sparse_X_predicts_as_dense(net):
    # Sparse input is accepted (tests/test_sparse.py checks it in depth).
    sparse = pytest.importorskip("scipy.sparse")
    np.testing.assert_allclose(net.predict_proba(sparse.csr_matrix(X6)), net.predict_proba(X6),
                               rtol=1e-5, atol=1e-6)


def test_value_too_large_for_float32():
    net = make_net(WIDTHS, case="ce_labels", dtype="float32")
    with pytest.raises(ValueError, match="too large for float32"):
        net.fit(with_value(X6, (1, 1), 1e300), Y6, verbose=0)


@pytest.mark.parametrize("loss, y, message", [
    ("binary_cross_entropy", np.full((6, 3), 2.0), r"targets must lie in \[0, 1\]"),
    ("binary_cross_entropy", np.full((6, 3), -0.5), r"targets must lie in \[0, 1\]"),
    ("binary_cross_entropy", np.zeros((6, 2)), r"y must have shape \(n_samples, 3\)"),
    ("mse", np.ones((6, 2)), r"y must have shape \(n_samples, 3\)"),
    ("mse", np.full((6, 3), np.nan), r"y contains NaN or inf"),
    ("mse", np.full((6, 3), np.inf), r"y contains NaN or inf"),
    ("cross_entropy", np.full((6, 3), 1.5), r"targets must lie in \[0, 1\]"),
    ("poisson", with_value(np.ones((6, 3)), (2, 1), -0.5),
     r"poisson targets must be >= 0; found -0.5 at index \(2, 1\)"),
    ("poisson", np.full((6, 3), np.nan), r"y contains NaN or inf"),
])
def test_bad_targets(loss, y, message, backend):
    net = Network([Dense(4, 3)], loss=loss, dtype="float64", backend=backend)
    before = net.get_params()
    with pytest.raises(ValueError, match=message):
        net.fit(X6, y, verbose=0)
    np.testing.assert_array_equal(net.get_params(), before)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(epochs=-1), ValueError, r"epochs must be an integer >= 0"),
    (dict(epochs=1.5), ValueError, r"epochs must be an integer"),
    (dict(batch_size=0), ValueError, r"batch_size must be an integer >= 1"),
    (dict(optimizer="sgd"), TypeError, r"optimizer must be a fastnn optimizer"),
    (dict(validation_data=(X6[:, :3], Y6)), ValueError, r"validation X has 3 features"),
    (dict(validation_data=(with_value(X6, (0, 0), np.nan), Y6)), ValueError,
     r"validation X contains NaN"),
    (dict(validation_data=(X6, Y6[:2])), ValueError, r"different lengths"),
    (dict(validation_data=(X6,)), ValueError, r"validation_data must be a pair"),
    (dict(validation_split=1.0), ValueError, r"validation_split must be in \[0, 1\)"),
])
def test_bad_fit_arguments_change_nothing(net, kwargs, error, message):
    before = net.get_params()
    with pytest.raises(error, match=message):
        net.fit(X6, Y6, verbose=0, **kwargs)
    np.testing.assert_array_equal(net.get_params(), before)
    assert net.optimizer is None


# ---- construction ------------------------------------------------------------------

@pytest.mark.parametrize("build, error, message", [
    (lambda: Dense(3, 2, activation="swish"), ValueError,
     r"unknown activation 'swish'; valid names: .*relu.*tanh"),
    (lambda: Dense(3, 2, activation=None), ValueError, r"unknown activation None"),
    (lambda: Dense(0, 2), ValueError, r"n_in must be a positive integer"),
    (lambda: Dense(3, 2.5), ValueError, r"n_out must be a positive integer"),
    (lambda: Dense(3, True), ValueError, r"n_out must be a positive integer"),
    (lambda: Network([Dense(3, 2)], loss="hinge"), ValueError,
     r"unknown loss 'hinge'; valid names: cross_entropy, binary_cross_entropy, mse, poisson"),
    (lambda: Network([Dense(3, 2)], backend="cuda"), ValueError,
     r"unknown backend 'cuda'; valid names: numba, numpy"),
    (lambda: Network([Dense(3, 2)], dtype="float16"), ValueError,
     r"dtype must be 'float32' or 'float64', got 'float16'"),
    (lambda: Network([Dense(3, 2)], dtype="int64"), ValueError, r"dtype must be 'float32'"),
    (lambda: Network([Dense(3, 2)], dtype="bogus"), ValueError, r"dtype must be 'float32'"),
    (lambda: Network([Dense(3, 2)], dtype=object), ValueError, r"dtype must be 'float32'"),
    (lambda: Network([Dense(3, 2)], dtype=np.complex128), ValueError, r"dtype must be 'float32'"),
    (lambda: Network([Dense(3, 2)], dtype=str), ValueError, r"dtype must be 'float32'"),
    (lambda: Network([Dense(3, 2)], seed=-1), ValueError, r"seed must be a non-negative"),
    (lambda: Network([Dense(3, 2)], threads=0), ValueError, r"threads must be None or a positive"),
    (lambda: Network([]), ValueError, r"at least one"),
    (lambda: Network(["dense"]), TypeError, r"layer 0 is str, expected Dense"),
    (lambda: Network([Dense(4, 5), Dense(6, 3)]), ValueError,
     r"layer 1 has n_in=6 but layer 0 has n_out=5"),
    (lambda: Network([Dense(4, 5, "relu"), Dense(5, 3, "relu")]), ValueError,
     r"cross_entropy.*applies softmax.*'identity' or 'softmax', got 'relu'"),
    (lambda: Network([Dense(4, 3, "sigmoid")]), ValueError,
     r"'identity' or 'softmax', got 'sigmoid'"),
    (lambda: Network([Dense(4, 3, "softmax")], loss="binary_cross_entropy"), ValueError,
     r"binary_cross_entropy.*'identity' or 'sigmoid', got 'softmax'"),
    (lambda: Network([Dense(4, 3, "relu")], loss="poisson"), ValueError,
     r"poisson.*applies exp.*'identity' or 'exp', got 'relu'"),
    (lambda: Network([Dense(4, 3, "softmax")], loss="mse"), ValueError,
     r"'softmax' needs loss 'cross_entropy'"),
    (lambda: Network([Dense(4, 5, "softmax"), Dense(5, 3)]), ValueError,
     r"'softmax' of layer 0 is only allowed on the output layer"),
    (lambda: fastnn.SGD(lr=-0.1), ValueError, r"lr must be"),
    (lambda: fastnn.SGD(lr="fast"), ValueError, r"lr must be"),
    (lambda: fastnn.Adam(betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
])
def test_bad_construction(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_assigned_weights_of_wrong_shape_or_type(net, data):
    X, _ = data
    net.layers[0].W = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"layer 0 W has shape \(3, 3\), expected \(4, 5\)"):
        net.predict(X)
    net.layers[0].W = np.full((4, 5), "x")
    with pytest.raises(TypeError, match=r"layer 0 W must be numeric"):
        net.predict(X)


# ---- awkward but valid input gives exactly the contiguous float result ------------

def variants(X):
    """Non-contiguous, Fortran-ordered, integer and list versions of ``X``'s values."""
    Xi = np.round(X * 3).astype(np.int64)  # integer-valued data
    wide = np.zeros((X.shape[0] * 2, X.shape[1] * 3))
    wide[::2, ::3] = X
    return {
        "row_strided": (wide[::2, ::3], X),
        "fortran": (np.asfortranarray(X), X),
        "reversed": (X[::-1][::-1], X),
        "transposed_view": (np.ascontiguousarray(X.T).T, X),
        "float32_input": (X.astype(np.float32), X.astype(np.float32).astype(np.float64)),
        "int64": (Xi, Xi.astype(np.float64)),
        "int8_fortran": (np.asfortranarray(Xi.astype(np.int8)), Xi.astype(np.float64)),
        "uint8": (np.abs(Xi).astype(np.uint8), np.abs(Xi).astype(np.float64)),
        "bool": (X > 0, (X > 0).astype(np.float64)),
        "list": (X.tolist(), X),
    }


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", list(variants(X6)))
def test_awkward_X_same_as_contiguous_float(variant, dtype, backend):
    X_odd, X_plain = variants(X6)[variant]
    y_odd = np.asfortranarray(np.eye(3)[Y6])[:, :]  # targets as a Fortran array too
    results = []
    for X, y in ((X_odd, y_odd), (X_plain, np.eye(3)[Y6])):
        net = make_net(WIDTHS, hidden="tanh", case="ce_onehot", dtype=dtype, backend=backend)
        loss, grads = net.loss_and_gradients(X, y)
        proba = net.predict_proba(X)
        net.fit(X, y, epochs=2, batch_size=4, verbose=0)
        results.append((loss, flat(grads), proba, net.get_params(), net.evaluate(X, y)))
    (l1, g1, p1, w1, e1), (l2, g2, p2, w2, e2) = results
    assert l1 == l2
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(w1, w2)
    assert e1 == e2


@pytest.mark.parametrize("labels", [
    Y6[::-1][::-1],                                   # a view
    np.stack([Y6, Y6], axis=1)[:, 0],                 # strided
    Y6.astype(np.int32), Y6.astype(np.uint8), Y6.astype(np.float64), Y6.tolist(),
], ids=["view", "strided", "int32", "uint8", "float_integers", "list"])
def test_awkward_labels_same_as_int64(labels, backend):
    out = []
    for y in (labels, Y6.astype(np.int64)):
        net = make_net(WIDTHS, hidden="relu", case="ce_labels", backend=backend)
        loss, grads = net.loss_and_gradients(X6, y)
        net.fit(X6, y, epochs=1, batch_size=4, verbose=0)
        out.append((loss, flat(grads), net.get_params()))
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1], out[1][1])
    np.testing.assert_array_equal(out[0][2], out[1][2])


def test_single_feature_and_single_output_accept_1d(backend):
    """One feature: X of shape (n,) is a column; one mse output: y of shape (n,) too."""
    net = Network([Dense(1, 3, "tanh"), Dense(3, 1)], loss="mse", dtype="float64",
                  backend=backend)
    x = np.linspace(-1, 1, 5)
    np.testing.assert_array_equal(net.predict(x), net.predict(x[:, None]))
    l1, g1 = net.loss_and_gradients(x, 2 * x)
    l2, g2 = net.loss_and_gradients(x[:, None], 2 * x[:, None])
    assert l1 == l2
    np.testing.assert_array_equal(flat(g1), flat(g2))
