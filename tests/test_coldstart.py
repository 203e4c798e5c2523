"""``benchmarks/coldstart.py`` for real on its smallest setting, read back from its outputs.

One round of ``--quick`` (the one-epoch script on 1,000 rows, cold and warm,
and PyTorch's if installed): about 15 s on two cores. Only the plumbing is
checked (a cold run really compiled, a warm one loaded, the table and the
targets follow from the JSON); no timing is asserted.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

COLDSTART = Path(__file__).resolve().parents[1] / "benchmarks" / "coldstart.py"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("coldstart") / "run.json"
    proc = subprocess.run([sys.executable, str(COLDSTART), "--quick", "--rounds", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, json.loads(out.read_text())


def test_cold_run_compiled_and_warm_run_loaded(quick_run):
    _, run = quick_run
    epoch = run["trees"]["this tree"]["runs"]["epoch"]
    cold, warm = epoch["cold"][0], epoch["warm"][0]
    assert cold["mode"] == "cold" and warm["mode"] == "warm"
    # The cold process wrote numba's cache; the warm one found all of it.
    assert cold["cache_files"] > 0
    assert warm["cache_files"] == cold["cache_files"]
    for r in (cold, warm):
        assert r["wall"] > r["work_seconds"] > 0
        assert r["import_seconds"] > 0


def test_table_and_targets_follow_from_the_runs(quick_run):
    stdout, run = quick_run
    tree = run["trees"]["this tree"]
    epoch = tree["summary"]["epoch"]
    cold = epoch["cold"]["wall"]["median"]
    warm = epoch["warm"]["wall"]["median"]
    row = next(line for line in stdout.splitlines()
               if line.startswith("| one-epoch script, fastnn |"))
    assert row.split("|")[2].strip().startswith(f"{cold:.2f}")
    assert row.split("|")[3].strip().startswith(f"{warm:.2f}")
    if "torch" not in tree["summary"]:
        pytest.skip("PyTorch is not installed: no ratio targets")
    torch_ = tree["summary"]["torch"]["run"]["wall"]["median"]
    targets = {t["target"]: t for t in tree["targets"]}
    cold_ratio = targets["cold one-epoch script / PyTorch's"]
    assert cold_ratio["value"] == pytest.approx(cold / torch_)
    assert cold_ratio["met"] == (cold / torch_ <= 2.0)
    assert f"| cold one-epoch script / PyTorch's | {cold / torch_:.2f} |" in stdout


PARALLEL = """
import json, sys
import fastnn
from fastnn.kernels import forward, step
w = sys.modules["fastnn.warmup"]          # the module (fastnn.warmup is the function)
cold = w._cache_is_cold()
print(json.dumps({"cold": cold, "seconds": fastnn.warmup(("float32",), optimizers=("sgd",),
                                                        processes=2 if cold else None)}))
stats = {f.__name__: (sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
         for f in (step.train_steps, forward.predict_raw)}
print(json.dumps(stats))
"""


def test_cold_warmup_shares_the_compiling_with_a_child_that_fills_the_same_cache(tmp_path):
    """With an empty cache, warmup's child compiles the predict side into the cache: this
    process then loads predict_raw (a cache hit) and compiles only the training step
    (of plain SGD: two jobs).
    (Two processes asked for: the default is one per core, and a one-core machine has one.)
    With the cache warm, the default runs no child and compiles nothing."""
    import os

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(COLDSTART.parents[1]),
                                                      env.get("PYTHONPATH", "")]))
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", PARALLEL], env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        first, stats = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
        runs.append((first, stats))
    (cold, cold_stats), (warm, warm_stats) = runs
    assert cold["cold"] and not warm["cold"]
    assert cold_stats["train_steps"][1] > 0                 # compiled here ...
    assert cold_stats["predict_raw"] == [1, 0]              # ... predict_raw by the child
    assert warm_stats["train_steps"][1] == 0 and warm_stats["predict_raw"][1] == 0


def test_warmup_plan_shares_the_jobs_by_cost():
    import sys as _sys

    import fastnn  # noqa: F401
    w = _sys.modules["fastnn.warmup"]
    parts = ["train:cross_entropy:sgd", "predict"]
    jobs = [(d, p) for d in ("float32", "float64") for p in parts]
    shares = w._plan(jobs, 2)
    assert sorted(j for share in shares for j in share) == sorted(jobs)
    assert [sum(w._COST[w._kind(p)] for _, p in share) for share in shares] == [3, 3]
    assert w._plan(jobs[:2], 2) == [[("float32", "train:cross_entropy:sgd")],
                                    [("float32", "predict")]]
    assert w._plan(jobs, 1) == [[("float32", "train:cross_entropy:sgd"), ("float32", "predict"),
                                 ("float64", "train:cross_entropy:sgd"), ("float64", "predict")]]
    # one dtype on two processes: the costliest step leads one, predict leads the other,
    # whose training steps then load the kernels they share with the first from the cache
    generic = [("float32", "generic"), ("float32", "train:mse:adam"), ("float32", "predict")]
    assert w._plan(generic, 2) == [[("float32", "generic")],
                                   [("float32", "predict"), ("float32", "train:mse:adam")]]
    one = [("float32", "train:cross_entropy:sgd"), ("float32", "train:cross_entropy:adam"),
           ("float32", "predict")]
    assert w._plan(one, 2) == [[("float32", "train:cross_entropy:sgd")],
                               [("float32", "predict"), ("float32", "train:cross_entropy:adam")]]
    # two dtypes on two processes: one dtype each
    both = [(d, p) for d in ("float32", "float64") for _, p in one]
    assert sorted(w._plan(both, 2)) == [[j for j in both if j[0] == d] for d in
                                        ("float32", "float64")]
