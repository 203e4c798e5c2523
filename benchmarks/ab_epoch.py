#!/usr/bin/env python
"""Steady-state speed of two or more source trees of fastnn, interleaved (an A/B test).

For a kernel change that is meant to compile faster and run no slower::

    python benchmarks/ab_epoch.py --ref main                 # main against this tree
    python benchmarks/ab_epoch.py --ref main --ref HEAD~1 --rounds 7
    python benchmarks/ab_epoch.py --tree /path/to/other/checkout

Each round runs one fresh process per tree (in the same order every round;
the trees' numba caches are warmed first, so no compile is timed). A process
trains config B of ``benchmarks/compare.py`` (784-128-64-10 relu, batch 64
or ``--batch-size``, SGD lr 0.01 or ``--optimizer adam``, float32) on 8,000
random rows: one warm-up epoch, then ``--epochs`` timed epochs, and
``predict`` on 10,000 rows ``--repeats`` times. Its result is the median
epoch and the median predict in CPU seconds of the process (epoch end to
epoch end, through a callback; with one BLAS thread that is the thread's own
time, where on a shared machine the wall clock would also count the time
slices other processes took; wall medians are in the JSON). The report
gives, per tree, the median and spread of those over the rounds and the
ratio of the medians to the first tree (the reference). ``--ref`` trees are
``git archive`` exports of this repository at that revision.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "@@ab-epoch@@ "

WORKER = textwrap.dedent("""
    import json, statistics, sys, time
    import numpy as np
    import fastnn
    samples, epochs, repeats, threads, optimizer = {samples}, {epochs}, {repeats}, {threads}, {optimizer!r}
    batch = {batch}
    rng = np.random.default_rng(0)
    X = rng.random((samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, samples)
    Xp = rng.random((10000, 784), dtype=np.float32)
    net = fastnn.Network([fastnn.Dense(784, 128, "relu"), fastnn.Dense(128, 64, "relu"),
                          fastnn.Dense(64, 10)], loss="cross_entropy", dtype="float32", seed=0,
                         threads=threads)
    opt = fastnn.SGD(lr=0.01) if optimizer == "sgd" else fastnn.Adam(lr=1e-3)
    net.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, verbose=0)
    marks = []
    clock = fastnn.callbacks.LambdaCallback(
        on_train_begin=lambda net: marks.append(time.process_time()),
        on_epoch_end=lambda net, logs: marks.append(time.process_time()))
    history = net.fit(X, y, epochs=epochs, batch_size=batch, optimizer=opt, verbose=0,
                      callbacks=[clock])
    cpu = [b - a for a, b in zip(marks[:-1], marks[1:])]
    net.predict(Xp)
    times, cpu_times = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        net.predict(Xp)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    print({marker!r} + json.dumps(dict(epoch=statistics.median(cpu),
                                       epoch_wall=statistics.median(history.history["seconds"]),
                                       epochs=cpu, predict=statistics.median(cpu_times),
                                       predict_wall=statistics.median(times),
                                       loss=history.history["loss"][-1])))
""")


def export(ref, into):
    """``git archive`` of ``ref`` into the folder ``into``, with the fastnn/kernels link."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    link = into / "fastnn" / "kernels"
    if not link.exists():
        link.symlink_to("../kernels")
    return into


def run_worker(tree, cache, args):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    env["NUMBA_CACHE_DIR"] = str(cache)
    code = WORKER.format(samples=args.samples, epochs=args.epochs, repeats=args.repeats,
                         threads=args.threads, optimizer=args.optimizer,
                         batch=args.batch_size, marker=MARKER)
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: worker failed\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith(MARKER))
    return json.loads(line[len(MARKER):])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", action="append", default=[],
                   help="a git revision to compare (repeatable); exported with git archive")
    p.add_argument("--tree", action="append", default=[],
                   help="another source tree (a checkout's root) to compare (repeatable)")
    p.add_argument("--no-self", action="store_true", help="leave out this tree")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per process")
    p.add_argument("--repeats", type=int, default=5, help="timed predicts per process")
    p.add_argument("--samples", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=64,
                   help="64: config B; 16: A; 256: C")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads (default 1: steadier on a shared machine)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fastnn-ab-") as tmp:
        tmp = Path(tmp)
        trees = [(f"ref {ref}", export(ref, tmp / f"ref{i}")) for i, ref in enumerate(args.ref)]
        trees += [(f"tree {t}", Path(t).resolve()) for t in args.tree]
        if not args.no_self:
            trees.append(("this tree", ROOT))
        if len(trees) < 2:
            p.error("give at least one --ref or --tree to compare against")
        caches = [tmp / f"cache{i}" for i in range(len(trees))]
        results = {name: [] for name, _ in trees}
        for (name, tree), cache in zip(trees, caches):
            run_worker(tree, cache, args)          # fill this tree's numba cache
        for round_ in range(args.rounds):
            for (name, tree), cache in zip(trees, caches):
                r = run_worker(tree, cache, args)
                results[name].append(r)
                print(f"round {round_ + 1}: {name}: epoch {r['epoch'] * 1e3:.1f} ms, "
                      f"predict {r['predict'] * 1e3:.1f} ms", file=sys.stderr, flush=True)

    ref_name = trees[0][0]
    lines = [f"784-128-64-10 epoch (batch {args.batch_size}, {args.samples:,} rows; "
             f"{args.threads} BLAS thread(s), "
             f"{args.optimizer}), CPU ms, median (min-max) of {args.rounds} processes' medians",
             "", "| tree | epoch ms | predict 10k ms | epoch / ref | predict / ref |",
             "|---|---|---|---|---|"]
    medians = {}
    for name, runs in results.items():
        e = [r["epoch"] * 1e3 for r in runs]
        q = [r["predict"] * 1e3 for r in runs]
        medians[name] = (statistics.median(e), statistics.median(q))
        lines.append(f"| {name} | {medians[name][0]:.1f} ({min(e):.1f}-{max(e):.1f}) | "
                     f"{medians[name][1]:.1f} ({min(q):.1f}-{max(q):.1f}) | "
                     f"{medians[name][0] / medians[ref_name][0]:.3f} | "
                     f"{medians[name][1] / medians[ref_name][1]:.3f} |")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(results=results, medians=medians), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
