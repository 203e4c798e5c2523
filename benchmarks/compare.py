#!/usr/bin/env python
"""fastnn against its CPU peers: PyTorch, JAX, scikit-learn, and the GEMM bound.

Every configuration trains the same network (relu hidden layers, softmax
cross-entropy, float32) on the same synthetic MNIST-shaped data with the same
batch size and optimizer, in every installed system::

    python benchmarks/compare.py                       # all configs, all systems
    python benchmarks/compare.py --samples 2000 --epochs 2 --configs B
    python benchmarks/compare.py --optimizer adam      # config B unless --configs
    python benchmarks/compare.py --systems fastnn --configs B --sample-weight
    python benchmarks/compare.py --systems fastnn --configs B --clip-norm 1.0
    python benchmarks/compare.py --markdown out.md --json out.json

Each (system, configuration) runs in its own process (this file with
``--worker SYSTEM CONFIG``, printing its result as JSON), one after another,
so no two BLAS/OpenMP/XLA thread pools share a process or the cores.

Reported per system: the first epoch (compile, trace or cache load
included; for fastnn the wall time of a first ``fit(epochs=1)`` in a fresh
process, without ``fastnn.warmup()``), the median steady epoch over
``--epochs`` further epochs, test accuracy on 2,000 held-out samples, and
predict time on 10,000 samples. Time ratios use the steady epoch:
``fastnn/system`` below 1 means fastnn is faster; ``system/fastnn`` is its
inverse. The GEMM bound is the time of only the matrix products an epoch
needs, through the BLAS fastnn calls (and, for information, numpy's).

``--sample-weight`` and ``--clip-norm C`` measure what fastnn's sample
weights (uniform in [0.5, 1.5), seeded) and gradient clipping
(``clip_norm=C`` on the optimizer) cost: run with and without them and
compare fastnn's steady epochs. They apply to fastnn, its numpy reference
and nothing else (the GEMM bound stays the bound; the other peers are
refused).

``--threads N`` (default: all cores) goes to fastnn's ``Network(threads=N)``,
``torch.set_num_threads``, a threadpoolctl BLAS limit for scikit-learn and the
GEMM bound; XLA has no thread count, so JAX is left at its default unless
N is 1. The machine may be shared: "others' CPU" is the share of the CPU that
other processes took while a worker ran (high values mean a disturbed
number), and ``--wait-idle SECONDS`` waits for a quiet machine before each
worker.
"""

import argparse
import importlib.metadata
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peers import SYSTEMS, available, run_worker  # noqa: E402
from peers.common import CONFIGS, N_PREDICT, N_TEST, OPTIMIZERS, steps_per_epoch  # noqa: E402

MARKER = "@@compare-result@@ "
VERSIONED = ["fastnn-numba", "numpy", "scipy", "numba", "llvmlite", "threadpoolctl", "torch",
             "jax", "jaxlib", "scikit-learn"]


