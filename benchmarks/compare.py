#!/usr/bin/env python
"""fastnn against its CPU peers: PyTorch, JAX, Keras/TensorFlow, scikit-learn, the GEMM bound.

Every configuration trains the same network (relu hidden layers, softmax
cross-entropy, float32) on the same synthetic MNIST-shaped data with the same
batch size and optimizer, in every installed system::

    python benchmarks/compare.py                       # all configs, all systems
    python benchmarks/compare.py --samples 2000 --epochs 2 --configs B
    python benchmarks/compare.py --optimizer adam      # config B unless --configs
    python benchmarks/compare.py --load 1              # beside one busy process
    python benchmarks/compare.py --systems fastnn --configs B --sample-weight
    python benchmarks/compare.py --systems fastnn --configs B --clip-norm 1.0
    python benchmarks/compare.py --systems fastnn --configs B --clip-value 0.1
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

The machine's peak is a 2048^3 sgemm through the BLAS of fastnn's training
step (SciPy's OpenBLAS via numba) on all cores, measured once a round in the
same run; each system's fraction of peak is the epoch's matrix-product FLOPs
(forward, weight gradients, the input deltas of every layer after the first)
per steady-epoch second over it. Issue 14's targets stand beside the
summary's cells, marked met or missed.

Every round counts: a cell is the median over all ``--rounds`` fresh
processes, with spread = (max - min) / median; no round is retried or
dropped. "others' CPU", the share of the CPU other processes took while a
worker ran, is shown for information.

``--threads N`` pins every system to N threads: fastnn's
``Network(threads=N)``, ``torch.set_num_threads``, TensorFlow's intra/inter-op
pools, a threadpoolctl BLAS limit for scikit-learn and the GEMM bound (XLA
has no thread count, so JAX is left at its default unless N is 1). Without
it fastnn runs with its default, ``Network(threads=None)`` (it measures the
fastest team size itself), and every other system gets all cores.

``--load K`` runs the whole comparison beside K busy processes (``python -c
"while True: pass"``), started before the first worker and killed at the end,
and adds fastnn pinned to one thread ("fastnn-1") under the same load, so
the summary shows fastnn's default / threads=1. The peak is then measured
before the busy processes start (the machine's figure), and again under
load for information.

``--sample-weight``, ``--clip-norm C`` and ``--clip-value V`` measure what
fastnn's sample weights (uniform in [0.5, 1.5), seeded) and gradient
clipping (``clip_norm=C`` / ``clip_value=V`` on the optimizer) cost: run with and without them and
compare fastnn's steady epochs. They apply to fastnn, its numpy reference
and nothing else (the GEMM bound stays the bound; the other peers are
refused).
"""

import argparse
import importlib.metadata
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peers import PEAK, SYSTEMS, available, run_worker  # noqa: E402
from peers.common import (CONFIGS, N_PREDICT, N_TEST, OPTIMIZERS, all_cores,  # noqa: E402
                          epoch_flops, predict_flops, steps_per_epoch)

MARKER = "@@compare-result@@ "
VERSIONED = ["fastnn-numba", "numpy", "scipy", "numba", "llvmlite", "threadpoolctl", "torch",
             "jax", "jaxlib", "tensorflow-cpu", "tensorflow", "keras", "scikit-learn"]
DEFAULT_SYSTEMS = [s for s in SYSTEMS if s != "fastnn-1"]     # fastnn-1 comes with --load
BUSY_COMMAND = [sys.executable, "-c", "while True: pass"]

