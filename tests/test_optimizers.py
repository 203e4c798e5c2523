"""Optimizers: the numba kernel against the numpy twin, PyTorch's formulas and torch.optim.

Every optimizer takes 5 steps from the same weights with the same scripted
gradients. The gradients span many magnitudes (1e-7 .. 10) so that ``eps``
and the bias corrections matter.
"""

import inspect
import math

import numpy as np
import pytest

import fastnn
from fastnn import SGD, Adam, AdamW, RMSprop, reference
from fastnn.datasets import load_digits, train_test_split
from fastnn.kernels.optimizers import optimizer_update

from conftest import TORCH_MISSING

N_PARAMS = 9
N_STEPS = 5

CASES = {
    "sgd": lambda: SGD(lr=0.1),
    "sgd_weight_decay": lambda: SGD(lr=0.1, weight_decay=0.05),
    "sgd_momentum": lambda: SGD(lr=0.1, momentum=0.9),
    # Dampening 0, no Nesterov: the step keeps the momentum buffer in the gradient's product.
    "sgd_momentum_wd": lambda: SGD(lr=0.1, momentum=0.9, weight_decay=0.05),
    "sgd_nesterov": lambda: SGD(lr=0.1, momentum=0.9, nesterov=True),
    "sgd_wd_dampening": lambda: SGD(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.05),
    "adam": lambda: Adam(lr=0.01, betas=(0.8, 0.95), eps=1e-6),
    "adam_weight_decay": lambda: Adam(lr=0.01, weight_decay=0.1),
    "adamw": lambda: AdamW(lr=0.01, weight_decay=0.1),
    "rmsprop": lambda: RMSprop(lr=0.01, alpha=0.9, eps=1e-6),
    "rmsprop_momentum": lambda: RMSprop(lr=0.01, alpha=0.9, momentum=0.7, weight_decay=0.05),
}


def scripted(seed=0):
    """Start weights and ``N_STEPS`` gradients, float64."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(N_PARAMS)
    scales = np.logspace(-7, 1, N_PARAMS)
    grads = [rng.standard_normal(N_PARAMS) * scales for _ in range(N_STEPS)]
    return w0, grads


def run_kernel(opt, w0, grads, dtype=np.float64):
    """The numba kernel over the optimizer's own state; returns the weights."""
    w = w0.astype(dtype)
    opt.init_state(w.size, np.dtype(dtype))
    for g in grads:
        t = opt.state["t"] + 1
        optimizer_update(opt.code, w, g.astype(dtype), opt.state["s1"], opt.state["s2"], t,
                         opt.hyper_array())
        opt.state["t"] = t
    return w


def run_reference(opt, w0, grads):
    w, s1, s2 = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    for t, g in enumerate(grads, start=1):
        reference.optimizer_update(opt.name, w, g, s1, s2, t, opt.hyperparameters())
    return w, s1, s2


# ---- PyTorch's algorithms, written out from the torch.optim documentation ----
# Independent of fastnn.reference on purpose: plain loops over steps, torch's
# own names (b, m, v, square_avg), no shared helper.

def torch_doc_sgd(w0, grads, lr, momentum, dampening, weight_decay, nesterov):
    theta = w0.copy()
    b = None
    for t, grad in enumerate(grads, start=1):
        g = grad.copy()
        if weight_decay != 0:
            g = g + weight_decay * theta
        if momentum != 0:
            if t > 1:
                b = momentum * b + (1 - dampening) * g
            else:
                b = g.copy()
            if nesterov:
                g = g + momentum * b
            else:
                g = b
        theta = theta - lr * g
    return theta, {"b": b}


def torch_doc_adam(w0, grads, lr, betas, eps, weight_decay, decoupled):
    beta1, beta2 = betas
    theta = w0.copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t, grad in enumerate(grads, start=1):
        g = grad.copy()
        if decoupled:                       # AdamW
            theta = theta - lr * weight_decay * theta
        elif weight_decay != 0:             # Adam's L2
            g = g + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta, {"m": m, "v": v}


def torch_doc_rmsprop(w0, grads, lr, alpha, eps, weight_decay, momentum):
    theta = w0.copy()
    square_avg = np.zeros_like(theta)
    b = np.zeros_like(theta)
    for grad in grads:
        g = grad.copy()
        if weight_decay != 0:
            g = g + weight_decay * theta
        square_avg = alpha * square_avg + (1 - alpha) * g ** 2
        if momentum > 0:
            b = momentum * b + g / (np.sqrt(square_avg) + eps)
            theta = theta - lr * b
        else:
            theta = theta - lr * g / (np.sqrt(square_avg) + eps)
    return theta, {"square_avg": square_avg, "b": b}


