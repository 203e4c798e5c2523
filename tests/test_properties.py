"""Property tests (hypothesis) for the numerical edge cases of the fused losses.

A one-layer identity network with ``W = I`` and ``b = 0`` outputs its input
exactly, so the examples can feed chosen logits (up to +-1e4, far beyond
where a naive ``log(softmax)`` or ``log(sigmoid)`` gives inf or NaN) straight
into the loss kernels of both backends.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastnn
from fastnn import reference
from fastnn.kernels import losses as kl

from conftest import BACKENDS, DTYPES, flat, make_net, relative_error, tol

SETTINGS = settings(max_examples=25, deadline=None)
BIG = 1e4

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
backends = pytest.mark.parametrize("backend", BACKENDS)
fused = pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])


NO_WEIGHTS = np.zeros(0)  # unweighted: every sample weighs 1


@st.composite
def logits_and_targets(draw, loss):
    """Logits mixing +-1e4 with ordinary values, and matching labels/targets."""
    n = draw(st.integers(1, 4))
    k = draw(st.integers(2 if loss == "cross_entropy" else 1, 4))
    value = st.one_of(st.sampled_from([-BIG, BIG, 0.0]),
                      st.floats(-BIG, BIG, allow_nan=False, width=32))
    u = draw(hnp.arrays(np.float64, (n, k), elements=value))
    if loss == "cross_entropy":
        labels = draw(hnp.arrays(np.int64, n, elements=st.integers(0, k - 1)))
        y = labels if draw(st.booleans()) else np.eye(k)[labels]
    else:
        y = draw(hnp.arrays(np.float64, (n, k), elements=st.sampled_from([0.0, 1.0])))
    return u, y


def identity_net(k, loss, dtype, backend):
    net = fastnn.Network([fastnn.Dense(k, k)], loss=loss, dtype=np.dtype(dtype).name,
                         backend=backend)
    net.layers[0].W[...] = np.eye(k)
    net.layers[0].b[...] = 0
    return net


def reference_loss_and_delta(loss, u, y):
    y = y if y.ndim == 1 else y.astype(np.float64)
    return reference.loss_and_delta(loss, u, y, "identity")


def known_targets_bug(loss, dtype, backend, y):
    """The float32 one-hot cross-entropy kernel loses ~ulp(max|u|) (see test_..._precision)."""
    return (backend == "numba" and dtype == np.float32 and loss == "cross_entropy"
            and y.ndim == 2)


def check_extreme(loss, dtype, backend, u, y):
    net = identity_net(u.shape[1], loss, dtype, backend)
    value, grads = net.loss_and_gradients(u, y)
    assert np.isfinite(value) and value >= 0
    assert all(np.isfinite(g).all() for pair in grads for g in pair)
    u_seen = u.astype(dtype).astype(np.float64)  # the logits the network computed with
    value_ref, delta_ref = reference_loss_and_delta(loss, u_seen, y)
    rtol = tol(dtype)["rtol"]
    # Relative accuracy for losses above 1, absolute below (a loss of ~0 with
    # margins of 1e4 is ~0 to within rounding, not to a relative precision).
    slack = rtol * max(value_ref, 1.0)
    if known_targets_bug(loss, dtype, backend, y):
        slack += 2 * np.spacing(np.float32(np.abs(u_seen).max()))
    assert abs(value - value_ref) <= slack, (value, value_ref)
    # dW = X^T delta with X = logits, db = column sums of delta.
    # The sums cancel (1e4 against -1e4), so the rounding is relative to the
    # sums of absolute terms, not to the results.
    abs_u, abs_delta = np.abs(u_seen), np.abs(delta_ref)
    for got, want, size in ((grads[0][1], delta_ref.sum(axis=0), abs_delta.sum(axis=0)),
                            (grads[0][0], u_seen.T @ delta_ref, abs_u.T @ abs_delta)):
        assert (np.abs(got - want) <= rtol * size.max() + 1e-30).all()


@fused
@backends
@dtypes
def test_extreme_logits_give_finite_loss_and_gradients(loss, backend, dtype):
    @SETTINGS
    @given(logits_and_targets(loss))
    def check(case):
        check_extreme(loss, dtype, backend, *case)

    check()


@fused
@backends
@dtypes
def test_extreme_mismatch_no_log_of_zero(loss, backend, dtype):
    """The target's probability underflows to exactly 0: the loss is the logit gap, not inf/NaN."""
    @SETTINGS
    @given(st.integers(1, 4), st.integers(2, 4), st.data())
    def check(n, k, data):
        labels = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, k - 1)))
        onehot = np.eye(k)[labels]
        # The true class gets -1e4, every other class +1e4.
        u = np.where(onehot > 0, -BIG, BIG)
        if loss == "cross_entropy":
            y = labels if data.draw(st.booleans()) else onehot
            # -log p_true = 2e4 + log(k - 1), per sample.
            expected = 2 * BIG + np.log(k - 1)
        else:
            y = onehot
            # Every entry is wrong by a margin of 1e4: loss 1e4 per entry, summed over k.
            expected = BIG * k
        check_extreme(loss, dtype, backend, u, y)
        value, _ = identity_net(k, loss, dtype, backend).loss_and_gradients(u, y)
        assert value == pytest.approx(expected, rel=float(10 * np.finfo(dtype).eps))

    check()


