"""The training step compiled per configuration (``kernels.features``, ``backends.LEAN_STEPS``).

A common run's step is compiled with its loss, optimizer and optional parts as literals:
it must compile none of the kernels it does not use, and train bit-identically to the
generic step that dispatches at run time.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import backends
from fastnn.kernels import features as kf

ROOT = Path(__file__).resolve().parents[1]

def _train(optimizer, loss="cross_entropy", lean=True, monkeypatch=None, activation="relu"):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 6))
    y = rng.integers(0, 3, 50) if loss == "cross_entropy" else rng.standard_normal((50, 3))
    if not lean:
        monkeypatch.setattr(backends, "LEAN_STEPS", frozenset())
    net = fastnn.Network([fastnn.Dense(6, 5, activation), fastnn.Dense(5, 3)],
                         loss=loss, dtype="float32", seed=3)
    net.fit(X, y, epochs=2, batch_size=16, optimizer=optimizer, verbose=0)
    loss_value, grads = net.loss_and_gradients(X, y)
    monkeypatch.undo()
    return net.get_params(), loss_value, grads


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("make", [lambda: fastnn.SGD(0.05), lambda: fastnn.Adam(0.01),
                                  lambda: fastnn.SGD(0.05, clip_value=0.1)],
                         ids=["sgd", "adam", "sgd_clip_value"])
def test_the_lean_step_trains_bit_identically_to_the_generic_one(loss, make, monkeypatch):
    lean = _train(make(), loss, True, monkeypatch=monkeypatch)
    generic = _train(make(), loss, False, monkeypatch=monkeypatch)
    np.testing.assert_array_equal(lean[0], generic[0])
    assert lean[1] == generic[1]
    for a, b in zip(lean[2], generic[2]):
        for x, z in zip(a, b):
            np.testing.assert_array_equal(x, z)


_COMPILED_HERE_OR_LOADED = """
import sys
import numpy as np
import fastnn
rng = np.random.default_rng(1)
X, y = rng.standard_normal((50, 6)), rng.integers(0, 3, 50)
params = []
for optimizer in (fastnn.SGD(0.05), fastnn.SGD(0.05, clip_value=0.1)):
    net = fastnn.Network([fastnn.Dense(6, 5, "relu"), fastnn.Dense(5, 3)], dtype="float32",
                         seed=3, threads=1)
    net.fit(X, y, epochs=2, batch_size=16, optimizer=optimizer, verbose=0)
    params.append(net.get_params())
np.save(sys.argv[1], np.array(params))
"""


def test_a_step_gives_the_same_bits_compiled_here_or_loaded_from_the_cache(tmp_path):
    """The bits of a step do not depend on what its process compiled before.

    The first process compiles a plain SGD step, then the ``clip_value`` step, whose
    compile links in the kernels the first one compiled here; the second loads both
    from numba's cache. With LLVM free to reorder sums and fuse multiply-adds
    (fastmath ``reassoc``/``contract``), the clip_value step's biases differed in
    their last bits between the two (``kernels._config``).
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               **{backends.HELPER_ENV: "0"})
    for name in ("compiled", "loaded"):
        subprocess.run([sys.executable, "-c", _COMPILED_HERE_OR_LOADED, str(tmp_path / name)],
                       env=env, check=True, timeout=300)
    compiled = np.load(tmp_path / "compiled.npy")
    loaded = np.load(tmp_path / "loaded.npy")
    np.testing.assert_array_equal(compiled, loaded)


@pytest.mark.parametrize("activation", ["tanh", "leaky_relu"])
def test_the_lean_step_of_other_activations_trains_bit_identically(activation, monkeypatch):
    # tanh: the lean step with the curved activations; leaky relu: piecewise-linear
    lean = _train(fastnn.Adam(0.01), "cross_entropy", True, monkeypatch, activation)
    generic = _train(fastnn.Adam(0.01), "cross_entropy", False, monkeypatch, activation)
    np.testing.assert_array_equal(lean[0], generic[0])
    assert lean[1] == generic[1]


def test_features_follow_the_run():
    from fastnn.kernels import optimizers as ko
    hyper = np.zeros(ko.N_HYPER)

    class Spec:
        rates = np.zeros(2)
        codes = np.array([1, 0])        # relu, identity

    assert backends._step_features(Spec, ko.SGD, hyper, False) == 0
    hyper[ko.MOMENTUM] = 0.9
    assert backends._step_features(Spec, ko.SGD, hyper, False) == kf.MOMENTUM
    assert backends._step_features(Spec, ko.ADAM, hyper, False) == 0   # Adam has no momentum
    hyper[ko.MOMENTUM], hyper[ko.CLIP_NORM] = 0.0, 1.0
    assert backends._step_features(Spec, ko.ADAM, hyper, True) == kf.WHOLE | kf.SPARSE
    hyper[ko.CLIP_NORM] = 0.0
    assert backends._step_features(Spec, ko.SGD, hyper, False, mpi_fn=12345) == kf.WHOLE
    Spec.rates = np.array([0.5, 0.0])
    assert backends._step_features(Spec, ko.SGD, hyper, False) == kf.DROPOUT
    Spec.rates = np.zeros(2)
    for code in (2, 0):                 # leaky relu: piecewise-linear, no curved kernels
        Spec.codes = np.array([code, 0])
        assert backends._step_features(Spec, ko.SGD, hyper, False) == 0
    for code in (3, 4):                 # sigmoid, tanh
        Spec.codes = np.array([1, code])
        assert backends._step_features(Spec, ko.SGD, hyper, False) == kf.CURVED
    assert not backends._lean(0, kf.DROPOUT, ko.SGD)
    assert backends._lean(0, 0, ko.SGD) and not backends._lean(0, 0, ko.RMSPROP)
    assert backends._lean(0, kf.CURVED, ko.ADAM)            # a tanh network's own step ...
    assert not backends._lean(0, kf.CURVED, ko.ADAM, np.float64)    # ... in float32
    assert backends._lean(0, 0, ko.ADAM, np.float64)
    assert not backends._lean(0, kf.CURVED | kf.MOMENTUM, ko.SGD)


