"""``benchmarks/compare.py`` runs for a user: a tiny real run, read back from its outputs.

Only the plumbing is checked (every requested system ran in its own worker,
every cell is the median of all rounds, the summary's columns and issue 14's
targets follow from the JSON's numbers, ``--load``'s busy processes are
recorded and gone afterwards, also after Ctrl-C); no timing is asserted.
The Keras/TensorFlow, PyTorch, JAX and scikit-learn peers are left out:
importing TensorFlow and compiling its step alone takes about 20 s, and the
run has to stay under a minute on 2 shared cores.
"""

import json
import os
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

COMPARE = Path(__file__).resolve().parents[1] / "benchmarks" / "compare.py"
SAMPLES = 300
SIZES_B = (784, 128, 64, 10)
# Issue 14's targets for config B.
LABELS = {"fastnn": "fastnn (numba)", "fastnn-1": "fastnn (numba), threads=1",
          "gemm": "GEMM bound (fastnn gemm)"}
TARGETS_B = {"fraction_of_peak": (0.65, "min"), "torch": (0.25, "max"),
             "jax": (0.40, "max"), "keras": (0.12, "max"), "fastnn-1": (1.10, "max")}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    if not COMPARE.exists():
        pytest.fail(f"{COMPARE} is missing")
    out = tmp_path_factory.mktemp("compare")
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "--configs", "B", "--systems", "fastnn,gemm",
         "--samples", str(SAMPLES), "--epochs", "1", "--rounds", "2", "--repeats", "1",
         "--peak-size", "256", "--load", "1",
         "--markdown", str(out / "table.md"), "--json", str(out / "run.json")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, (out / "table.md").read_text(), json.loads((out / "run.json").read_text())


def _table(text, title):
    """The rows of the (text or markdown) table after ``title``, each as {column: cell}."""
    lines = text.split(title, 1)[1].lstrip("\n").split("\n\n", 1)[0].splitlines()
    if lines[0].startswith("|"):                        # markdown
        rows = [[c.strip() for c in line.strip("|").split("|")]
                for line in lines if line.startswith("|")]
        head, body = rows[0], rows[2:]
    else:                                               # text: columns under the dashes
        spans = [m.span() for m in re.finditer(r"-+", lines[1])]
        spans[-1] = (spans[-1][0], None)
        rows = [[line[a:b].strip() for a, b in spans] for line in lines]
        head, body = rows[0], rows[2:]
    # Repeated "target" headers belong to the column before them.
    names = [f"{head[i - 1]} target" if h == "target" else h for i, h in enumerate(head)]
    return [dict(zip(names, row)) for row in body]


def _row(rows, column, value):
    matches = [row for row in rows if row.get(column) == value]
    assert len(matches) == 1, (column, value, rows)
    return matches[0]


def test_every_system_reports_a_steady_epoch(tiny_run):
    _, _, run = tiny_run
    results = run["results"]["B"]
    # --load adds fastnn pinned to one thread.
    assert set(results) == {"fastnn", "fastnn-1", "gemm"}
    for name, r in results.items():
        assert "error" not in r, (name, r)
        assert r["steady_epoch"] > 0
    # Pinned to one thread or not, fastnn trains the same network.
    assert results["fastnn"]["accuracy"] == pytest.approx(results["fastnn-1"]["accuracy"],
                                                          abs=0.02)
    assert results["fastnn-1"]["threads"] == 1
    assert results["fastnn"]["threads"] == "default (measured)"


def test_every_round_counts(tiny_run):
    _, _, run = tiny_run
    for name, r in run["results"]["B"].items():
        steady = [x["steady_epoch"] for x in r["rounds"]]
        assert len(steady) == 2 and r["errors"] == 0, name
        assert r["steady_epoch"] == pytest.approx(statistics.median(steady)), name
        assert r["spread"] == pytest.approx((max(steady) - min(steady)) / r["steady_epoch"])
        predict = [x["predict_seconds"] for x in r["rounds"]]
        assert r["predict_seconds"] == pytest.approx(statistics.median(predict)), name
    peak = run["peak"]
    gflops = [x["gflops"] for x in peak["rounds"]]
    assert len(gflops) == 2 and peak["gflops"] == pytest.approx(statistics.median(gflops))
    for x in peak["rounds"]:
        assert x["size"] == 256 and x["threads"] == run["machine"]["usable_cores"]
        assert x["gflops"] == pytest.approx(2 * 256 ** 3 / x["seconds"] / 1e9)