# ---- command line ------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=None,
                   help="comma-separated subset of A,B,C,D (default: all for sgd, B otherwise)")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help=f"comma-separated subset of {','.join(SYSTEMS)}")
    p.add_argument("--epochs", type=int, default=5, help="steady-state epochs after the first")
    p.add_argument("--samples", type=int, default=8000, help="training samples")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    p.add_argument("--sample-weight", action="store_true",
                   help="fastnn trains with sample weights (uniform in [0.5, 1.5), seeded), "
                        "to measure their cost against a run without")
    p.add_argument("--clip-norm", type=float, default=None, metavar="C",
                   help="fastnn's optimizer clips the gradient's global L2 norm at C "
                        "(clip_norm=C), to measure the cost of clipping")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="BLAS/intra-op threads for every system (default: all cores)")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed repeats for predict and the GEMM bound (median)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3,
                   help="run every (system, config) this many times, round after round, and "
                        "keep the median round (default 3)")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="before each worker, wait up to this long for other processes to use "
                        "under 25%% of the CPU (a shared machine); default 0: don't wait")
    p.add_argument("--retries", type=int, default=2,
                   help="rerun a worker during which other processes took over 10%% of the CPU "
                        "up to this many times (after waiting up to 30 s for a quiet machine), "
                        "keeping the least disturbed result (default 2)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    p.add_argument("--warmup", action="store_true",
                   help="fastnn calls fastnn.warmup() (timed on its own) before its first "
                        "epoch, so the first epoch shows no numba start-up or cache-load cost")
    p.add_argument("--markdown", metavar="FILE", help="also write markdown tables here")
    p.add_argument("--json", metavar="FILE", help="also write every number here")
    p.add_argument("--worker", nargs=2, metavar=("SYSTEM", "CONFIG"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.configs is None:
        args.configs = "A,B,C,D" if args.optimizer == "sgd" else "B"
    args.configs = [c.strip().upper() for c in args.configs.split(",") if c.strip()]
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for name, valid, values in (("config", CONFIGS, args.configs),
                                ("system", SYSTEMS, args.systems)):
        bad = [v for v in values if v not in valid]
        if bad:
            p.error(f"unknown {name} {', '.join(bad)}; valid: {', '.join(valid)}")
    if (args.sample_weight or args.clip_norm is not None) and not args.worker:
        peers = [s for s in args.systems if s in ("torch", "jax", "sklearn")]
        if peers:
            p.error(f"--sample-weight and --clip-norm time fastnn only; drop {', '.join(peers)} "
                    f"(e.g. --systems fastnn)")
        if args.clip_norm is not None and not args.clip_norm > 0:
            p.error(f"--clip-norm must be > 0, got {args.clip_norm}")
    if "fastnn" not in args.systems:
        args.systems.insert(0, "fastnn")          # every ratio is against it
    for name in ("epochs", "samples", "threads", "repeats", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    return args


def worker_argv(args, system, config):
    return [sys.executable, os.path.abspath(__file__), "--worker", system, config,
            "--samples", str(args.samples), "--epochs", str(args.epochs),
            "--optimizer", args.optimizer, "--threads", str(args.threads),
            "--repeats", str(args.repeats), "--seed", str(args.seed), "--rounds", "1",
            *(["--warmup"] if args.warmup else []),
            *(["--sample-weight"] if args.sample_weight else []),
            *(["--clip-norm", repr(args.clip_norm)] if args.clip_norm is not None else [])]


# ---- worker side -------------------------------------------------------------

def worker_main(args):
    from peers.common import make_data

    system, config = args.worker
    data = make_data(args.samples, args.seed)
    result = run_worker(system, CONFIGS[config], data, args)
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


# ---- driver side -------------------------------------------------------------

def _busy_seconds():
    """CPU seconds the whole machine has spent busy, and stolen, since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_idle(max_wait, threshold=0.25):
    """Sample the machine's busy fraction each second until it is under ``threshold``.

    Returns ``(busy_fraction, seconds_waited)``; gives up after ``max_wait``.
    """
    start = time.monotonic()
    while True:
        busy0, steal0 = _busy_seconds()
        time.sleep(1.0)
        busy1, steal1 = _busy_seconds()
        busy = (busy1 - busy0 + steal1 - steal0) / (os.cpu_count() or 1)
        waited = time.monotonic() - start
        if busy < threshold or waited >= max_wait:
            return busy, waited


DISTURBED = 0.10


def run_system(args, system, config):
    """Run a worker, again while others disturbed it; keep the least disturbed result."""
    best, disturbance = None, []
    for attempt in range(1 + args.retries):
        if attempt:
            wait_for_idle(max(args.wait_idle, 30))
        r = run_worker_process(args, system, config)
        disturbance.append(r.get("others_cpu"))
        if best is None or ("error" in best and "error" not in r) or (
                "error" not in r and r["others_cpu"] < best["others_cpu"]):
            best = r
        if "error" in r or r["others_cpu"] <= DISTURBED:
            break
    best.update(attempts=len(disturbance), others_cpu_per_attempt=disturbance)
    return best


def run_worker_process(args, system, config):
    """Run one worker process and return its parsed result (or an ``error``).

    Also measures ``others_cpu``: the fraction of the machine's CPU time that
    other processes (and the hypervisor's steal) took while the worker ran,
    the sign of a measurement disturbed by a shared machine.
    """
    idle = {}
    if args.wait_idle > 0:
        busy, waited = wait_for_idle(args.wait_idle)
        idle = dict(busy_before=busy, waited_for_idle=waited)
    load = os.getloadavg()[0]
    busy0, steal0 = _busy_seconds()
    cpu0 = _children_cpu()
    start = time.perf_counter()
    try:
        proc = subprocess.run(worker_argv(args, system, config), capture_output=True, text=True,
                              timeout=args.timeout, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {args.timeout:.0f} s", load_before=load, **idle)
    wall = time.perf_counter() - start
    busy1, steal1 = _busy_seconds()
    others = max(0.0, (busy1 - busy0) - (_children_cpu() - cpu0)) + (steal1 - steal0)
    noise = dict(load_before=load, others_cpu=others / (wall * (os.cpu_count() or 1)), **idle)
    lines = [l for l in proc.stdout.splitlines() if l.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        return dict(error=f"exit {proc.returncode}: " + " | ".join(tail), process_wall=wall,
                    **noise)
    result = json.loads(lines[-1][len(MARKER):])
    result.update(process_wall=wall, **noise)
    return result


def _blas_owner(path):
    """Which package ships a BLAS library, from its ``<package>.libs`` folder."""
    folder = os.path.basename(os.path.dirname(path))
    owner = folder[:-len(".libs")] if folder.endswith(".libs") else folder
    return {"scipy": "scipy (fastnn's kernels)"}.get(owner, owner)


def median_round(rounds):
    """The round whose steady epoch is the median (the lower one for an even count).

    Predict time is the median of every round's predict time.

    The kept result also lists every round's steady epoch and their spread,
    (max - min) / median: how much a fresh process changes the number.
    """
    ok = sorted((r for r in rounds if "error" not in r), key=lambda r: r["steady_epoch"])
    if not ok:
        return rounds[-1]
    kept = dict(ok[(len(ok) - 1) // 2])
    steady = [r["steady_epoch"] for r in ok]
    kept.update(rounds_steady=[r.get("steady_epoch") for r in rounds],
                spread=(steady[-1] - steady[0]) / kept["steady_epoch"])
    predict = [r["predict_seconds"] for r in ok if "predict_seconds" in r]
    if predict:
        # Predict is timed in the same processes; its own median over the rounds.
        kept.update(predict_rounds=predict, predict_seconds=statistics.median(predict))
    return kept


def machine_info(args):
    info = {"cpu": "unknown", "cores": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    info["versions"] = {}
    for dist in VERSIONED:
        try:
            info["versions"][dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info["versions"][dist] = None
    try:
        import numpy  # noqa: F401
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import threadpool_info

        info["blas"] = [dict(owner=_blas_owner(p.get("filepath", "")),
                             prefix=p.get("prefix"), version=p.get("version"),
                             architecture=p.get("architecture"), threads=p.get("num_threads"),
                             file=os.path.basename(p.get("filepath", "")))
                        for p in threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        info["blas"] = []
    info["load_average"] = os.getloadavg()
    info["threads"] = args.threads
    return info


def header_lines(info, args):
    hp = OPTIMIZERS[args.optimizer]
    hp_text = ", ".join(f"{k}={v}" for k, v in hp.items() if k != "kind")
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    lines = [f"machine: {info['cpu']}, {info['cores']} cores"
             f" ({info.get('usable_cores', '?')} usable), python {info['python']}",
             f"versions: {versions}"]
    for b in info["blas"]:
        lines.append(f"BLAS of {b['owner']}: {b['prefix']} {b['version']} ({b['architecture']}, "
                     f"{b['threads']} threads) {b['file']}")
    lines += [f"run: {args.samples} samples, 1 + {args.epochs} epochs, optimizer "
              f"{args.optimizer} ({hp_text}"
              f"{f', clip_norm={args.clip_norm}' if args.clip_norm is not None else ''})"
              f"{', sample weights' if args.sample_weight else ''}, threads {args.threads}, "
              f"seed {args.seed}, "
              f"predict on {N_PREDICT}, accuracy on {N_TEST} held-out; median of "
              f"{args.rounds} round(s), up to {args.retries} retries of a disturbed worker",
              "load average at start: " + " ".join(f"{x:.2f}" for x in info["load_average"])]
    return lines


# ---- tables ------------------------------------------------------------------

def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def _ratio(a, b):
    return a / b if a and b else None


def config_rows(results, args, config):
    """Rows (system, first, steady, sys/fastnn, fastnn/sys, accuracy, spread, others' CPU)."""
    res = results[config]
    base = res.get("fastnn", {}).get("steady_epoch")
    rows = []
    for name in args.systems:
        r = res.get(name)
        if r is None:
            continue
        label = SYSTEMS[name].label
        if "error" in r:
            rows.append((label, f"error: {r['error'][:200]}"))
            continue
        steady = r.get("steady_epoch")
        rows.append((label, _fmt(r.get("first_epoch"), ".3f"), _fmt(steady, ".4f"),
                     _fmt(_ratio(steady, base), ".2f"), _fmt(_ratio(base, steady), ".2f"),
                     _fmt(r.get("accuracy"), ".4f"), _fmt(r.get("spread"), ".0%"),
                     _fmt(r.get("others_cpu"), ".0%") + (" !" if r.get("others_cpu", 0)
                                                         > DISTURBED else "")))
    return rows


def predict_rows(results, args):
    rows = []
    for config in args.configs:
        res = results[config]
        base = res.get("fastnn", {}).get("predict_seconds")
        for name in args.systems:
            r = res.get(name)
            if r is None or "predict_seconds" not in r:
                continue
            t = r["predict_seconds"]
            rows.append((config, SYSTEMS[name].label, _fmt(t * 1e3, ".2f"),
                         _fmt(_ratio(t, base), ".2f"), _fmt(_ratio(base, t), ".2f")))
    return rows


def _ratio_rows(results, args, base, peers, key):
    """Per config: ``base``'s time under ``key`` and t(base)/t(peer) for each peer."""
    rows = []
    for config in args.configs:
        res = results[config]
        t = res.get(base, {}).get(key)
        rows.append((config, _fmt(t, ".4f"),
                     *(_fmt(_ratio(t, res.get(p, {}).get(key)), ".2f") for p in peers)))
    return rows


def summary_rows(results, args):
    """One row per config: fastnn's steady epoch and t(fastnn)/t(peer) for each peer."""
    peers = [s for s in args.systems if s != "fastnn"]
    return (["config", "fastnn steady (s)", *(f"fastnn/{p}" for p in peers)],
            _ratio_rows(results, args, "fastnn", peers, "steady_epoch"))


def floor_rows(results, args, key="steady_epoch"):
    """t(GEMM bound)/t(peer): the best fastnn/peer any trainer on this BLAS could reach.

    A target ratio below this cell asks for an epoch (``key="steady_epoch"``)
    or a predict (``"predict_seconds"``) faster than its matrix products
    alone. None when the GEMM bound was not measured.
    """
    if "gemm" not in args.systems:
        return None
    peers = [s for s in args.systems if SYSTEMS[s].kind == "train" and s != "fastnn"]
    what = "epoch" if key == "steady_epoch" else "predict"
    return (["config", f"GEMM bound {what} (s)", *(f"bound/{p}" for p in peers)],
            _ratio_rows(results, args, "gemm", peers, key))


FLOOR_TITLE = ("floor: t(GEMM bound)/t(system), the fastnn/system ratio of a trainer with no "
               "work besides its matrix products")
PREDICT_FLOOR_TITLE = (f"predict floor: the same for predict on {N_PREDICT} samples (the "
                       f"forward products alone)")


def text_table(head, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(head, *[r for r in rows
                                                                   if len(r) == len(head)])]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(head, widths))]
    out.append("  ".join("-" * w for w in widths))
    for r in rows:
        if len(r) != len(head):
            out.append(f"{r[0].ljust(widths[0])}  {r[1]}")
        else:
            out.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(out)


def markdown_table(head, rows):
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    for r in rows:
        cells = list(r) if len(r) == len(head) else [r[0], r[1]] + [""] * (len(head) - 2)
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(out)


TRAIN_HEAD_TEXT = ["system", "first epoch (s)", "steady epoch (s)", "system/fastnn",
                   "fastnn/system", "accuracy", "spread", "others' CPU"]
TRAIN_HEAD_MD = ["system", "first epoch (s)", "steady epoch (s)", "fastnn/system", "accuracy"]
PREDICT_HEAD = ["config", "system", f"predict {N_PREDICT} (ms)", "system/fastnn",
                "fastnn/system"]
LEGEND = ("Ratios are of steady-epoch (or predict) times: fastnn/system < 1 means fastnn is "
          "faster; system/fastnn > 1 means the same. GEMM bound rows: the matrix products "
          "alone (forward H·W, Hᵀ·Δ, Δ·Wᵀ), so fastnn/bound is fastnn's overhead over pure BLAS. "
          "A row marked ! (or 'disturbed') ran while other processes took over 10% of the CPU, "
          "even after retries: its time is not trustworthy. Each number is from the median of "
          "--rounds fresh processes; spread = (max - min) / median of their steady epochs.")


def config_title(args, config):
    c = CONFIGS[config]
    return (f"{c.describe()}: {args.samples} samples, "
            f"{steps_per_epoch(args.samples, c.batch_size)} steps/epoch")


def render_text(results, args, info):
    out = header_lines(info, args)
    for config in args.configs:
        out += ["", config_title(args, config),
                text_table(TRAIN_HEAD_TEXT, config_rows(results, args, config))]
        fast = results[config].get("fastnn", {})
        if "import_seconds" in fast:
            warm = (f"warmup() {fast['warmup_seconds']:.3f} s" if fast.get("warmup_seconds")
                    is not None else "no warmup")
            out.append(f"fastnn: import {fast['import_seconds']:.3f} s ({warm}); first "
                       f"fit(epochs=1) wall {fast['first_epoch']:.3f} s, its step loop "
                       f"{fast['first_epoch_loop']:.3f} s; fit(epochs={args.epochs}) wall "
                       f"{fast['fit_wall']:.3f} s, {fast['fit_overhead']:.3f} s of it outside "
                       f"the epochs' step loops")
        for name in ("gemm", "gemm-numpy"):
            g = results[config].get(name, {})
            if "gflops" in g:
                out.append(f"{SYSTEMS[name].label}: {g['gflop_per_epoch']:.2f} GFLOP/epoch "
                           f"at {g['gflops']:.1f} GFLOP/s")
    out += ["", f"predict ({N_PREDICT} samples, median of {args.repeats})",
            text_table(PREDICT_HEAD, predict_rows(results, args))]
    head, rows = summary_rows(results, args)
    out += ["", "summary: t(fastnn)/t(system), steady epoch", text_table(head, rows)]
    floor = floor_rows(results, args)
    if floor is not None:
        out += ["", FLOOR_TITLE, text_table(*floor), "", PREDICT_FLOOR_TITLE,
                text_table(*floor_rows(results, args, "predict_seconds"))]
    out += ["", LEGEND]
    return "\n".join(out)


def render_markdown(results, args, info):
    out = ["<!-- " + line.replace("--", "-") + " -->" for line in header_lines(info, args)]
    for config in args.configs:
        rows = [(r[0] + (" (disturbed)" if r[7].endswith("!") else ""), r[1], r[2], r[4], r[5])
                if len(r) == 8 else r for r in config_rows(results, args, config)]
        out += ["", f"**{config_title(args, config)}**", "", markdown_table(TRAIN_HEAD_MD, rows)]
    out += ["", f"**predict on {N_PREDICT} samples** (median of {args.repeats})", "",
            markdown_table(PREDICT_HEAD, predict_rows(results, args))]
    head, rows = summary_rows(results, args)
    out += ["", "**t(fastnn) / t(system), steady epoch**", "", markdown_table(head, rows)]
    floor = floor_rows(results, args)
    if floor is not None:
        out += ["", f"**{FLOOR_TITLE}**", "", markdown_table(*floor), "",
                f"**{PREDICT_FLOOR_TITLE}**", "",
                markdown_table(*floor_rows(results, args, "predict_seconds"))]
    out += ["", LEGEND, ""]
    return "\n".join(out)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    info = machine_info(args)
    print("\n".join(header_lines(info, args)), flush=True)
    skipped = [s for s in args.systems if not available(s)]
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)}")
    args.systems = [s for s in args.systems if s not in skipped]
    total = time.perf_counter()
    runs = {c: {s: [] for s in args.systems} for c in args.configs}
    # Round-major order: a slow drift of the machine touches every system alike.
    for round_ in range(args.rounds):
        for config in args.configs:
            for system in args.systems:
                print(f"  round {round_ + 1}/{args.rounds}: {system:<10} on {config} ...",
                      end="", flush=True)
                r = run_system(args, system, config)
                runs[config][system].append(r)
                status = r["error"][:300] if "error" in r else f"steady {r['steady_epoch']:.4f} s"
                print(f" {r.get('process_wall', 0):6.1f} s  ({status}; other processes took "
                      f"{r.get('others_cpu', 0):.0%} of the CPU; {r['attempts']} run(s))",
                      flush=True)
    results = {c: {s: median_round(runs[c][s]) for s in args.systems} for c in args.configs}
    elapsed = time.perf_counter() - total
    print()
    print(render_text(results, args, info))
    print(f"\ntotal {elapsed:.0f} s; load average at end: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render_markdown(results, args, info))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=info, args={k: v for k, v in vars(args).items()
                                               if k not in ("worker", "markdown", "json")},
                           results=results, total_seconds=elapsed), f, indent=1)


if __name__ == "__main__":
    main()