# ---- a cold step compiled on two cores (backends.compile_on_two_cores) ----------------------

# One cold run, everything compiled in the process (no helper): a lean SGD run and
# loss_and_gradients' step. What it compiled (a lean run compiles none of the kernels it
# does not use), the tile signatures each step's typing compiled, and the parameters to
# compare with HELPER_RUN's (the same run with the helper).
_RUN = """
import json, numpy as np, fastnn
from fastnn.kernels import activations, dropout, losses, optimizers, sparse, step
rng = np.random.default_rng(0)
X, y = rng.standard_normal((40, 5)).astype(np.float32), rng.integers(0, 3, 40)
net = fastnn.Network([fastnn.Dense(5, 4, "relu"), fastnn.Dense(4, 3)], dtype="float32", seed=1)
net.fit(X, y, epochs=2, batch_size=8, optimizer=fastnn.SGD(0.1), verbose=0)
result = {"params": net.get_params().tolist(),
          "forward_loaded": sum(step.forward_tiles._cache_hits.values()),
          "backward_loaded": sum(step.backward_tiles._cache_hits.values()),
          "step_loaded": sum(step.train_steps._cache_hits.values())}
"""
HELPER_RUN = _RUN + "print(json.dumps(result))"
COLD_RUN = _RUN + """
net.loss_and_gradients(X, y)
kernels = {"adam": optimizers.adam_update, "rmsprop": optimizers.rmsprop_update,
           "momentum": optimizers.sgd_momentum_update, "mse": losses.mean_squared_error,
           "bce": losses.sigmoid_binary_cross_entropy, "poisson": losses.poisson_deviance,
           "dropout": dropout.dropout_forward, "csr": sparse.csr_product,
           "update_chunks": step.update_chunks, "ce": losses.softmax_cross_entropy,
           "sgd": optimizers.sgd_update}
compiled = {k: len(f.signatures) for k, f in kernels.items()}
for f in (activations.bias_activation, activations.activation_backward):
    compiled[f.__name__] = sorted({str(sig[-1]) for sig in f.signatures})
found = []
for sig in step.train_steps.signatures:
    forward, backward = step.tile_signatures(sig)
    found.append([forward in step.forward_tiles.signatures,
                  backward in step.backward_tiles.signatures])
print(json.dumps(dict(result, compiled=compiled, found=found)))
"""


def _cold_run(folder, program, helper):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(folder / f"cache{helper}"),
               FASTNN_COMPILE_HELPER=str(helper))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """COLD_RUN in a fresh process with an empty cache and no helper."""
    return _cold_run(tmp_path_factory.mktemp("alone"), COLD_RUN, 0)


def test_a_lean_run_compiles_only_its_own_kernels(alone):
    compiled = dict(alone["compiled"])
    assert compiled.pop("ce") == 1
    assert compiled.pop("sgd") == 1
    # relu and identity only: the activations compiled without sigmoid and tanh
    assert compiled.pop("bias_activation") == ["Literal[bool](False)"]
    assert compiled.pop("activation_backward") == ["Literal[bool](False)"]
    assert compiled == dict.fromkeys(compiled, 0)


def test_the_predicted_tile_signatures_are_the_ones_the_step_compiles(alone):
    # Typing each step compiled its tiles (a step loaded from the cache loads none of
    # them): the lean SGD step and loss_and_gradients' (no update) step.
    assert alone["step_loaded"] == 0
    assert len(alone["found"]) == 2
    assert alone["found"] == [[True, True]] * 2


def test_a_cold_step_compiles_its_forward_tiles_in_a_helper_process(alone, tmp_path):
    from fastnn._threads import available_cores
    helped = _cold_run(tmp_path, HELPER_RUN, 1)
    # With a second core, forward_tiles came from the helper through the (cold) cache;
    # this process compiled backward_tiles and the step itself.
    assert helped["forward_loaded"] == (1 if available_cores() >= 2 else 0)
    assert helped["backward_loaded"] == 0 and helped["step_loaded"] == 0
    assert alone["forward_loaded"] == 0
    # the same code, wherever it was compiled
    assert helped["params"] == alone["params"]


@pytest.mark.parametrize("how", ["frozen", "env", "flag"])
def test_no_helper_process_where_it_is_turned_off(how, monkeypatch):
    def no_process(*args, **kwargs):
        raise AssertionError("a helper process was started")
    monkeypatch.setattr(backends.subprocess, "Popen", no_process)
    monkeypatch.setattr(backends, "available_cores", lambda: 4)
    monkeypatch.setattr(backends, "_cached", lambda kernel, sig: False)   # a cold cache
    if how == "frozen":         # a frozen application: sys.executable is the app itself
        monkeypatch.setattr(sys, "frozen", True, raising=False)
    elif how == "env":
        monkeypatch.setenv(backends.HELPER_ENV, "0")
    else:
        monkeypatch.setitem(backends.COMPILE_HELPER, "on", False)
    assert backends.compile_on_two_cores(("a", "signature")) is None
