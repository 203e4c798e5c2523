"""Data-parallel training over MPI (``fit(distributed=...)``), run for real with ``mpiexec``.

Each test launches ``mpiexec -n N python -m mpi4py tests/_distributed_worker.py
SCENARIO OUT`` on loopback (MPICH's ``mpiexec`` from the ``mpich`` wheel,
``HYDRA_LAUNCHER=fork``) with a timeout, so a hang fails instead of blocking,
and reads what each rank wrote. ``python -m mpi4py`` aborts every rank when
one raises an uncaught exception.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_distributed_worker.py"
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                        os.environ.get("PATH", "")]))

pytestmark = pytest.mark.skipif(
    MPIEXEC is None, reason="no mpiexec on the path: pip install 'fastnn-numba[mpi]' (the MPICH "
                            "wheel) or install an MPI")


def _env(timeout):
    env = dict(os.environ, HYDRA_LAUNCHER="fork", MPIEXEC_TIMEOUT=str(timeout))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent),
                                                      env.get("PYTHONPATH", "")]))
    return env


def _argv(n, *args):
    return [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", str(WORKER),
            *map(str, args)]


def mpirun(n, *args, timeout=120):
    """Run the worker on ``n`` ranks; fail on a non-zero exit (with its output)."""
    proc = subprocess.run(_argv(n, *args), env=_env(timeout), capture_output=True, text=True,
                          timeout=timeout + 30)
    assert proc.returncode == 0, f"mpiexec exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def load(path):
    with np.load(path) as archive:
        result = {key: archive[key] for key in archive.files}
    for key in ("history", "epochs", "seen"):
        if key in result:
            result[key] = json.loads(str(result[key]))
    return result


def relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("run, n, ranks, batch_size", [
    ("momentum", 203, 2, None),
    ("adam_dropout_schedule_es", 203, 2, None),
    ("adam_dropout_schedule_es", 203, 3, None),     # 32 rows per batch: shares 10, 11, 11
    ("sgd", 97, 2, None),                           # last batch of 1 row: one rank gets none
    ("adamw", 203, 2, None),
    ("rmsprop", 203, 3, 7),                          # batches of 7 rows over 3 ranks
    ("sgd_clip_norm", 203, 2, None),                 # clipped after the allreduce
    ("adam_clip_value", 203, 3, None),
])
def test_equals_single_process_training(tmp_path, run, n, ranks, batch_size):
    """float64, same seed and global batch: <= 1e-10 relative, ranks bit-identical."""
    args = ["equal", tmp_path, run, "float64", n] + ([batch_size] if batch_size else [])
    mpirun(ranks, *args)
    single = load(tmp_path / "single.npz")
    results = [load(tmp_path / f"rank{r}.npz") for r in range(ranks)]
    for result in results:
        np.testing.assert_array_equal(result["params"], results[0]["params"])
        assert result["history"] == results[0]["history"]
        assert result["epochs"] == results[0]["epochs"]
    assert relative(results[0]["params"], single["params"]) <= 1e-10
    # Schedules and early stopping decided at the same epochs as in one process.
    assert results[0]["epochs"] == single["epochs"]
    assert results[0]["history"]["lr"] == single["history"]["lr"]
    for key, values in single["history"].items():
        if key not in ("seconds", "samples_per_second"):
            np.testing.assert_allclose(results[0]["history"][key], values, rtol=1e-10,
                                       err_msg=key)


@pytest.mark.parametrize("ranks", [2, 3])
def test_each_rank_reads_only_its_own_rows_of_a_memory_map(tmp_path, ranks):
    """Every rank's map is wrong outside its own shares, and the run is still one process's."""
    mpirun(ranks, "own_rows", tmp_path, ranks)
    single = load(tmp_path / "single.npz")
    owned = [np.load(tmp_path / f"own{r}.npy") for r in range(ranks)]
    assert (np.sum(owned, axis=0) == 1).all()           # the shares cover every row once
    assert all(0 < o.sum() < o.size for o in owned)      # and each rank's map is poisoned
    results = [load(tmp_path / f"rank{r}.npz") for r in range(ranks)]
    for result in results:
        np.testing.assert_array_equal(result["params"], results[0]["params"])
    assert relative(results[0]["params"], single["params"]) <= 1e-10
    np.testing.assert_allclose(results[0]["history"]["loss"], single["history"]["loss"],
                               rtol=1e-10)
    np.testing.assert_allclose(results[0]["history"]["accuracy"],
                               single["history"]["accuracy"], rtol=1e-10)


def test_float32_and_plain_sgd_stay_close(tmp_path):
    """float32 sums in another order across ranks; the fused one-process SGD is not used."""
    mpirun(2, "equal", tmp_path, "sgd", "float32", 203)
    single = load(tmp_path / "single.npz")
    ranks = [load(tmp_path / f"rank{r}.npz") for r in range(2)]
    np.testing.assert_array_equal(ranks[0]["params"], ranks[1]["params"])
    assert ranks[0]["params"].dtype == np.float32
    assert relative(ranks[0]["params"], single["params"]) <= 1e-5


def test_communicator_argument_and_numpy_backend(tmp_path):
    mpirun(2, "communicator", tmp_path)
    ranks = [load(tmp_path / f"rank{r}.npz") for r in range(2)]
    np.testing.assert_array_equal(ranks[0]["params"], ranks[1]["params"])
    np.testing.assert_array_equal(ranks[0]["numpy_params"], ranks[1]["numpy_params"])
    assert relative(ranks[0]["params"], ranks[0]["numpy_params"]) <= 1e-12


def test_an_error_on_one_rank_ends_every_rank(tmp_path):
    mpirun(2, "errors", tmp_path)
    seen = [load(tmp_path / f"rank{r}.npz") for r in range(2)]
    # Bad input on rank 1 only: both raise ValueError with rank 1's message.
    assert seen[1]["seen"]["bad_input"] == "X contains NaN or inf (first at index (3, 2))"
    assert seen[0]["seen"]["bad_input"] == "rank 1: X contains NaN or inf (first at index (3, 2))"
    # A callback raising on rank 0 in epoch 2.
    assert seen[0]["seen"]["callback"] == "'callback failed'"
    assert seen[1]["seen"]["callback"] == "\"rank 0: 'callback failed'\""
    # Divergence is seen at the same step everywhere, and the rollback keeps replicas equal.
    for rank in seen:
        assert "training diverged" in rank["seen"]["diverged"]
        assert rank["seen"]["diverged_finite"]
    np.testing.assert_array_equal(seen[0]["diverged_params"], seen[1]["diverged_params"])
    # Replicas that drift apart are caught after the epoch, naming the ranks.
    for rank in seen:
        message = rank["seen"]["replicas"]
        assert "parameters differ after epoch 1" in message
        assert "ranks 0:" in message and "ranks 1:" in message


def test_only_rank_0_prints_and_writes(tmp_path):
    proc = mpirun(2, "files", tmp_path)
    assert proc.stdout.count("epoch 1/2") == 1 and proc.stdout.count("epoch 2/2") == 1
    assert (tmp_path / "ckpt0.npz").exists() and not (tmp_path / "ckpt1.npz").exists()
    assert (tmp_path / "model0.npz").exists() and not (tmp_path / "model1.npz").exists()


def test_sigkill_of_one_rank_fails_fast_and_resume_is_bit_identical(tmp_path):
    epochs = 12
    full, killed, resumed = (tmp_path / name for name in ("full", "killed", "resumed"))
    for folder in (full, killed, resumed):
        folder.mkdir()
    mpirun(2, "train", full, epochs, full / "ckpt.npz", "-")

    ckpt = killed / "ckpt.npz"
    proc = subprocess.Popen(_argv(2, "train", killed, epochs, ckpt, "-", killed),
                            env=_env(120), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 90
        while not (ckpt.exists() and (killed / "pid1").exists()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        os.kill(int((killed / "pid1").read_text()), signal.SIGKILL)
        killed_at = time.monotonic()
        proc.communicate(timeout=30)
        assert proc.returncode != 0
        assert time.monotonic() - killed_at < 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert not (killed / "rank0.npz").exists()       # the run did not finish

    mpirun(2, "train", resumed, epochs, resumed / "ckpt.npz", ckpt)
    uninterrupted = [load(full / f"rank{r}.npz") for r in range(2)]
    after_resume = [load(resumed / f"rank{r}.npz") for r in range(2)]
    for a, b in zip(after_resume, uninterrupted):
        np.testing.assert_array_equal(a["params"], b["params"])
        assert a["history"]["loss"] == b["history"]["loss"]


def test_kernel_cache_survives_launches(tmp_path):
    first, second = tmp_path / "1", tmp_path / "2"
    first.mkdir(), second.mkdir()
    mpirun(2, "cache", first)
    mpirun(2, "cache", second)
    for rank in range(2):
        result = load(second / f"rank{rank}.npz")
        assert result["misses"] == 0 and result["hits"] >= 1


def test_cli_distributed_equals_one_process(tmp_path):
    env = _env(120)
    command = [sys.executable, "-m", "fastnn.cli", "train", "--epochs", "2", "--dtype",
               "float64", "--save", str(tmp_path / "m.npz")]
    single = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr
    proc = subprocess.run([MPIEXEC, "-n", "2", *command, "--distributed"], env=env,
                          capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("test loss") == 1 and proc.stdout.count("epoch 2/2") == 1
    assert proc.stdout.splitlines()[-2] == single.stdout.splitlines()[-2]   # the test line


def test_cli_distributed_error_is_printed_once(tmp_path):
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "fastnn.cli", "train",
                           "--distributed", "--validation-split", "0.9999"],
                          env=_env(120), capture_output=True, text=True, timeout=150)
    assert proc.returncode != 0
    assert proc.stderr.count("fastnn: error:") == 1, proc.stderr


def test_without_distributed_mpi4py_is_never_imported():
    code = ("import sys, numpy as np, fastnn\n"
            "net = fastnn.Network([fastnn.Dense(3, 2)])\n"
            "net.fit(np.ones((4, 3)), np.array([0, 1, 0, 1]), verbose=0)\n"
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=_env(60))


def test_bad_distributed_argument_is_a_clear_error():
    import fastnn

    net = fastnn.Network([fastnn.Dense(3, 2)])
    with pytest.raises(ValueError, match="distributed must be None, 'mpi' or an mpi4py"):
        net.fit(np.ones((4, 3)), np.array([0, 1, 0, 1]), distributed="gloo", verbose=0)
    with pytest.raises(TypeError, match="mpi4py communicator"):
        net.fit(np.ones((4, 3)), np.array([0, 1, 0, 1]), distributed=3, verbose=0)


def test_hostfile_launch_on_loopback(tmp_path):
    """The README's several-host command, with a hostfile naming this machine twice."""
    hosts = tmp_path / "hosts"
    hosts.write_text("localhost:2\n")
    argv = _argv(2, "equal", tmp_path, "momentum", "float64", 203)
    argv[1:1] = ["-f", str(hosts)]
    proc = subprocess.run(argv, env=_env(120), capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr
    ranks = [load(tmp_path / f"rank{r}.npz") for r in range(2)]
    np.testing.assert_array_equal(ranks[0]["params"], ranks[1]["params"])
    assert relative(ranks[0]["params"], load(tmp_path / "single.npz")["params"]) <= 1e-10
