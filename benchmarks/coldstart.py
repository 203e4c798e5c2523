#!/usr/bin/env python
"""Cold start: fastnn's first run in a fresh environment against a warm one and PyTorch.

Every measurement is the wall time of a fresh Python process, imports
included, started from here::

    python benchmarks/coldstart.py                      # 3 rounds of everything
    python benchmarks/coldstart.py --rounds 5 --json coldstart.json
    python benchmarks/coldstart.py --tasks epoch,torch --samples 2000
    python benchmarks/coldstart.py --ref main     # main's kernels beside this tree's

Tasks (``--tasks``, comma-separated):

* ``warmup32``, ``warmup64``: ``import fastnn; fastnn.warmup((dtype,))``
* ``train``: ``python -m fastnn.cli train`` (bundled digits, defaults)
* ``epoch``: a script training one epoch of 784-128-64-10 relu (softmax
  cross-entropy, SGD lr 0.01, batch 64, float32) on ``--samples`` random rows
* ``torch``: the same epoch in PyTorch (``nn.Sequential``, ``torch.optim.SGD``)

Cold means an empty numba cache: every cold run gets a new
``NUMBA_CACHE_DIR``, so numba neither reads nor writes the in-tree
``kernels/__pycache__``. The run is checked to have compiled (the cache
directory was empty before and holds index files after). Warm runs reuse the
cache directory the cold run of the same task and round just filled, and
are checked to have written nothing to it (no kernel recompiled). Rounds are
interleaved (each round runs every task cold, then warm, then PyTorch), so
a disturbance on a shared machine hits all of them alike; the tables give
the median and the spread (min-max) over the rounds.

``--quick`` runs only ``epoch`` and ``torch`` on 1,000 rows, for a smoke test.
"""

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "@@coldstart@@ "
TASKS = ("warmup32", "warmup64", "train", "epoch", "torch")
FASTNN_TASKS = ("warmup32", "warmup64", "train", "epoch")

# The one-epoch scripts. Both time themselves only for the report's detail
# columns; the measurement is the process's wall time seen from outside.
_REPORT = textwrap.dedent("""
    import json
    print({marker!r} + json.dumps(dict(import_seconds=imported - start,
                                       work_seconds=time.perf_counter() - imported)))
""")

_WARMUP = textwrap.dedent("""
    import time
    start = time.perf_counter()
    import fastnn
    imported = time.perf_counter()
    fastnn.warmup(dtypes=({dtype!r},))
""")

_EPOCH = textwrap.dedent("""
    import time
    start = time.perf_counter()
    import numpy as np
    import fastnn
    imported = time.perf_counter()
    rng = np.random.default_rng(0)
    X = rng.random(({samples}, 784), dtype=np.float32)
    y = rng.integers(0, 10, {samples})
    net = fastnn.Network([fastnn.Dense(784, 128, "relu"), fastnn.Dense(128, 64, "relu"),
                          fastnn.Dense(64, 10)], loss="cross_entropy", dtype="float32", seed=0)
    net.fit(X, y, epochs=1, batch_size=64, optimizer=fastnn.SGD(lr=0.01), verbose=0)
""")

_TORCH = textwrap.dedent("""
    import time
    start = time.perf_counter()
    import numpy as np
    import torch
    from torch import nn
    imported = time.perf_counter()
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.random(({samples}, 784), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, {samples}))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    perm = torch.randperm({samples})
    for start_row in range(0, {samples}, 64):
        idx = perm[start_row:start_row + 64]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(X[idx]), y[idx]).backward()
        optimizer.step()
""")


def task_command(task, samples):
    """The argv of one task's fresh process."""
    if task == "train":
        return [sys.executable, "-m", "fastnn.cli", "train"]
    if task.startswith("warmup"):
        body = _WARMUP.format(dtype="float32" if task == "warmup32" else "float64")
    elif task == "epoch":
        body = _EPOCH.format(samples=samples)
    else:
        body = _TORCH.format(samples=samples)
    return [sys.executable, "-c", body + _REPORT.format(marker=MARKER)]