def torch_doc(opt, w0, grads):
    """``(weights, s1, s2)`` from the written-out algorithm, in fastnn's state layout."""
    if isinstance(opt, SGD):
        w, st = torch_doc_sgd(w0, grads, opt.lr, opt.momentum, opt.dampening,
                              opt.weight_decay, opt.nesterov)
        return w, st["b"], None
    if isinstance(opt, Adam):
        w, st = torch_doc_adam(w0, grads, opt.lr, opt.betas, opt.eps, opt.weight_decay,
                               decoupled=isinstance(opt, AdamW))
        return w, st["m"], st["v"]
    w, st = torch_doc_rmsprop(w0, grads, opt.lr, opt.alpha, opt.eps, opt.weight_decay,
                              opt.momentum)
    return w, (st["b"] if opt.momentum > 0 else None), st["square_avg"]


def close(actual, desired):
    np.testing.assert_allclose(actual, desired, rtol=1e-10, atol=1e-12)


# ---- the kernel against the twin and the written-out formulas ----------------

@pytest.mark.parametrize("case", CASES)
def test_kernel_matches_reference_and_torch_formulas(case):
    w0, grads = scripted()
    opt = CASES[case]()
    w_kernel = run_kernel(opt, w0, grads)
    w_ref, s1_ref, s2_ref = run_reference(CASES[case](), w0, grads)
    w_doc, s1_doc, s2_doc = torch_doc(CASES[case](), w0, grads)

    assert not np.allclose(w_kernel, w0), "the optimizer did not move the weights"
    close(w_kernel, w_ref)
    close(w_kernel, w_doc)
    assert opt.state["t"] == N_STEPS
    for kernel_state, ref_state, doc_state in ((opt.state["s1"], s1_ref, s1_doc),
                                               (opt.state["s2"], s2_ref, s2_doc)):
        close(kernel_state, ref_state)
        if doc_state is not None:
            close(kernel_state, doc_state)


@pytest.mark.parametrize("case", CASES)
def test_kernel_float32_close_to_float64(case):
    w0, grads = scripted()
    w64 = run_kernel(CASES[case](), w0, grads, np.float64)
    opt32 = CASES[case]()
    w32 = run_kernel(opt32, w0, grads, np.float32)
    assert w32.dtype == np.float32 and opt32.state["s1"].dtype == np.float32
    np.testing.assert_allclose(w32, w64, rtol=1e-5, atol=1e-6)


def test_written_out_formulas_differ_between_optimizers():
    """Guards the comparison above: the cases really are different updates."""
    w0, grads = scripted()
    finals = {case: run_kernel(CASES[case](), w0, grads) for case in CASES}
    names = list(finals)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.allclose(finals[a], finals[b], rtol=1e-8, atol=0), (a, b)


# ---- real torch.optim -----------------------------------------------------------

def torch_optimizer(torch, opt, params):
    if isinstance(opt, SGD):
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum,
                               dampening=opt.dampening, weight_decay=opt.weight_decay,
                               nesterov=opt.nesterov)
    if isinstance(opt, Adam):
        cls = torch.optim.AdamW if isinstance(opt, AdamW) else torch.optim.Adam
        return cls(params, lr=opt.lr, betas=opt.betas, eps=opt.eps,
                   weight_decay=opt.weight_decay)
    return torch.optim.RMSprop(params, lr=opt.lr, alpha=opt.alpha, eps=opt.eps,
                               weight_decay=opt.weight_decay, momentum=opt.momentum)


@pytest.mark.parametrize("case", CASES)
def test_kernel_matches_torch_optim(case):
    torch = pytest.importorskip("torch", reason=TORCH_MISSING)
    w0, grads = scripted()
    opt = CASES[case]()
    w_kernel = run_kernel(opt, w0, grads)

    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    topt = torch_optimizer(torch, CASES[case](), [p])
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        topt.step()
    close(w_kernel, p.detach().numpy())

    st = topt.state[p]
    if isinstance(opt, SGD) and opt.momentum:
        close(opt.state["s1"], st["momentum_buffer"].numpy())
    elif isinstance(opt, Adam):
        close(opt.state["s1"], st["exp_avg"].numpy())
        close(opt.state["s2"], st["exp_avg_sq"].numpy())
    elif isinstance(opt, RMSprop):
        close(opt.state["s2"], st["square_avg"].numpy())
        if opt.momentum:
            close(opt.state["s1"], st["momentum_buffer"].numpy())


# ---- state ----------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_state_dict_round_trip_continues_identically(case):
    w0, grads = scripted()
    straight = run_kernel(CASES[case](), w0, grads)

    first = CASES[case]()
    w = run_kernel(first, w0, grads[:3])
    saved = first.state_dict()
    saved["s1"][:] = 123.0                      # a copy: must not reach the optimizer
    assert not np.any(first.state["s1"] == 123.0)
    saved = first.state_dict()
    first.state["s2"][:] = -7.0                 # and the optimizer must not reach the copy
    assert not np.any(saved["s2"] == -7.0)

    resumed = CASES[case]()
    resumed.load_state_dict(saved)
    assert resumed.state["t"] == 3
    np.testing.assert_array_equal(run_kernel(resumed, w, grads[3:]), straight)


def test_state_dict_before_any_step_is_none():
    opt = Adam()
    assert opt.state_dict() is None
    opt.load_state_dict(None)
    assert opt.state is None


# ---- through Network.fit ------------------------------------------------------------

def tiny_problem(n=48, n_features=5, n_classes=3, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    return X, y


def tiny_net(backend, dtype="float64", seed=3):
    return fastnn.Network([fastnn.Dense(5, 8, "tanh"), fastnn.Dense(8, 3)], dtype=dtype,
                          seed=seed, backend=backend)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("case", CASES)
def test_fit_lowers_the_loss(case, backend):
    X, y = tiny_problem()
    net = tiny_net(backend)
    before = net.evaluate(X, y)["loss"]
    history = net.fit(X, y, epochs=15, batch_size=8, optimizer=CASES[case](), verbose=0)
    after = net.evaluate(X, y)["loss"]
    assert np.isfinite(history.history["loss"]).all()
    assert after < 0.9 * before, (before, after)
    assert net.optimizer.state["t"] == 15 * 6


@pytest.mark.parametrize("case", CASES)
def test_fit_backends_agree_after_one_epoch(case):
    X, y = tiny_problem()
    params = {}
    for backend in ("numba", "numpy"):
        net = tiny_net(backend)
        net.fit(X, y, epochs=1, batch_size=8, optimizer=CASES[case](), verbose=0)
        params[backend] = (net.get_params(), net.optimizer.state)
    (w_nb, st_nb), (w_np, st_np) = params["numba"], params["numpy"]
    assert not np.allclose(w_nb, tiny_net("numpy").get_params())
    np.testing.assert_allclose(w_nb, w_np, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(st_nb["s1"], st_np["s1"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(st_nb["s2"], st_np["s2"], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", ["sgd_momentum", "adam", "rmsprop_momentum"])
def test_fit_resumes_from_saved_optimizer_state(case):
    """Two epochs straight == one epoch, save, load into fresh objects, one more epoch."""
    X, y = tiny_problem()
    straight = tiny_net("numba")
    straight.fit(X, y, epochs=2, batch_size=8, optimizer=CASES[case](), shuffle=False,
                 verbose=0)

    first = tiny_net("numba")
    first.fit(X, y, epochs=1, batch_size=8, optimizer=CASES[case](), shuffle=False, verbose=0)
    resumed = tiny_net("numba", seed=11)
    resumed.set_params(first.get_params())
    opt = CASES[case]()
    opt.load_state_dict(first.optimizer.state_dict())
    resumed.fit(X, y, epochs=1, batch_size=8, optimizer=opt, shuffle=False, verbose=0)
    np.testing.assert_array_equal(resumed.get_params(), straight.get_params())


# ---- Adam against SGD on the digits ---------------------------------------------------

def test_adam_beats_sgd_on_digits_in_fewer_epochs():
    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, seed=0)
    curves = {}
    epochs = 12
    for name, opt in (("sgd", SGD(lr=0.01)), ("adam", Adam(lr=1e-3))):
        net = fastnn.Network([fastnn.Dense(64, 32, "relu"), fastnn.Dense(32, 10)], seed=0)
        history = net.fit(X_train, y_train, epochs=epochs, batch_size=32, optimizer=opt,
                          verbose=0, validation_data=(X_test, y_test))
        curves[name] = np.array(history.history["val_accuracy"])
    sgd_final = curves["sgd"][-1]
    assert sgd_final > 0.5, curves["sgd"]          # SGD does learn, just slower
    reached = np.flatnonzero(curves["adam"] >= sgd_final)
    assert reached.size, curves
    # Adam matches SGD's 12-epoch accuracy in at most half the epochs ...
    assert reached[0] + 1 <= epochs // 2, curves
    # ... and ends clearly ahead.
    assert curves["adam"][-1] > sgd_final + 0.05, curves


# ---- hyperparameter types --------------------------------------------------------------
#
# Every constructor argument of every optimizer, found by introspection, so a new
# hyperparameter without a check fails here. A string must never be parsed
# (Adam(lr="0.1") trained with lr 0.1) and a bool is not a number.

OPTIMIZER_CLASSES = (SGD, Adam, AdamW, RMSprop)
NOT_NUMBERS = ["0.1", True, None, [0.1], np.array([0.1]), 1 + 0j]
NOT_FLAGS = ["yes", "False", 1, 0, None]
NOT_PAIRS = ["ab", None, 0.9, (0.9,), (0.9, 0.99, 0.999), (0.9, "0.999"), (True, 0.9),
             (0.9, None)]


def _hyperparameters():
    for cls in OPTIMIZER_CLASSES:
        for name, param in inspect.signature(cls).parameters.items():
            yield cls, name, param.default


@pytest.mark.parametrize("cls, name, default",
                         [pytest.param(*case, id=f"{case[0].__name__}-{case[1]}")
                          for case in _hyperparameters()])
def test_every_hyperparameter_refuses_wrong_types(cls, name, default):
    if isinstance(default, bool):
        bad_values, wanted = NOT_FLAGS, "True or False"
    elif isinstance(default, tuple):
        bad_values, wanted = NOT_PAIRS, None
    elif default is None:              # off by default (clipping): None is the off value
        bad_values = [v for v in NOT_NUMBERS if v is not None] + [0, -1.0, float("inf")]
        wanted = "None or a finite positive number"
    else:
        bad_values, wanted = NOT_NUMBERS, "number"
    for bad in bad_values:
        with pytest.raises(ValueError, match=rf"^{name}(\[\d\])? must be") as error:
            cls(**{name: bad})
        if wanted is not None:   # says what is wanted and what it got
            assert wanted in str(error.value) and repr(bad) in str(error.value)


def test_ints_and_numpy_scalars_are_fine_for_floats():
    sgd = SGD(lr=1, momentum=0, weight_decay=np.float32(0.5), dampening=np.int64(0),
              clip_norm=np.int32(2))
    assert sgd.get_config() == dict(lr=1.0, momentum=0.0, nesterov=False, weight_decay=0.5,
                                    dampening=0.0, clip_norm=2.0, clip_value=None)
    assert all(type(v) is float for k, v in sgd.get_config().items()
               if k not in ("nesterov", "clip_value"))
    adam = Adam(lr=1, betas=np.array([0, 0.5]), eps=1, weight_decay=0, clip_value=np.float32(3))
    assert adam.get_config() == dict(lr=1.0, betas=[0.0, 0.5], eps=1.0, weight_decay=0.0,
                                     clip_norm=None, clip_value=3.0)
    assert type(adam.betas[0]) is float and type(adam.clip_value) is float
    assert SGD(momentum=0.9, nesterov=np.bool_(True)).nesterov is True
    assert RMSprop(lr=2, alpha=0, eps=3, weight_decay=1, momentum=0).get_config() == \
        dict(lr=2.0, alpha=0.0, eps=3.0, weight_decay=1.0, momentum=0.0, clip_norm=None,
             clip_value=None)


def test_a_huge_integer_is_refused_not_overflowed():
    with pytest.raises(ValueError, match="lr must be a finite"):
        Adam(lr=10 ** 400)



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("code,momentum", [(0, 0.9), (1, 0.0), (3, 0.5)])
def test_optimizer_state_never_goes_subnormal(dtype, code, momentum):
    """A dead unit's state (gradient 0 from now on) ends at exactly 0, not in the subnormals."""
    from fastnn.kernels import optimizers as ko
    tiny = np.finfo(dtype).tiny
    hyper = np.zeros(ko.N_HYPER)
    hyper[[ko.LR, ko.MOMENTUM, ko.BETA1, ko.BETA2, ko.EPS, ko.ALPHA]] = \
        [1e-3, momentum, 0.9, 0.99, 1e-8, 0.9]
    w = np.ones(4, dtype)
    g = np.array([1e-3, -1e-3, 0.5, np.nan], dtype)          # the last one diverged
    s1, s2 = np.zeros(4, dtype), np.zeros(4, dtype)
    optimizer_update(code, w, g, s1, s2, 1, hyper)
    g[:3] = 0
    seen_subnormal = False
    for t in range(2, 200_000):
        optimizer_update(code, w, g, s1, s2, t, hyper)
        for state in (s1, s2):
            small = np.abs(state[:3])
            seen_subnormal |= bool(((small > 0) & (small < tiny)).any())
        if not (s1[:3].any() or s2[:3].any()):
            break
    assert not seen_subnormal
    assert not s1[:3].any() and not s2[:3].any(), "the state should have decayed to 0"
    assert np.isnan(w[3])
