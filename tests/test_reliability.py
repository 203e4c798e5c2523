"""Reliability: kill and resume, divergence, determinism, thread safety."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import Dense, Network
from fastnn.checkpoint import read_checkpoint

SCRIPT = Path(__file__).with_name("_train_script.py")
EPOCHS = 7     # killed inside epoch 3: room to spare even on a loaded machine


def start(tmp_path, *args):
    return subprocess.Popen([sys.executable, str(SCRIPT), *map(str, args)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc, line):
    for got in proc.stdout:
        if got.strip() == line:
            return
    raise AssertionError(f"process ended before printing {line!r}: {proc.stderr.read()}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    proc = start(folder, folder / "full.npy", EPOCHS)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return np.load(folder / "full.npy")


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, uninterrupted):
    ck = tmp_path / "run.npz"
    proc = start(tmp_path, tmp_path / "a.npy", EPOCHS, "--checkpoint", ck)
    wait_for(proc, "epoch 2")
    time.sleep(0.15)                                   # well inside epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    header, _ = read_checkpoint(ck)
    assert 1 <= header["epoch"] < EPOCHS               # killed before the end
    resumed = start(tmp_path, tmp_path / "b.npy", EPOCHS, "--checkpoint", ck, "--resume", ck)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    final = np.load(tmp_path / "b.npy")
    assert final.tobytes() == uninterrupted.tobytes()


def test_sigkill_during_checkpoint_write_keeps_previous_checkpoint(tmp_path, uninterrupted):
    ck = tmp_path / "run.npz"
    proc = start(tmp_path, tmp_path / "a.npy", EPOCHS, "--checkpoint", ck,
                 "--slow-checkpoint-write", 2)
    wait_for(proc, "writing")                          # inside the second checkpoint write
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    header, _ = read_checkpoint(ck)                    # the first one, intact
    assert header["epoch"] == 1
    resumed = start(tmp_path, tmp_path / "b.npy", EPOCHS, "--resume", ck)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert np.load(tmp_path / "b.npy").tobytes() == uninterrupted.tobytes()


def test_resume_rejects_a_different_network_or_batch_size(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 4)), rng.integers(0, 3, 40)
    net = Network([Dense(4, 5, "relu"), Dense(5, 3)])
    net.fit(X, y, epochs=1, batch_size=8, verbose=0, checkpoint=tmp_path / "c.npz")
    other = Network([Dense(4, 6, "relu"), Dense(6, 3)])
    with pytest.raises(ValueError, match="different network"):
        other.fit(X, y, epochs=2, batch_size=8, verbose=0, resume=tmp_path / "c.npz")
    with pytest.raises(ValueError, match="batch_size=8"):
        Network([Dense(4, 5, "relu"), Dense(5, 3)]).fit(
            X, y, epochs=2, batch_size=4, verbose=0, resume=tmp_path / "c.npz")


# ---- divergence ----

def _regression(n=64):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 5))
    return X, X @ rng.standard_normal((5, 2))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_divergence_raises_and_keeps_last_finite_weights(backend):
    X, y = _regression()
    net = Network([Dense(5, 8, "tanh"), Dense(8, 2)], loss="mse", backend=backend)
    with pytest.raises(FloatingPointError, match=r"epoch 1, step \d+") as info:
        net.fit(X, y, epochs=3, batch_size=8, optimizer=fastnn.SGD(lr=1e6), verbose=0)
    assert np.isfinite(net.get_params()).all()
    assert net.history.nonfinite == info.value.history.nonfinite
    assert info.value.history.nonfinite["epoch"] == 0


def test_divergence_stop_mode_warns_and_records(recwarn):
    X, y = _regression()
    net = Network([Dense(5, 8, "tanh"), Dense(8, 2)], loss="mse")
    history = net.fit(X, y, epochs=3, batch_size=8, optimizer=fastnn.SGD(lr=1e6), verbose=0,
                      on_nonfinite="stop")
    assert history.nonfinite["epoch"] == 0
    assert any("diverged" in str(w.message) for w in recwarn)
    assert np.isfinite(net.get_params()).all()
    assert net.predict(X).shape == (64, 2) and np.isfinite(net.predict(X)).all()


def test_divergence_caught_at_the_failing_step_matches_stepwise_training():
    """Training step by step (one-step fits) diverges at the same step fit reports."""
    X, y = _regression()
    net = Network([Dense(5, 8, "tanh"), Dense(8, 2)], loss="mse")
    with pytest.raises(FloatingPointError) as info:
        net.fit(X, y, epochs=1, batch_size=8, optimizer=fastnn.SGD(lr=1e6), shuffle=False,
                verbose=0)
    step = info.value.history.nonfinite["step"]
    probe = Network([Dense(5, 8, "tanh"), Dense(8, 2)], loss="mse")
    opt = fastnn.SGD(lr=1e6)
    for s in range(step):
        probe.fit(X[8 * s:8 * s + 8], y[8 * s:8 * s + 8], epochs=1, batch_size=8,
                  optimizer=opt, shuffle=False, verbose=0)
    np.testing.assert_array_equal(probe.get_params(), net.get_params())
    with pytest.raises(FloatingPointError):
        probe.fit(X[8 * step:8 * step + 8], y[8 * step:8 * step + 8], epochs=1, batch_size=8,
                  optimizer=opt, shuffle=False, verbose=0)


# ---- determinism and thread safety ----

def _train(seed, threads=1, out=None, key=None):
    rng = np.random.default_rng(1)
    X = rng.random((600, 32), dtype=np.float32)
    y = rng.integers(0, 4, 600)
    net = Network([Dense(32, 64, "relu"), Dense(64, 4)], seed=seed, threads=threads)
    history = net.fit(X, y, epochs=3, batch_size=16, optimizer=fastnn.SGD(0.05, momentum=0.9),
                      verbose=0)
    result = (net.get_params(), history.history["loss"])
    if out is not None:
        out[key] = result
    return result


def test_same_seed_same_bits_across_processes():
    code = ("import sys; sys.path.insert(0, %r); from test_reliability import _train; "
            "import hashlib; p, l = _train(3); print(hashlib.sha256(p.tobytes()).hexdigest(), l)"
            % str(Path(__file__).parent))
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout for _ in range(2)}
    params, losses = _train(3)
    import hashlib
    assert outputs == {f"{hashlib.sha256(params.tobytes()).hexdigest()} {losses}\n"}


def test_two_networks_in_two_threads_match_sequential_training():
    sequential = {"a": _train(0), "b": _train(1)}
    concurrent = {}
    threads = [threading.Thread(target=_train, args=(seed, 1, concurrent, key))
               for key, seed in (("a", 0), ("b", 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key in "ab":
        assert concurrent[key][0].tobytes() == sequential[key][0].tobytes()
        assert concurrent[key][1] == sequential[key][1]


def test_a_divergence_in_the_first_epoch_leaves_every_history_key():
    """on_nonfinite="stop" before any epoch ends: the keys are there, with empty lists."""
    import warnings

    import fastnn

    X = np.ones((200, 3)) * 1e200          # several steps an epoch: it diverges in the first
    net = fastnn.Network([fastnn.Dense(3, 2)], dtype="float64")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        history = net.fit(X, np.arange(200) % 2, epochs=3, optimizer=fastnn.SGD(1e6),
                          on_nonfinite="stop", validation_split=0.2, verbose=0)
    assert history.nonfinite["epoch"] == 0
    assert history.history["loss"] == [] and history.history["val_accuracy"] == []
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr",
                                    "seconds", "samples_per_second"}
    for name in ("n_features", "n_outputs", "n_params"):
        assert getattr(fastnn.Network, name).__doc__
    assert fastnn.History.append.__doc__