def cache_files(folder):
    """numba's cache files under ``folder``: {relative path: (size, mtime_ns)}."""
    found = {}
    for path in Path(folder).rglob("*"):
        if path.suffix in (".nbi", ".nbc"):
            stat = path.stat()
            found[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return found


def run_task(task, args, cache_dir=None, tree=ROOT):
    """Run one task on the source tree ``tree`` in a fresh process; return its times.

    ``cache_dir`` is the numba cache of a fastnn task: checked empty before
    a cold run (``mode="cold"``) and unchanged by a warm one.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NUMBA_DISABLE_JIT", None)
    if args.threads:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(args.threads)
    before = None
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
        before = cache_files(cache_dir)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(task_command(task, args.samples), env=env, cwd=args.cwd,
                          capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - start
    after_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after_usage.ru_utime - usage.ru_utime) + (after_usage.ru_stime - usage.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{task} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = dict(wall=wall, cpu=cpu)
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            result.update(json.loads(line[len(MARKER):]))
    compiled = re.search(r"compiled kernels in ([0-9.]+) s", proc.stdout)
    if compiled:
        result["warmup_seconds"] = float(compiled.group(1))
    if cache_dir is not None:
        after = cache_files(cache_dir)
        result["cache_files"] = len(after)
        if not before:
            result["mode"] = "cold"
            if not after:
                raise RuntimeError(f"cold {task} wrote no numba cache: did it compile?")
        else:
            result["mode"] = "warm"
            changed = sorted(k for k in after if before.get(k) != after[k])
            if changed:
                raise RuntimeError(f"warm {task} recompiled: {changed[:5]}")
    return result


def run_rounds(args, tasks, trees, log=print):
    """Every round: each fastnn task cold then warm on every tree, then PyTorch.

    Returns ``{tree label: {task: {mode: [result per round]}}}``; PyTorch's
    runs are listed under every tree.
    """
    runs = {label: {task: {"cold": [], "warm": []} for task in tasks if task != "torch"}
            for label, _ in trees}
    torch_runs = []
    for round_ in range(args.rounds):
        for task in tasks:
            if task == "torch":
                result = run_task(task, args)
                torch_runs.append(result)
                log(f"round {round_ + 1}: torch {result['wall']:.2f} s")
                continue
            for label, tree in trees:
                with tempfile.TemporaryDirectory(prefix="fastnn-coldstart-") as cache:
                    cold = run_task(task, args, cache, tree)
                    warm = run_task(task, args, cache, tree)
                runs[label][task]["cold"].append(cold)
                runs[label][task]["warm"].append(warm)
                log(f"round {round_ + 1}: {label}: {task} cold {cold['wall']:.2f} s, "
                    f"warm {warm['wall']:.2f} s")
    if "torch" in tasks:
        for label in runs:
            runs[label]["torch"] = {"run": torch_runs}
    return runs


# ---- report ------------------------------------------------------------------

LABELS = {
    "warmup32": "`fastnn.warmup((\"float32\",))` process",
    "warmup64": "`fastnn.warmup((\"float64\",))` process",
    "train": "`fastnn train` (digits, defaults)",
    "epoch": "one-epoch script, fastnn",
    "torch": "one-epoch script, PyTorch",
}


def stats(values):
    """Median, min and max of a non-empty list."""
    return dict(median=statistics.median(values), min=min(values), max=max(values))


def summarize(runs):
    """Per task and mode: wall time and detail statistics over the rounds."""
    out = {}
    for task, modes in runs.items():
        out[task] = {}
        for mode, results in modes.items():
            if not results:
                continue
            entry = dict(wall=stats([r["wall"] for r in results]),
                         cpu=stats([r["cpu"] for r in results]))
            for key in ("work_seconds", "import_seconds", "warmup_seconds"):
                if all(key in r for r in results):
                    entry[key] = stats([r[key] for r in results])
            out[task][mode] = entry
    return out


def _cell(s, key="wall"):
    if s is None or key not in s:
        return "—"
    v = s[key]
    return f"{v['median']:.2f} ({v['min']:.2f}–{v['max']:.2f})"


def _cpu(s):
    return "—" if s is None else f"{s['cpu']['median']:.2f}"


def _detail(task, s):
    if s is None:
        return "—"
    if "warmup_seconds" in s:
        return f"compile line {s['warmup_seconds']['median']:.2f}"
    if "work_seconds" in s:
        return (f"import {s['import_seconds']['median']:.2f} + "
                f"{'warmup' if task.startswith('warmup') else 'work'} "
                f"{s['work_seconds']['median']:.2f}")
    return ""


def targets(summary, reference=None, reference_label=None):
    """The issue's targets that this run can check: (description, value, limit, ok).

    ``reference`` is the summary of the tree to beat (``--ref``), for the
    target relative to it.
    """
    rows = []

    def med(task, mode):
        try:
            return summary[task][mode]["wall"]["median"]
        except KeyError:
            return None

    epoch_cold, epoch_warm, torch_ = med("epoch", "cold"), med("epoch", "warm"), med("torch", "run")
    if epoch_cold and torch_:
        rows.append(("cold one-epoch script / PyTorch's", epoch_cold / torch_, 2.0))
    if epoch_warm and torch_:
        rows.append(("warm one-epoch script / PyTorch's", epoch_warm / torch_, 0.5))
    try:
        rows.append(("cold `fastnn.warmup((\"float32\",))` seconds (inside the process)",
                     summary["warmup32"]["cold"]["work_seconds"]["median"], 6.0))
    except KeyError:
        pass
    if med("train", "cold"):
        rows.append(("cold `fastnn train` seconds, end to end", med("train", "cold"), 8.0))
    try:
        ratio = (summary["warmup32"]["cold"]["work_seconds"]["median"]
                 / reference["warmup32"]["cold"]["work_seconds"]["median"])
        rows.append((f"cold `fastnn.warmup((\"float32\",))` / {reference_label}'s", ratio, 1 / 3))
    except (KeyError, TypeError):
        pass
    return [(d, v, limit, v <= limit) for d, v, limit in rows]


def render_markdown(summary, info, reference=None, reference_label=None):
    n = info["rounds"]
    lines = [f"Wall seconds of a fresh process, median (min–max) of {n} round"
             f"{'s' if n != 1 else ''}; cold = empty numba cache; CPU = the process's "
             "user + system seconds (median).", "",
             "| run | cold | warm | cold CPU | warm CPU | cold detail | warm detail |",
             "|---|---|---|---|---|---|---|"]
    for task in TASKS:
        if task not in summary:
            continue
        s = summary[task]
        if task == "torch":
            lines.append(f"| {LABELS[task]} | {_cell(s.get('run'))} | same | "
                         f"{_cpu(s.get('run'))} | | {_detail(task, s.get('run'))} | |")
            continue
        lines.append(f"| {LABELS[task]} | {_cell(s.get('cold'))} | {_cell(s.get('warm'))} | "
                     f"{_cpu(s.get('cold'))} | {_cpu(s.get('warm'))} | "
                     f"{_detail(task, s.get('cold'))} | {_detail(task, s.get('warm'))} |")
    checks = targets(summary, reference, reference_label)
    if checks:
        lines += ["", "| target | this run | limit | met |", "|---|---|---|---|"]
        lines += [f"| {d} | {v:.2f} | {limit:.3g} | {'yes' if ok else 'no'} |"
                  for d, v, limit, ok in checks]
    lines += ["", f"{info['samples']:,} rows in the one-epoch scripts; "
                  f"{info['cpus']} CPUs, {info['machine']}; Python {info['python']}, "
                  + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
                  + f"; load average {info['load_before']:.1f} before, "
                  f"{info['load_after']:.1f} after (other processes share the CPUs when "
                  "it exceeds 0: the wall times then carry their share)."]
    return "\n".join(lines)


def machine_info(args):
    import importlib.metadata

    versions = {}
    for name in ("numba", "llvmlite", "numpy", "torch"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return dict(rounds=args.rounds, samples=args.samples, threads=args.threads,
                cpus=os.cpu_count(), machine=platform.processor() or platform.machine(),
                python=platform.python_version(), versions=versions,
                load_before=os.getloadavg()[0])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tasks", default=",".join(TASKS),
                   help=f"comma-separated subset of {','.join(TASKS)}")
    p.add_argument("--samples", type=int, default=8000, help="rows of the one-epoch scripts")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP/OpenBLAS/MKL threads of every process (default: theirs)")
    p.add_argument("--quick", action="store_true",
                   help="only epoch and torch, on 1,000 rows (a smoke test)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per process")
    p.add_argument("--ref", action="append", default=[],
                   help="also measure this git revision of the repository (repeatable; "
                        "exported with git archive, interleaved with this tree)")
    p.add_argument("--json", metavar="FILE", help="also write every run here")
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.samples = "epoch,torch", 1000
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        p.error(f"unknown tasks {', '.join(unknown)}; valid: {', '.join(TASKS)}")
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    args.task_list = [t for t in TASKS if t in tasks]
    args.cwd = tempfile.gettempdir()   # not the repo: its files must not shadow anything
    return args


def torch_available():
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def main(argv=None):
    args = parse_args(argv)
    tasks = list(args.task_list)
    if "torch" in tasks and not torch_available():
        print("PyTorch is not installed: skipping the torch task", file=sys.stderr)
        tasks.remove("torch")
    info = machine_info(args)
    with tempfile.TemporaryDirectory(prefix="fastnn-coldstart-refs-") as tmp:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from ab_epoch import export

        trees = [("this tree", ROOT)] + [(f"ref {ref}", export(ref, Path(tmp) / f"ref{i}"))
                                         for i, ref in enumerate(args.ref)]
        runs = run_rounds(args, tasks, trees,
                          log=lambda s: print(s, file=sys.stderr, flush=True))
    info["load_after"] = os.getloadavg()[0]
    summaries = {label: summarize(r) for label, r in runs.items()}
    reference_label = trees[1][0] if len(trees) > 1 else None
    reference = summaries.get(reference_label)
    out = {}
    for label, summary in summaries.items():
        if len(trees) > 1:
            print(f"### {label}\n")
        ref = reference if label == "this tree" else None
        print(render_markdown(summary, info, ref, reference_label) + "\n")
        out[label] = dict(summary=summary, runs=runs[label],
                          targets=[dict(target=d, value=v, limit=limit, met=ok)
                                   for d, v, limit, ok in targets(summary, ref,
                                                                  reference_label)])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(info=info, trees=out), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