@backends
@dtypes
def test_predict_proba_is_a_distribution(backend, dtype):
    """Softmax rows lie in [0, 1] and sum to 1 even when the inputs are huge."""
    @SETTINGS
    @given(st.integers(1, 5), st.integers(0, 2 ** 16), st.floats(1, 1e3))
    def check(n, seed, scale):
        net = make_net([3, 4, 5], hidden="relu", case="ce_labels", dtype=np.dtype(dtype).name,
                       seed=seed, backend=backend)
        X = scale * np.random.default_rng(seed).standard_normal((n, 3))
        p = net.predict_proba(X)
        assert p.shape == (n, 5) and p.dtype == np.dtype(dtype)
        assert ((p >= 0) & (p <= 1)).all()
        # Five probabilities, each rounded once or twice: a few eps of the dtype.
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=10 * np.finfo(dtype).eps)
        assert (net.predict(X) == p.argmax(axis=1)).all()

    check()


@backends
@dtypes
def test_predict_proba_binary_in_unit_interval(backend, dtype):
    @SETTINGS
    @given(st.integers(1, 5), st.integers(0, 2 ** 16), st.floats(1, 1e3))
    def check(n, seed, scale):
        net = make_net([3, 4, 2], hidden="tanh", case="bce", dtype=np.dtype(dtype).name,
                       seed=seed, backend=backend)
        X = scale * np.random.default_rng(seed).standard_normal((n, 3))
        p = net.predict_proba(X)
        assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
        np.testing.assert_array_equal(net.predict(X), (p > 0.5).astype(np.int64))

    check()


@backends
def test_extreme_logits_gradients_match_between_backends_float64(backend):
    """Saturated softmax/sigmoid deltas are exact (p - t), so both backends agree to 1e-12.

    ``dW = U^T delta`` sums terms of size |u| |delta| that may cancel to ~0
    (equal logits: each column of ``P - T`` sums to 0), so its agreement is
    measured against the sum of the terms' sizes, not against the result.
    """
    @SETTINGS
    @given(logits_and_targets("cross_entropy"))
    def check(case):
        u, y = case
        nets = [identity_net(u.shape[1], "cross_entropy", np.float64, be) for be in BACKENDS]
        (_, [(dW_a, db_a)]), (_, [(dW_b, db_b)]) = [n.loss_and_gradients(u, y) for n in nets]
        assert relative_error(db_a, db_b) <= 1e-12 or np.abs(db_a - db_b).max() <= 1e-12
        _, delta = reference_loss_and_delta("cross_entropy", u, y)
        terms = np.abs(u).T @ np.abs(delta)
        assert (np.abs(dW_a - dW_b) <= 1e-12 * terms.max() + 1e-300).all()

    check()


# ---- the accuracy of the cross-entropy loss value for large logits ----------------



@pytest.mark.parametrize("kernel", ["labels", "targets"])
@dtypes
def test_cross_entropy_value_precision_large_logits(kernel, dtype, request):
    """Logits of 1e4 with a small loss: the value must keep the dtype's relative precision.

    A shifted log-sum-exp, ``log(sum exp(u - top)) + (top - u_y)``, is exact up
    to rounding of the small terms; adding ``top`` first and subtracting ``u_y``
    afterwards cancels ~1e4 against ~1e4 and keeps only ulp(1e4) of the loss.
    """
    u = np.array([[-BIG, -BIG], [BIG, BIG - 1], [BIG, -BIG]], dtype)
    labels = np.array([0, 1, 1])
    expected, _ = reference.cross_entropy(u.astype(np.float64), labels)
    delta = np.empty_like(u)
    if kernel == "labels":
        value = kl.softmax_cross_entropy(u, labels, NO_WEIGHTS, 3.0, delta)
    else:
        value = kl.softmax_cross_entropy_targets(u, np.eye(2, dtype=dtype)[labels], NO_WEIGHTS,
                                                 3.0, delta)
    assert value == pytest.approx(expected, rel=tol(dtype)["rtol"])
    u2 = np.array([[-BIG, -BIG]], dtype)  # loss log 2, the hardest case
    expected2 = np.log(2.0)
    value2 = (kl.softmax_cross_entropy(u2, labels[:1], NO_WEIGHTS, 1.0, np.empty_like(u2))
              if kernel == "labels"
              else kl.softmax_cross_entropy_targets(u2, np.eye(2, dtype=dtype)[:1], NO_WEIGHTS,
                                                    1.0, np.empty_like(u2)))
    assert value2 == pytest.approx(expected2, rel=tol(dtype)["rtol"])