# Issue 14's targets for one run with plain SGD.
PEAK_TARGETS = {"A": 0.50, "B": 0.65, "C": 0.75, "D": 0.90}        # fastnn's fraction, >=
RATIO_TARGETS = {                                                    # fastnn/system, <=
    "torch": {"A": 0.18, "B": 0.25, "C": 0.50, "D": 0.80},
    "jax": {"A": 0.30, "B": 0.40, "C": 0.45, "D": 0.95},
    "keras": {"A": 0.06, "B": 0.12, "C": 0.18, "D": 0.75},
}
LOADED_THREADS_TARGET = 1.10              # default / threads=1 beside busy processes, <=
QUIET_THREADS_TARGETS = {"C": 1 / 1.35, "D": 1 / 1.35}   # quiet: default >= 1.35x faster
PREDICT_PEAK_TARGET = 0.85                # fastnn's predict of 10,000 rows, fraction of peak


# ---- command line ------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=None,
                   help="comma-separated subset of A,B,C,D (default: all for sgd, B otherwise)")
    p.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                   help=f"comma-separated subset of {','.join(SYSTEMS)} (fastnn-1: fastnn "
                        f"with threads=1; added by --load)")
    p.add_argument("--epochs", type=int, default=5, help="steady-state epochs after the first")
    p.add_argument("--samples", type=int, default=8000, help="training samples")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    p.add_argument("--sample-weight", action="store_true",
                   help="fastnn trains with sample weights (uniform in [0.5, 1.5), seeded), "
                        "to measure their cost against a run without")
    p.add_argument("--clip-norm", type=float, default=None, metavar="C",
                   help="fastnn's optimizer clips the gradient's global L2 norm at C "
                        "(clip_norm=C), to measure the cost of clipping")
    p.add_argument("--clip-value", type=float, default=None, metavar="V",
                   help="fastnn's optimizer clamps each gradient entry to [-V, V] "
                        "(clip_value=V), to measure the cost of clipping")
    p.add_argument("--threads", type=int, default=None,
                   help="pin every system to this many threads (fastnn: Network(threads=N)); "
                        "default: fastnn chooses its own (threads=None), the others get all "
                        "cores")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed repeats for predict, the GEMM bound and the peak (median)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3,
                   help="run every (system, config) this many times, round after round; "
                        "every round counts: median and spread over all of them (default 3)")
    p.add_argument("--load", type=int, default=0, metavar="K",
                   help="run the whole comparison beside K busy processes "
                        "(python -c 'while True: pass'), and fastnn with threads=1 as well")
    p.add_argument("--peak-size", type=int, default=2048, metavar="N",
                   help="the peak is an N x N x N sgemm (default 2048)")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="before each worker, wait up to this long for other processes (not "
                        "--load's) to use under 25%% of the CPU; default 0: don't wait")
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
    if args.worker is None:
        for name, valid, values in (("config", CONFIGS, args.configs),
                                    ("system", SYSTEMS, args.systems)):
            bad = [v for v in values if v not in valid]
            if bad:
                p.error(f"unknown {name} {', '.join(bad)}; valid: {', '.join(valid)}")
    if (args.sample_weight or args.clip_norm is not None or args.clip_value is not None) \
            and not args.worker:
        peers = [s for s in args.systems if s in ("torch", "jax", "sklearn")]
        if peers:
            p.error(f"--sample-weight, --clip-norm and --clip-value time fastnn only; drop "
                    f"{', '.join(peers)} (e.g. --systems fastnn)")
        if args.clip_norm is not None and args.clip_value is not None:
            p.error("give --clip-norm or --clip-value, not both (fastnn's optimizers take one "
                    "clipping rule)")
        for flag, value in (("--clip-norm", args.clip_norm), ("--clip-value", args.clip_value)):
            if value is not None and not value > 0:
                p.error(f"{flag} must be > 0, got {value}")
    if "fastnn" not in args.systems:
        args.systems.insert(0, "fastnn")          # every ratio is against it
    if args.load and "fastnn-1" not in args.systems:
        args.systems.insert(args.systems.index("fastnn") + 1, "fastnn-1")
    for name in ("epochs", "samples", "repeats", "rounds", "peak_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    if args.load < 0:
        p.error("--load must be >= 0")
    return args


def worker_argv(args, system, config):
    return [sys.executable, os.path.abspath(__file__), "--worker", system, config,
            "--samples", str(args.samples), "--epochs", str(args.epochs),
            "--optimizer", args.optimizer, "--repeats", str(args.repeats),
            "--seed", str(args.seed), "--rounds", "1", "--peak-size", str(args.peak_size),
            *(["--threads", str(args.threads)] if args.threads is not None else []),
            *(["--warmup"] if args.warmup else []),
            *(["--sample-weight"] if args.sample_weight else []),
            *(["--clip-norm", repr(args.clip_norm)] if args.clip_norm is not None else []),
            *(["--clip-value", repr(args.clip_value)] if args.clip_value is not None else [])]


# ---- worker side -------------------------------------------------------------

def worker_main(args):
    from peers.common import make_data

    system, config = args.worker
    if system == PEAK.name:
        result = run_worker(system, None, None, args)
    else:
        result = run_worker(system, CONFIGS[config], make_data(args.samples, args.seed), args)
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


def _process_cpu(pid):
    """CPU seconds (user + system) process ``pid`` has used, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _die_with_parent():
    """In a child before exec: the kernel kills it if this driver dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class BusyLoad:
    """``k`` busy processes (``python -c "while True: pass"``) beside the comparison.

    A context manager: started on entry, killed and reaped on exit, also
    when the run fails or is interrupted; each child also gets the kernel's
    parent-death signal, so even a killed driver leaves no busy process.
    """

    def __init__(self, k):
        self.k = k
        self.procs = []

    def __enter__(self):
        try:
            for _ in range(self.k):
                self.procs.append(subprocess.Popen(
                    BUSY_COMMAND, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def cpu_seconds(self):
        """CPU seconds the busy processes have used so far."""
        return sum(_process_cpu(pid) for pid in self.pids)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()


NO_LOAD = BusyLoad(0)


def wait_for_idle(max_wait, load=NO_LOAD, threshold=0.25):
    """Sample the busy fraction of the CPU (less ``load``'s) each second until under ``threshold``.

    Returns ``(busy_fraction, seconds_waited)``; gives up after ``max_wait``.
    """
    start = time.monotonic()
    while True:
        busy0, steal0 = _busy_seconds()
        load0 = load.cpu_seconds()
        time.sleep(1.0)
        busy1, steal1 = _busy_seconds()
        busy = (busy1 - busy0 + steal1 - steal0 - (load.cpu_seconds() - load0)) / all_cores()
        waited = time.monotonic() - start
        if busy < threshold or waited >= max_wait:
            return busy, waited


def run_worker_process(args, system, config, load=NO_LOAD):
    """Run one worker process and return its parsed result (or an ``error``).

    Also measures, as fractions of the machine's CPU time while the worker
    ran: ``others_cpu``, what other processes (and the hypervisor's steal)
    took, and ``load_cpu``, what ``--load``'s busy processes took.
    """
    idle = {}
    if args.wait_idle > 0:
        busy, waited = wait_for_idle(args.wait_idle, load)
        idle = dict(busy_before=busy, waited_for_idle=waited)
    load_average = os.getloadavg()[0]
    busy0, steal0 = _busy_seconds()
    cpu0, load0 = _children_cpu(), load.cpu_seconds()
    start = time.perf_counter()
    try:
        proc = subprocess.run(worker_argv(args, system, config), capture_output=True, text=True,
                              timeout=args.timeout, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {args.timeout:.0f} s", load_before=load_average,
                    **idle)
    wall = time.perf_counter() - start
    busy1, steal1 = _busy_seconds()
    loaded = load.cpu_seconds() - load0
    others = max(0.0, (busy1 - busy0) - (_children_cpu() - cpu0) - loaded) + (steal1 - steal0)
    capacity = wall * all_cores()
    noise = dict(load_before=load_average, others_cpu=others / capacity, **idle)
    if load.k:
        noise["load_cpu"] = loaded / capacity
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
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


# Medians over the rounds for these keys; spreads for the timed ones.
MEDIAN_KEYS = ("steady_epoch", "first_epoch", "predict_seconds", "accuracy", "gflops",
               "first_epoch_loop", "import_seconds", "warmup_seconds", "fit_wall",
               "fit_overhead", "process_wall", "others_cpu", "load_cpu")
SPREAD_KEYS = {"steady_epoch": "spread", "predict_seconds": "predict_spread",
               "gflops": "gflops_spread"}


def combine_rounds(rounds):
    """One cell from all its rounds: the median of each number, and the spread.

    Every round that produced a number counts (none is retried or dropped as
    disturbed). The other keys are the first good round's. ``rounds`` keeps
    every round's full result; ``errors`` counts rounds without a number.
    The spread of a timing is (max - min) / median over the rounds.
    """
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return dict(rounds[-1], rounds=rounds, errors=len(rounds))
    cell = dict(ok[0])
    for key in MEDIAN_KEYS:
        values = [r[key] for r in ok if r.get(key) is not None]
        if not values:
            continue
        cell[key] = statistics.median(values)
        if key in SPREAD_KEYS:
            cell[SPREAD_KEYS[key]] = (max(values) - min(values)) / cell[key]
            cell[f"{key}_rounds"] = [r.get(key) for r in rounds]
    cell.update(rounds=rounds, errors=len(rounds) - len(ok))
    return cell


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


def threads_text(args):
    if args.threads is not None:
        return f"threads {args.threads} (every system pinned)"
    return f"threads: fastnn its default (threads=None, measured), the others {all_cores()}"


def load_text(args):
    if not args.load:
        return "load: none (no busy processes started)"
    return (f"load: {args.load} busy process(es) (python -c \"while True: pass\") beside "
            f"every worker, started before the first and killed at the end; fastnn also ran "
            f"with threads=1 under it")


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
              f"{f', clip_norm={args.clip_norm}' if args.clip_norm is not None else ''}"
              f"{f', clip_value={args.clip_value}' if args.clip_value is not None else ''})"
              f"{', sample weights' if args.sample_weight else ''}, {threads_text(args)}, "
              f"seed {args.seed}, "
              f"predict on {N_PREDICT}, accuracy on {N_TEST} held-out; every cell the median "
              f"of all {args.rounds} round(s), none retried or dropped",
              load_text(args),
              "load average at start: " + " ".join(f"{x:.2f}" for x in info["load_average"])]
    return lines


# ---- the summary's numbers -----------------------------------------------------

def _ratio(a, b):
    return a / b if a and b else None


def fraction_of_peak(flops, seconds, peak_gflops):
    """``flops`` done in ``seconds`` as a fraction of ``peak_gflops`` (None if one is missing)."""
    return flops / seconds / (peak_gflops * 1e9) if seconds and peak_gflops else None


def _target(value, bound, kind):
    """A target: its bound, ``kind`` "max" (value <= bound) or "min", and whether it is met."""
    met = None if value is None else bool(value <= bound if kind == "max" else value >= bound)
    return dict(bound=bound, kind=kind, met=met)


def config_summary(results, peak_gflops, args, config):
    """Everything the summary shows for one config, computed from the combined results.

    Returns
    -------
    dict
        ``fastnn_steady`` and ``fastnn_spread``; ``fraction_of_peak`` and
        ``predict_fraction_of_peak`` per system (matrix-product FLOPs of a
        steady epoch, or of predict on N_PREDICT rows, per second over the
        peak); ``ratios`` t(fastnn)/t(system) per other system (for
        ``fastnn-1`` that is default / threads=1); ``targets`` by column
        (``fraction_of_peak``, ``predict_fraction_of_peak`` and system
        names), each from :func:`_target`.
    """
    res = results[config]
    sizes = CONFIGS[config].sizes
    train_flops, pred_flops = epoch_flops(sizes, args.samples), predict_flops(sizes)
    fast = res.get("fastnn", {})
    base = fast.get("steady_epoch")
    fraction, predict_fraction, ratios = {}, {}, {}
    for name in args.systems:
        r = res.get(name, {})
        fraction[name] = fraction_of_peak(train_flops, r.get("steady_epoch"), peak_gflops)
        predict_fraction[name] = fraction_of_peak(pred_flops, r.get("predict_seconds"),
                                                  peak_gflops)
        if name != "fastnn":
            ratios[name] = _ratio(base, r.get("steady_epoch"))
    targets = {}
    if args.optimizer == "sgd":
        targets["fraction_of_peak"] = _target(fraction["fastnn"], PEAK_TARGETS[config], "min")
        for peer, bounds in RATIO_TARGETS.items():
            if peer in ratios:
                targets[peer] = _target(ratios[peer], bounds[config], "max")
        if "fastnn-1" in ratios and args.threads is None:
            bound = LOADED_THREADS_TARGET if args.load else QUIET_THREADS_TARGETS.get(config)
            if bound is not None:
                targets["fastnn-1"] = _target(ratios["fastnn-1"], bound, "max")
    targets["predict_fraction_of_peak"] = _target(predict_fraction["fastnn"],
                                                  PREDICT_PEAK_TARGET, "min")
    return dict(epoch_gflop=train_flops / 1e9, predict_gflop=pred_flops / 1e9,
                peak_gflops=peak_gflops, fastnn_steady=base, fastnn_spread=fast.get("spread"),
                fraction_of_peak=fraction, predict_fraction_of_peak=predict_fraction,
                ratios=ratios, targets=targets)


# ---- tables ------------------------------------------------------------------

def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def target_cell(target):
    """``≤0.18 met``, ``≥0.50 missed``, ``≤0.18 -`` (not measured); '' for no target."""
    if target is None:
        return ""
    verdict = {True: "met", False: "missed", None: "-"}[target["met"]]
    return f"{'≤' if target['kind'] == 'max' else '≥'}{target['bound']:.2f} {verdict}"


def _rounds_cell(r):
    n = len(r.get("rounds", [])) or 1
    return f"{n - r['errors']} of {n}" if r.get("errors") else str(n)


def config_rows(results, summary, args, config, markdown=False):
    """Rows of one config's table: the text table's columns, or the markdown table's."""
    res, fraction = results[config], summary[config]["fraction_of_peak"]
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
        first, steady_cell = _fmt(r.get("first_epoch"), ".3f"), _fmt(steady, ".4f")
        spread, peak = _fmt(r.get("spread"), ".0%"), _fmt(fraction.get(name), ".2f")
        accuracy, fastnn_over = _fmt(r.get("accuracy"), ".4f"), _fmt(_ratio(base, steady), ".2f")
        if markdown:
            rows.append((label, first, steady_cell, spread, peak, fastnn_over, accuracy))
            continue
        row = (label, first, steady_cell, spread, peak, _fmt(_ratio(steady, base), ".2f"),
               fastnn_over, accuracy, _fmt(r.get("others_cpu"), ".0%"))
        if args.load:
            row += (_fmt(r.get("load_cpu"), ".0%"),)
        rows.append(row + (_rounds_cell(r),))
    return rows


def predict_rows(results, summary, args):
    rows = []
    for config in args.configs:
        res = results[config]
        base = res.get("fastnn", {}).get("predict_seconds")
        fraction = summary[config]["predict_fraction_of_peak"]
        for name in args.systems:
            r = res.get(name)
            if r is None or "predict_seconds" not in r:
                continue
            t = r["predict_seconds"]
            target = (summary[config]["targets"].get("predict_fraction_of_peak")
                      if name == "fastnn" else None)
            rows.append((config, SYSTEMS[name].label, _fmt(t * 1e3, ".2f"),
                         _fmt(r.get("predict_spread"), ".0%"), _fmt(fraction.get(name), ".2f"),
                         target_cell(target), _fmt(_ratio(t, base), ".2f"),
                         _fmt(_ratio(base, t), ".2f")))
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


def summary_rows(summary, args):
    """Per config: fastnn's steady epoch, spread, fraction of peak, t(fastnn)/t(peer), targets.

    Every cell is a formatted value of ``summary`` (:func:`config_summary`);
    a target column stands right after the column it is for.
    """
    peers = [s for s in args.systems if s not in ("fastnn", "fastnn-1")]
    if "fastnn-1" in args.systems:
        peers.append("fastnn-1")
    pinned = "default" if args.threads is None else f"threads={args.threads}"
    columns = [("fraction_of_peak", "of peak")] + [
        (p, f"{pinned}/threads=1" if p == "fastnn-1" else f"fastnn/{p}") for p in peers]
    with_target = {key for key, _ in columns
                   if any(key in summary[c]["targets"] for c in args.configs)}
    head = ["config", "fastnn steady (s)", "spread"]
    for key, name in columns:
        head += [name] + (["target"] if key in with_target else [])
    rows = []
    for config in args.configs:
        s = summary[config]
        row = [config, _fmt(s["fastnn_steady"], ".4f"), _fmt(s["fastnn_spread"], ".0%")]
        for key, _ in columns:
            value = s["fraction_of_peak"]["fastnn"] if key == "fraction_of_peak" else \
                s["ratios"].get(key)
            row.append(_fmt(value, ".2f"))
            if key in with_target:
                row.append(target_cell(s["targets"].get(key)))
        rows.append(tuple(row))
    return head, rows


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
SUMMARY_TITLE = ("summary: t(fastnn)/t(system), steady epoch; fastnn's fraction of peak; "
                 "issue 14's targets")


def text_table(head, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(head, *[r for r in rows
                                                                   if len(r) == len(head)])]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(head, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    for r in rows:
        if len(r) != len(head):
            out.append(f"{r[0].ljust(widths[0])}  {r[1]}")
        else:
            out.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(out)


def markdown_table(head, rows):
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    for r in rows:
        cells = list(r) if len(r) == len(head) else [r[0], r[1]] + [""] * (len(head) - 2)
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(out)


def train_head(args, markdown=False):
    if markdown:
        return ["system", "first epoch (s)", "steady epoch (s)", "spread", "of peak",
                "fastnn/system", "accuracy"]
    return (["system", "first epoch (s)", "steady epoch (s)", "spread", "of peak",
             "system/fastnn", "fastnn/system", "accuracy", "others' CPU"]
            + (["busy processes' CPU"] if args.load else []) + ["rounds"])


PREDICT_HEAD = ["config", "system", f"predict {N_PREDICT} (ms)", "spread", "of peak", "target",
                "system/fastnn", "fastnn/system"]
LEGEND = ("Ratios are of steady-epoch (or predict) times: fastnn/system < 1 means fastnn is "
          "faster; system/fastnn > 1 means the same. GEMM bound rows: the matrix products "
          "alone (forward H·W, Hᵀ·Δ, Δ·Wᵀ), so fastnn/bound is fastnn's overhead over pure BLAS. "
          "'of peak': the epoch's (or predict's) matrix-product FLOPs per second over the "
          "machine's peak. Each time is the median of all --rounds fresh processes, none "
          "retried or dropped; spread = (max - min) / median over them. 'others' CPU' (the "
          "share of the CPU other processes took while a worker ran, --load's busy processes "
          "not counted) is information, not a filter. Targets are issue 14's: fraction of "
          "peak ≥, fastnn/system ≤, default/threads=1 ≤ 1.10 beside busy processes (quiet: "
          "≤ 1/1.35 at C and D); epoch targets are for plain SGD.")


def config_title(args, config):
    c = CONFIGS[config]
    return (f"{c.describe()}: {args.samples} samples, "
            f"{steps_per_epoch(args.samples, c.batch_size)} steps/epoch, "
            f"{epoch_flops(c.sizes, args.samples) / 1e9:.2f} GFLOP of matrix products/epoch")


def peak_lines(peak, loaded_peak, args):
    """The peak's lines: the figure the fractions use, and (with --load) the one under load."""
    def line(p, what):
        if "error" in p:
            return f"{what}: error: {p['error'][:300]}"
        n = len(p["rounds"])
        return (f"{what}: {p['gflops']:.1f} GFLOP/s ({p['size']}³ sgemm through fastnn's gemm, "
                f"SciPy's OpenBLAS via numba_xxgemm, {p['threads']} threads; median of {n} "
                f"process(es), each the median of its repeats; spread {p['gflops_spread']:.0%})")

    lines = [line(peak, "machine peak" + (" (measured before the busy processes started)"
                                          if args.load else ""))]
    if loaded_peak is not None:
        lines.append(line(loaded_peak, "peak beside the busy processes (information only)"))
    return lines


def render_text(results, summary, peak, loaded_peak, args, info):
    out = header_lines(info, args) + peak_lines(peak, loaded_peak, args)
    for config in args.configs:
        out += ["", config_title(args, config),
                text_table(train_head(args), config_rows(results, summary, args, config))]
        notes = []
        fast = results[config].get("fastnn", {})
        if "import_seconds" in fast:
            warm = (f"warmup() {fast['warmup_seconds']:.3f} s" if fast.get("warmup_seconds")
                    is not None else "no warmup")
            notes.append(f"fastnn: import {fast['import_seconds']:.3f} s ({warm}); first "
                         f"fit(epochs=1) wall {fast['first_epoch']:.3f} s, its step loop "
                         f"{fast['first_epoch_loop']:.3f} s; fit(epochs={args.epochs}) wall "
                         f"{fast['fit_wall']:.3f} s, {fast['fit_overhead']:.3f} s of it outside "
                         f"the epochs' step loops (medians)")
        per_step = fast.get("seconds_per_step_by_threads")
        if per_step:
            notes.append("fastnn's thread choice, seconds per step by team size (first round): "
                         + ", ".join(f"{k}: {v * 1e3:.3f} ms"
                                     for k, v in sorted(per_step.items())))
        for name in ("gemm", "gemm-numpy"):
            g = results[config].get(name, {})
            if "gflops" in g:
                notes.append(f"{SYSTEMS[name].label}: {g['gflop_per_epoch']:.2f} GFLOP/epoch "
                             f"at {g['gflops']:.1f} GFLOP/s")
        if notes:
            out += ["", *notes]
    out += ["", f"predict ({N_PREDICT} samples, median of {args.repeats} per process)",
            text_table(PREDICT_HEAD, predict_rows(results, summary, args))]
    out += ["", SUMMARY_TITLE, text_table(*summary_rows(summary, args))]
    floor = floor_rows(results, args)
    if floor is not None:
        out += ["", FLOOR_TITLE, text_table(*floor), "", PREDICT_FLOOR_TITLE,
                text_table(*floor_rows(results, args, "predict_seconds"))]
    out += ["", LEGEND]
    return "\n".join(out)


def render_markdown(results, summary, peak, loaded_peak, args, info):
    out = ["<!-- " + line.replace("--", "-") + " -->" for line in header_lines(info, args)]
    out += ["", *(f"{line}  " for line in [load_text(args)] + peak_lines(peak, loaded_peak, args))]
    for config in args.configs:
        out += ["", f"**{config_title(args, config)}**", "",
                markdown_table(train_head(args, markdown=True),
                               config_rows(results, summary, args, config, markdown=True))]
    out += ["", f"**predict on {N_PREDICT} samples** (median of {args.repeats} per process)", "",
            markdown_table(PREDICT_HEAD, predict_rows(results, summary, args))]
    out += ["", f"**{SUMMARY_TITLE}**", "", markdown_table(*summary_rows(summary, args))]
    floor = floor_rows(results, args)
    if floor is not None:
        out += ["", f"**{FLOOR_TITLE}**", "", markdown_table(*floor), "",
                f"**{PREDICT_FLOOR_TITLE}**", "",
                markdown_table(*floor_rows(results, args, "predict_seconds"))]
    out += ["", LEGEND, ""]
    return "\n".join(out)


# ---- the run -------------------------------------------------------------------

def run_and_report(args, system, config, what, load=NO_LOAD):
    """Run one worker process, print a progress line, return its result."""
    print(f"  {what}: {system:<10} on {config} ...", end="", flush=True)
    r = run_worker_process(args, system, config, load)
    if "error" in r:
        status = r["error"][:300]
    elif system == PEAK.name:
        status = f"{r['gflops']:.1f} GFLOP/s"
    else:
        status = f"steady {r['steady_epoch']:.4f} s"
    busy = f", the busy processes {r['load_cpu']:.0%}" if "load_cpu" in r else ""
    print(f" {r.get('process_wall', 0):6.1f} s  ({status}; other processes took "
          f"{r.get('others_cpu', 0):.0%} of the CPU{busy})", flush=True)
    return r


def _terminate(signum, frame):
    raise SystemExit(128 + signum)       # unwinds through BusyLoad, which stops its processes


def measure(args, info):
    """Every round: the peak, then every (config, system); beside ``--load``'s processes.

    Returns ``(runs, peak_runs, loaded_peak_runs)``: lists of round results,
    ``runs[config][system]``; the peak's rounds (before the load when there
    is one) and, with ``--load``, the peak's rounds under it.
    """
    runs = {c: {s: [] for s in args.systems} for c in args.configs}
    peak_runs, loaded_peak_runs = [], []
    if args.load:
        for round_ in range(args.rounds):
            peak_runs.append(run_and_report(args, PEAK.name, "-",
                                            f"before the load {round_ + 1}/{args.rounds}"))
    with BusyLoad(args.load) as load:
        if args.load:
            info["load_pids"] = load.pids
            print(f"load: started {args.load} busy process(es), pids "
                  f"{' '.join(map(str, load.pids))}", flush=True)
        # Round-major order: a slow drift of the machine touches every system alike.
        for round_ in range(args.rounds):
            what = f"round {round_ + 1}/{args.rounds}"
            (loaded_peak_runs if args.load else peak_runs).append(
                run_and_report(args, PEAK.name, "-", what, load))
            for config in args.configs:
                for system in args.systems:
                    runs[config][system].append(run_and_report(args, system, config, what, load))
    if args.load:
        print(f"load: stopped the {args.load} busy process(es)", flush=True)
    return runs, peak_runs, loaded_peak_runs


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
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        runs, peak_runs, loaded_peak_runs = measure(args, info)
    except KeyboardInterrupt:
        sys.exit("interrupted" + (f"; the {args.load} busy process(es) were stopped"
                                  if args.load else ""))
    finally:
        signal.signal(signal.SIGTERM, previous)
    results = {c: {s: combine_rounds(runs[c][s]) for s in args.systems} for c in args.configs}
    peak = combine_rounds(peak_runs)
    loaded_peak = combine_rounds(loaded_peak_runs) if loaded_peak_runs else None
    summary = {c: config_summary(results, peak.get("gflops"), args, c) for c in args.configs}
    elapsed = time.perf_counter() - total
    print()
    print(render_text(results, summary, peak, loaded_peak, args, info))
    print(f"\ntotal {elapsed:.0f} s; load average at end: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render_markdown(results, summary, peak, loaded_peak, args, info))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=info, args={k: v for k, v in vars(args).items()
                                               if k not in ("worker", "markdown", "json")},
                           load=dict(processes=args.load, command=BUSY_COMMAND,
                                     pids=info.get("load_pids", [])),
                           peak=peak, peak_under_load=loaded_peak, results=results,
                           summary=summary, total_seconds=elapsed), f, indent=1)


if __name__ == "__main__":
    main()
