"""Bad input at every Network entry point: correct result or a clear error, state intact.

``CASES`` maps a case name to a function building ``(X, y)`` from clean data,
and the outcome expected at every entry point: ``"ok"`` (works and matches the
clean float copy) or an exception type with a message pattern.
"""

import numpy as np
import pytest

import fastnn
from fastnn import Dense, Network

N, F, C = 12, 4, 3


def clean():
    rng = np.random.default_rng(0)
    return rng.random((N, F)), rng.integers(0, C, N)


def with_value(value):
    def build(X, y):
        X = X.copy()
        X[2, 1] = value
        return X, y
    return build


def readonly(X, y):
    X, y = X.copy(), y.copy()
    X.flags.writeable = False
    y.flags.writeable = False
    return X, y


CASES = {
    "nan in X": (with_value(np.nan), (ValueError, "NaN or inf")),
    "inf in X": (with_value(np.inf), (ValueError, "NaN or inf")),
    "wrong feature count": (lambda X, y: (X[:, :3], y), (ValueError, "3 features")),
    "1-D X": (lambda X, y: (X[:, 0], y), (ValueError, "2-D")),
    "3-D X": (lambda X, y: (X[:, :, None], y), (ValueError, "2-D")),
    "empty X": (lambda X, y: (X[:0], y[:0]), (ValueError, "empty")),
    "object dtype": (lambda X, y: (X.astype(object), y), (TypeError, "numeric")),
    "complex dtype": (lambda X, y: (X.astype(complex), y), (TypeError, "numeric")),
    "string dtype": (lambda X, y: (X.astype(str), y), (TypeError, "numeric")),
    "value too large for float32": (with_value(1e300), (ValueError, "too large")),
    "label out of range": (lambda X, y: (X, np.where(np.arange(N) == 3, C, y)),
                           (ValueError, "labels must be in 0..2")),
    "negative label": (lambda X, y: (X, np.where(np.arange(N) == 3, -1, y)),
                       (ValueError, "labels must be in")),
    "non-integer label": (lambda X, y: (X, y + 0.5), (ValueError, "integers")),
    "nan label": (lambda X, y: (X, np.where(np.arange(N) == 3, np.nan, y)),
                  (ValueError, "integers")),
    "string labels": (lambda X, y: (X, y.astype(str)), (TypeError, "y must be numeric")),
    "y too short": (lambda X, y: (X, y[:-1]), (ValueError, "different lengths")),
    "one-hot y of wrong width": (lambda X, y: (X, np.eye(C + 1)[y]), (ValueError, "shape")),
    # accepted and converted
    "single sample": (lambda X, y: (X[:1], y[:1]), "ok"),
    "bool X": (lambda X, y: (X > 0.5, y), "ok"),
    "integer X": (lambda X, y: ((X * 10).astype(np.int16), y), "ok"),
    "read-only arrays": (readonly, "ok"),
    "Fortran order": (lambda X, y: (np.asfortranarray(X), y), "ok"),
    "strided view": (lambda X, y: (np.repeat(X, 2, axis=0)[::2], y), "ok"),
    "python lists": (lambda X, y: (X.tolist(), y.tolist()), "ok"),
    "huge but representable (1e30)": (with_value(1e30), "any"),
}

ENTRY_POINTS = {
    "fit": lambda net, X, y: net.fit(X, y, epochs=2, batch_size=5, verbose=0),
    "predict": lambda net, X, y: net.predict(X),
    "predict_proba": lambda net, X, y: net.predict_proba(X),
    "evaluate": lambda net, X, y: net.evaluate(X, y),
    "loss_and_gradients": lambda net, X, y: net.loss_and_gradients(X, y),
}
Y_FREE = {"predict", "predict_proba"}


def make_net():
    return Network([Dense(F, 5, "relu"), Dense(5, C)], seed=1)


def outcome(entry, case):
    """Run one cell of the matrix: ``("ok"|exception name, message, weights_changed)``.

    The name is of the built-in class (fastnn's ``DataError`` is a ValueError).
    """
    X, y = CASES[case][0](*clean())
    net = make_net()
    before = net.get_params()
    try:
        result = ENTRY_POINTS[entry](net, X, y)
    except (ValueError, TypeError, FloatingPointError) as exc:
        builtin = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
        return builtin.__name__, str(exc), not np.array_equal(before, net.get_params())
    return "ok", result, None


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("case", list(CASES))
def test_entry_point_handles_bad_input(entry, case):
    build, expected = CASES[case]
    X, y = build(*clean())
    if entry in Y_FREE and case in ("label out of range", "negative label", "non-integer label",
                                    "nan label", "string labels", "y too short",
                                    "one-hot y of wrong width"):
        expected = "ok"                                # y is not an input there
    kind, detail, changed = outcome(entry, case)
    if expected == "any":
        assert kind in ("ok", "FloatingPointError", "ValueError")
        if kind != "ok":
            assert changed is False, "a rejected call changed the weights"
        return
    if expected == "ok":
        assert kind == "ok", detail
        if entry == "fit":
            return
        # The same answer as for the clean float copy of the same data.
        Xc = np.array(np.asarray(X, dtype=np.float64), order="C")
        yc = np.asarray(y)
        reference = ENTRY_POINTS[entry](make_net(), Xc, yc)
        if isinstance(reference, dict):
            assert detail == pytest.approx(reference)
        elif isinstance(reference, tuple):
            assert detail[0] == pytest.approx(reference[0])
        else:
            np.testing.assert_allclose(detail, reference, rtol=1e-6)
        return
    error, pattern = expected
    assert kind == error.__name__, f"expected {error.__name__}, got {kind}: {detail}"
    assert pattern in detail, detail
    assert changed is False, "a rejected call changed the weights"


def test_sparse_input_is_rejected_clearly():
    class FakeSparse:
        def toarray(self):
            raise AssertionError("must not be densified silently")

    with pytest.raises(TypeError, match="sparse"):
        make_net().predict(FakeSparse())


def test_assigned_weights_of_wrong_shape_are_rejected():
    net = make_net()
    net.dense_layers[0].W = np.zeros((F + 1, 5))
    with pytest.raises(ValueError, match=r"layer 0 W has shape \(5, 5\), expected \(4, 5\)"):
        net.predict(clean()[0])


def test_nan_weights_give_a_clear_error_not_garbage():
    net = make_net()
    net.dense_layers[1].b[0] = np.nan
    with pytest.raises(FloatingPointError, match="parameters are not finite"):
        net.predict(clean()[0])
