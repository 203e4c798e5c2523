"""``benchmarks/compare.py`` runs for a user: a tiny real run, read back from its outputs.

Only the plumbing is checked (every requested system ran in its own worker,
the tables and the JSON agree); no timing is asserted.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

COMPARE = Path(__file__).resolve().parents[1] / "benchmarks" / "compare.py"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    if not COMPARE.exists():
        pytest.fail(f"{COMPARE} is missing")
    out = tmp_path_factory.mktemp("compare")
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "--configs", "B", "--systems", "fastnn,numpy,gemm",
         "--samples", "300", "--epochs", "1", "--rounds", "1", "--repeats", "1",
         "--retries", "0", "--markdown", str(out / "table.md"), "--json", str(out / "run.json")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, (out / "table.md").read_text(), json.loads((out / "run.json").read_text())


def test_every_system_reports_a_steady_epoch(tiny_run):
    _, _, run = tiny_run
    results = run["results"]["B"]
    assert set(results) == {"fastnn", "numpy", "gemm"}
    for name, r in results.items():
        assert "error" not in r, (name, r)
        assert r["steady_epoch"] > 0
    # fastnn and its numpy reference train the same network on the same data.
    assert results["fastnn"]["accuracy"] == pytest.approx(results["numpy"]["accuracy"],
                                                          abs=0.02)


def test_summary_and_floor_ratios_follow_from_the_times(tiny_run):
    stdout, markdown, run = tiny_run
    r = run["results"]["B"]
    fastnn, numpy_, gemm = (r[k]["steady_epoch"] for k in ("fastnn", "numpy", "gemm"))
    summary = stdout.split("summary: t(fastnn)/t(system), steady epoch")[1]
    row = next(line for line in summary.splitlines() if line.startswith("B "))
    # Peers in the order of --systems.
    assert row.split()[2:4] == [f"{fastnn / numpy_:.2f}", f"{fastnn / gemm:.2f}"]
    floor = stdout.split("floor: t(GEMM bound)/t(system)")[1]
    row = next(line for line in floor.splitlines() if line.startswith("B "))
    assert row.split()[1:] == [f"{gemm:.4f}", f"{gemm / numpy_:.2f}"]
    assert "**floor: t(GEMM bound)/t(system)" in markdown
    assert "| B | " in markdown


def test_sample_weight_and_clip_norm_options_reach_fastnn(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "--configs", "B", "--systems", "fastnn,numpy",
         "--samples", "300", "--epochs", "1", "--rounds", "1", "--repeats", "1",
         "--retries", "0", "--sample-weight", "--clip-norm", "0.5",
         "--json", str(tmp_path / "run.json")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "clip_norm=0.5), sample weights" in proc.stdout
    results = json.loads((tmp_path / "run.json").read_text())["results"]["B"]
    for name in ("fastnn", "numpy"):
        assert results[name]["sample_weight"] is True and results[name]["clip_norm"] == 0.5
    # Both backends trained the same weighted, clipped network.
    assert results["fastnn"]["train_loss"] == pytest.approx(results["numpy"]["train_loss"],
                                                            rel=1e-3)


@pytest.mark.parametrize("argv, message", [
    (["--sample-weight"], "--sample-weight and --clip-norm time fastnn only; drop torch"),
    (["--clip-norm", "0", "--systems", "fastnn"], "--clip-norm must be > 0"),
])
def test_option_errors(argv, message):
    proc = subprocess.run([sys.executable, str(COMPARE), *argv], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr
