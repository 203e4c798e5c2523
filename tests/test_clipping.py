"""Gradient clipping: ``clip_norm`` / ``clip_value`` on every optimizer, against PyTorch.

The oracle is what a PyTorch user writes: ``torch.nn.utils.clip_grad_norm_``
(or ``clip_grad_value_``) over every parameter, then ``optimizer.step()``.
fastnn must match it to 1e-10 in float64 over 5 steps, in the update kernel,
its numpy twin and through ``Network.fit`` on both backends, with steps whose
norm is above the threshold (scaled) and below it (left alone).
"""

import numpy as np
import pytest

import fastnn
from fastnn import SGD, Adam, AdamW, RMSprop, reference
from fastnn.kernels import optimizers as ko

from conftest import BACKENDS, TORCH_MISSING

N_STEPS = 5
BOUND = dict(rtol=1e-10, atol=1e-12)
# How the 9 flat parameters are split into torch tensors: the norm must be global.
PIECES = (4, 3, 2)


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason=TORCH_MISSING)


def scripted(seed=0):
    """Start weights and 5 gradients of very different sizes (some clip, some do not)."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(9)
    sizes = [3.0, 0.05, 1.0, 0.02, 6.0]
    return w0, [rng.standard_normal(9) * s for s in sizes]


NORMS = [np.linalg.norm(g) for g in scripted()[1]]
CLIP_NORM = float(np.median(NORMS))          # steps 1, 5 clip; 2, 4 do not
CLIP_VALUE = 0.5

CASES = {
    "sgd_momentum": lambda **c: SGD(lr=0.1, momentum=0.9, weight_decay=0.05, **c),
    "sgd_nesterov": lambda **c: SGD(lr=0.1, momentum=0.8, nesterov=True, **c),
    "sgd": lambda **c: SGD(lr=0.1, weight_decay=0.05, **c),
    "adam": lambda **c: Adam(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, **c),
    "adamw": lambda **c: AdamW(lr=0.05, weight_decay=0.1, **c),
    "rmsprop": lambda **c: RMSprop(lr=0.01, alpha=0.9, momentum=0.5, weight_decay=0.05, **c),
}
CLIPS = {"norm": dict(clip_norm=CLIP_NORM), "value": dict(clip_value=CLIP_VALUE)}


def test_the_script_has_steps_on_both_sides_of_the_thresholds():
    _, grads = scripted()
    assert sum(n > CLIP_NORM for n in NORMS) >= 2 and sum(n < CLIP_NORM for n in NORMS) >= 2
    big = [np.abs(g).max() > CLIP_VALUE for g in grads]
    assert any(big) and not all(big)


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


def torch_clip(torch, opt, params):
    """What a PyTorch user calls between ``backward()`` and ``step()``; returns the norm."""
    if opt.clip_norm is not None:
        return float(torch.nn.utils.clip_grad_norm_(params, opt.clip_norm))
    if opt.clip_value is not None:
        torch.nn.utils.clip_grad_value_(params, opt.clip_value)
    return None


def run_torch(torch, opt, w0, grads):
    cuts = np.cumsum((0,) + PIECES)
    params = [torch.nn.Parameter(torch.tensor(w0[a:b])) for a, b in zip(cuts[:-1], cuts[1:])]
    topt = torch_optimizer(torch, opt, params)
    for g in grads:
        for p, (a, b) in zip(params, zip(cuts[:-1], cuts[1:])):
            p.grad = torch.tensor(g[a:b])
        torch_clip(torch, opt, params)
        topt.step()
    return np.concatenate([p.detach().numpy() for p in params])


def run_kernel(opt, w0, grads, flag=None):
    """The numba update; ``flag`` appends an entry after the gradient, as a distributed sum does."""
    w = w0.copy()
    s1, s2 = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = g if flag is None else np.append(g, flag)
        ko.optimizer_update(opt.code, w, g, s1, s2, t, opt.hyper_array())
    return w


def run_reference(opt, w0, grads):
    w = w0.copy()
    s1, s2 = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        reference.optimizer_update(opt.name, w, g.copy(), s1, s2, t, opt.hyperparameters())
    return w


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("case", CASES)
def test_update_matches_torch_clip_then_step(case, clip, torch):
    w0, grads = scripted()
    opt = CASES[case](**CLIPS[clip])
    want = run_torch(torch, opt, w0, grads)
    unclipped = run_torch(torch, CASES[case](), w0, grads)
    assert not np.allclose(want, unclipped, rtol=1e-6)      # the clipping did something
    np.testing.assert_allclose(run_kernel(opt, w0, grads), want, **BOUND)
    np.testing.assert_allclose(run_reference(opt, w0, grads), want, **BOUND)
    # The entry after the gradient (a distributed run's stop flag) is not gradient.
    np.testing.assert_array_equal(run_kernel(opt, w0, grads, flag=1e6),
                                  run_kernel(opt, w0, grads))


def test_below_the_threshold_nothing_is_scaled():
    w0, grads = scripted()
    small = [g for g, n in zip(grads, NORMS) if n < CLIP_NORM]
    for case in ("sgd_momentum", "adam"):
        np.testing.assert_array_equal(run_kernel(CASES[case](clip_norm=CLIP_NORM), w0, small),
                                      run_kernel(CASES[case](), w0, small))
    g = grads[0]
    assert ko.clip_coefficient(g, 9, 0.0) == 1.0                      # off
    assert ko.clip_coefficient(g, 9, 1e9) == 1.0
    assert ko.clip_coefficient(g, 9, 0.5) == pytest.approx(
        0.5 / (np.linalg.norm(g) + 1e-6), rel=1e-15)
    assert ko.gradient_norm(g, 4) == pytest.approx(np.linalg.norm(g[:4]), rel=1e-15)


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("case", ["sgd_momentum", "adam"])
def test_update_in_pieces_with_the_global_scale(case, clip):
    """How a caller updating in chunks (threads) clips: one norm, summed over the pieces."""
    w0, grads = scripted()
    opt = CASES[case](**CLIPS[clip])
    hyper = opt.hyper_array()
    w, s1, s2 = w0.copy(), np.zeros(9), np.zeros(9)
    for t, g in enumerate(grads, start=1):
        pieces = [(0, 4), (4, 7), (7, 9)]
        norm = np.sqrt(sum(ko.squared_norm(g, a, b) for a, b in pieces))
        scale = ko.clip_scale(norm, hyper[ko.CLIP_NORM])
        for a, b in pieces:
            ko.update_scaled(opt.code, w[a:b], g[a:b], s1[a:b], s2[a:b], t, hyper, scale)
    # The norm summed in another order: rounding only.
    np.testing.assert_allclose(w, run_kernel(opt, w0, grads), rtol=1e-14, atol=1e-15)


def test_float32_close_to_float64():
    w0, grads = scripted()
    for clip in CLIPS.values():
        opt = CASES["adam"](**clip)
        w32 = w0.astype(np.float32)
        s1, s2 = np.zeros_like(w32), np.zeros_like(w32)
        for t, g in enumerate(grads, start=1):
            ko.optimizer_update(opt.code, w32, g.astype(np.float32), s1, s2, t,
                                opt.hyper_array())
        np.testing.assert_allclose(w32, run_kernel(opt, w0, grads), rtol=1e-5, atol=1e-6)


# ---- through Network.fit: the training kernel, both backends -------------------------------

WIDTHS = [5, 7, 3]


def problem(n=10, seed=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, WIDTHS[0])) * 2, rng.integers(0, 3, n)


def fastnn_net(backend):
    net = fastnn.Network([fastnn.Dense(5, 7, "tanh"), fastnn.Dense(7, 3)], dtype="float64",
                         seed=4, backend=backend)
    rng = np.random.default_rng(5)
    for layer in net.layers:
        layer.W *= 3                              # large gradients: clipping matters
        layer.b[...] = rng.uniform(-0.5, 0.5, layer.n_out)
    return net


def torch_fit(torch, net, opt, X, y, batch_size):
    """5 steps of batch ``batch_size``, in order, clipping every step; returns (params, norms)."""
    params = [torch.tensor(a, requires_grad=True) for layer in net.layers
              for a in (layer.W, layer.b)]
    topt = torch_optimizer(torch, opt, params)
    norms = []
    for start in range(0, len(X), batch_size):
        x = torch.from_numpy(X[start:start + batch_size])
        h = torch.tanh(x @ params[0] + params[1]) @ params[2] + params[3]
        loss = torch.nn.functional.cross_entropy(h, torch.from_numpy(y[start:start + batch_size]))
        topt.zero_grad()
        loss.backward()
        norms.append(torch_clip(torch, opt, params))
        topt.step()
    return np.concatenate([p.detach().numpy().ravel() for p in params]), norms


FIT_CASES = {
    "sgd": lambda **c: SGD(lr=0.5, **c),          # plain SGD: no longer the fused step
    "sgd_momentum": lambda **c: SGD(lr=0.3, momentum=0.9, weight_decay=0.01, **c),
    "adam": lambda **c: Adam(lr=0.05, weight_decay=0.01, **c),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clip", ["norm", "value"])
@pytest.mark.parametrize("case", FIT_CASES)
def test_fit_matches_torch_clip_then_step(case, clip, backend, torch):
    X, y = problem()
    net = fastnn_net(backend)
    clip_args = {"norm": dict(clip_norm=3.0), "value": dict(clip_value=0.2)}[clip]
    opt = FIT_CASES[case](**clip_args)
    want, norms = torch_fit(torch, net, opt, X, y, batch_size=2)
    if clip == "norm":                           # both sides of the threshold, in 5 steps
        assert any(n > 3.0 for n in norms) and any(n < 3.0 for n in norms), norms
    unclipped, _ = torch_fit(torch, net, FIT_CASES[case](), X, y, batch_size=2)
    assert not np.allclose(want, unclipped, rtol=1e-6)
    net.fit(X, y, epochs=1, batch_size=2, shuffle=False, optimizer=opt, verbose=0)
    assert opt.state["t"] == N_STEPS
    np.testing.assert_allclose(net.get_params(), want, **BOUND)


# ---- the hyperparameters ---------------------------------------------------------------

@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, RMSprop])
def test_one_clip_at_a_time(cls):
    with pytest.raises(ValueError, match="give clip_norm or clip_value, not both"):
        cls(clip_norm=1.0, clip_value=1.0)


def test_clipping_is_saved_with_the_optimizer(tmp_path):
    X, y = problem()
    net = fastnn_net("numba")
    net.fit(X, y, epochs=1, batch_size=2, optimizer=Adam(0.05, clip_norm=0.75), verbose=0)
    fastnn.save(net, tmp_path / "m.npz", include_optimizer=True)
    back = fastnn.load(tmp_path / "m.npz")
    assert back.optimizer.clip_norm == 0.75 and back.optimizer.clip_value is None
    assert back.optimizer.get_config() == net.optimizer.get_config()
    net.fit(X, y, epochs=1, batch_size=2, shuffle=False, verbose=0)
    back.fit(X, y, epochs=1, batch_size=2, shuffle=False, verbose=0)
    np.testing.assert_array_equal(back.get_params(), net.get_params())
    assert "clip_norm=0.75" in repr(back.optimizer)