def test_summary_columns_follow_from_the_json(tiny_run):
    stdout, markdown, run = tiny_run
    r, s = run["results"]["B"], run["summary"]["B"]
    peak = run["peak"]["gflops"] * 1e9
    n, m = SAMPLES, SIZES_B
    products = sum(a * b for a, b in zip(m[:-1], m[1:]))
    flops = 2 * n * products * 2 + sum(2 * n * a * b for a, b in zip(m[1:-1], m[2:]))
    assert s["epoch_gflop"] == pytest.approx(flops / 1e9)
    for name in r:
        assert s["fraction_of_peak"][name] == pytest.approx(
            flops / r[name]["steady_epoch"] / peak)
        assert s["predict_fraction_of_peak"][name] == pytest.approx(
            2 * 10000 * products / r[name]["predict_seconds"] / peak)
    fastnn = r["fastnn"]["steady_epoch"]
    for name in ("fastnn-1", "gemm"):
        assert s["ratios"][name] == pytest.approx(fastnn / r[name]["steady_epoch"])
    values = dict(s["ratios"], fraction_of_peak=s["fraction_of_peak"]["fastnn"])
    assert set(s["targets"]) == {"fraction_of_peak", "fastnn-1", "predict_fraction_of_peak"}
    for key, (bound, kind) in TARGETS_B.items():
        if key in s["targets"]:
            met = values[key] <= bound if kind == "max" else values[key] >= bound
            assert s["targets"][key] == dict(bound=bound, kind=kind, met=met), key

    def verdict(key):
        t = s["targets"][key]
        return f"{'≤' if t['kind'] == 'max' else '≥'}{t['bound']:.2f} " \
               f"{'met' if t['met'] else 'missed'}"

    title = "summary: t(fastnn)/t(system), steady epoch; fastnn's fraction of peak; " \
            "issue 14's targets"
    for table in (_table(stdout, title), _table(markdown, f"**{title}**")):
        row = _row(table, "config", "B")
        assert row["fastnn steady (s)"] == f"{fastnn:.4f}"
        assert row["spread"] == f"{r['fastnn']['spread']:.0%}"
        assert row["of peak"] == f"{s['fraction_of_peak']['fastnn']:.2f}"
        assert row["of peak target"] == verdict("fraction_of_peak")
        assert row["fastnn/gemm"] == f"{s['ratios']['gemm']:.2f}"
        assert row["default/threads=1"] == f"{s['ratios']['fastnn-1']:.2f}"
        assert row["default/threads=1 target"] == verdict("fastnn-1")
        assert list(row)[-1] == "default/threads=1 target"    # the threads=1 column comes last

    config = _table(stdout, f"{flops / 1e9:.2f} GFLOP of matrix products/epoch")
    predict = _table(stdout, "predict (10000 samples, median of 1 per process)")
    for name, label in LABELS.items():
        row = _row(config, "system", label)
        assert row["steady epoch (s)"] == f"{r[name]['steady_epoch']:.4f}"
        assert row["spread"] == f"{r[name]['spread']:.0%}"
        assert row["of peak"] == f"{s['fraction_of_peak'][name]:.2f}"
        assert row["rounds"] == "2"
        row = _row(predict, "system", label)
        assert row["of peak"] == f"{s['predict_fraction_of_peak'][name]:.2f}"
        assert row["of peak target"] == (verdict("predict_fraction_of_peak") if name == "fastnn"
                                         else "")


def test_floor_ratios_follow_from_the_times(tiny_run):
    stdout, markdown, run = tiny_run
    r = run["results"]["B"]
    gemm = r["gemm"]["steady_epoch"]
    floor = stdout.split("floor: t(GEMM bound)/t(system)")[1]
    row = next(line for line in floor.splitlines() if line.startswith("B "))
    assert row.split()[1:] == [f"{gemm:.4f}", f"{gemm / r['fastnn-1']['steady_epoch']:.2f}"]
    assert "**floor: t(GEMM bound)/t(system)" in markdown


def test_load_is_recorded_and_stopped(tiny_run):
    stdout, markdown, run = tiny_run
    load = run["load"]
    assert load["processes"] == 1 and load["command"][1:] == ["-c", "while True: pass"]
    assert len(load["pids"]) == 1 and not _alive(load["pids"][0])
    assert 'load: 1 busy process(es) (python -c "while True: pass")' in markdown
    assert f"started 1 busy process(es), pids {load['pids'][0]}" in stdout
    # The peak the fractions use was measured before the load; the one under it is shown too.
    assert run["peak_under_load"]["gflops"] > 0
    assert "machine peak (measured before the busy processes started)" in markdown
    for r in run["results"]["B"].values():
        assert all(0 <= x["load_cpu"] <= 1 for x in r["rounds"])


def test_interrupt_stops_the_busy_processes():
    proc = subprocess.Popen(
        [sys.executable, str(COMPARE), "--configs", "B", "--systems", "fastnn",
         "--samples", str(SAMPLES), "--epochs", "1", "--rounds", "1", "--repeats", "1",
         "--peak-size", "64", "--load", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("load: started"):
                pids = [int(p) for p in line.split("pids", 1)[1].split()]
                break
        else:
            pytest.fail("compare.py never started its busy processes")
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "interrupted" in err
    assert not any(_alive(p) for p in pids)


@pytest.mark.parametrize("flag, key, value", [("--clip-norm", "clip_norm", 0.5),
                                             ("--clip-value", "clip_value", 0.05)])
def test_sample_weight_and_clip_options_reach_fastnn(tmp_path, flag, key, value):
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "--configs", "B", "--systems", "fastnn,numpy",
         "--samples", "300", "--epochs", "1", "--rounds", "1", "--repeats", "1",
         "--peak-size", "64", "--sample-weight", flag, str(value),
         "--json", str(tmp_path / "run.json")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{key}={value}), sample weights" in proc.stdout
    results = json.loads((tmp_path / "run.json").read_text())["results"]["B"]
    other = ({"clip_norm", "clip_value"} - {key}).pop()
    for name in ("fastnn", "numpy"):
        assert results[name]["sample_weight"] is True and results[name][key] == value
        assert results[name][other] is None
    # Both backends trained the same weighted, clipped network.
    assert results["fastnn"]["train_loss"] == pytest.approx(results["numpy"]["train_loss"],
                                                            rel=1e-3)


@pytest.mark.parametrize("argv, message", [
    (["--sample-weight"], "--sample-weight, --clip-norm and --clip-value time fastnn only; "
                          "drop torch"),
    (["--clip-value", "1"], "time fastnn only; drop torch"),
    (["--clip-norm", "0", "--systems", "fastnn"], "--clip-norm must be > 0"),
    (["--clip-value", "-1", "--systems", "fastnn"], "--clip-value must be > 0"),
    (["--clip-value", "1", "--clip-norm", "1", "--systems", "fastnn"],
     "give --clip-norm or --clip-value, not both"),
])
def test_option_errors(argv, message):
    proc = subprocess.run([sys.executable, str(COMPARE), *argv], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr
