#!/usr/bin/env python
"""Where numba's compile time goes: every compilation of a cold run, timed.

Runs a workload in a fresh process with an empty numba cache and records
numba's compile events (``numba.core.event``): one ``numba:compile`` per
dispatcher and signature (fastnn's kernels and the numba helpers their
typing compiles, such as ``str`` or ``raise_with_shape_context``), with the
``numba:run_pass`` and ``numba:llvm_lock`` events inside them::

    python benchmarks/compile_events.py                        # warmup(("float32",))
    python benchmarks/compile_events.py --workload epoch       # the one-epoch script
    python benchmarks/compile_events.py --runs 3 --top 40 --json events.json
    python benchmarks/compile_events.py --ref main --runs 3   # main against this tree

Times are CPU seconds of the compiling thread, and exclusive ("self"): a slice of wall time belongs to the innermost
compilation running, so nested compiles are not counted twice and the self
column sums to the compile time. Self time is split into phases: ``typing``
(the type-inference passes, without the compiles they trigger), ``inline``
(numba-IR inlining: ``inline="always"`` functions and overloads), ``lower``
(numba IR to LLVM IR), ``opt`` (LLVM's function and module optimization
passes of the compiled function's module, which holds every kernel it calls:
numba links the callees' modules in and optimizes the whole again),
``codegen`` (machine code for that module), ``llvm`` (the rest of the time
holding the LLVM lock: parsing, linking, verifying), ``other`` (the
remaining passes and the dispatcher). ``total`` is inclusive. The ``by kernel`` table
charges every compilation to the fastnn kernel whose compilation caused it
(the nearest enclosing fastnn kernel), so a helper shows up under the kernel
that pulled it in.

``--workload`` choices: ``warmup`` (``fastnn.warmup(dtypes)``), ``epoch``
(one SGD epoch of 784-128-64-10 at batch 64 on 8,000 random rows, the
benchmark's one-epoch script), ``predict`` (a 784-128-64-10 network's
``predict`` only).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

# Exclusive times use the compiling thread's CPU time: on a shared machine the
# wall clock would charge other processes' time slices to whatever was
# compiling, and the process's CPU time the spinning of idle BLAS threads.
_clock = time.thread_time

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("typing", "inline", "lower", "opt", "codegen", "llvm", "other")
MARKER = "@@compile-events@@ "


# ---- recording (inside the measured process) --------------------------------

def _phase(pass_name):
    if "type_inference" in pass_name:
        return "typing"
    if pass_name.startswith("inline_"):
        return "inline"
    if pass_name == "native_lowering":
        return "lower"
    return "other"


class CompileRecorder:
    """A numba event listener that times every compilation exclusively.

    After the recording, ``records`` holds one dict per compilation:
    ``name`` (module.qualname), ``module``, ``signature``, ``total``
    (inclusive seconds), ``self`` and one key per phase (exclusive seconds),
    ``parent`` (index of the enclosing compilation or None) and ``depth``.
    """

    def __init__(self):
        self.records = []
        self.passes = defaultdict(float)   # exclusive seconds by compiler pass
        self._stack = []           # frames: [kind, record index or pass phase, start]
        self._last = None

    # numba.core.event.Listener interface, without importing numba here
    def notify(self, event):
        now = _clock()
        if self._last is not None:
            self._charge(now - self._last)
        self._last = now
        kind = event.kind
        if event.is_start:
            if kind == "numba:compile":
                self._start_compile(event.data, now)
            elif kind == "numba:run_pass":
                name = event.data["name"].split(" [")[0]
                self._stack.append(["pass", _phase(name), now, name])
            else:
                self._stack.append(["llvm", None, now])
        else:
            tag = {"numba:compile": "compile", "numba:run_pass": "pass"}.get(kind, "llvm")
            for i in range(len(self._stack) - 1, -1, -1):
                if self._stack[i][0] == tag:
                    frame = self._stack.pop(i)
                    if tag == "compile":
                        self.records[frame[1]]["total"] = now - frame[2]
                    break

    def _start_compile(self, data, now):
        dispatcher = data["dispatcher"]
        func = getattr(dispatcher, "py_func", None)
        module = getattr(func, "__module__", "?") or "?"
        qualname = getattr(func, "__qualname__", repr(dispatcher))
        parent = self._current_compile()
        self.records.append(dict(
            name=f"{module}.{qualname}", module=module,
            signature="(" + ", ".join(str(a) for a in data["args"]) + ")",
            total=0.0, self=0.0, parent=parent,
            depth=0 if parent is None else self.records[parent]["depth"] + 1,
            **{p: 0.0 for p in PHASES}))
        self._stack.append(["compile", len(self.records) - 1, now])

    def _current_compile(self):
        for frame in reversed(self._stack):
            if frame[0] == "compile":
                return frame[1]
        return None

    def enter(self, phase):
        """Start a section of LLVM work (``opt``, ``codegen``) in the current compilation."""
        self.notify_section(phase, True)

    def leave(self, phase):
        self.notify_section(phase, False)

    def notify_section(self, phase, start):
        now = _clock()
        if self._last is not None:
            self._charge(now - self._last)
        self._last = now
        if start:
            self._stack.append(["section", phase, now])
        else:
            for i in range(len(self._stack) - 1, -1, -1):
                if self._stack[i][0] == "section" and self._stack[i][1] == phase:
                    del self._stack[i]
                    break

    def _charge(self, seconds):
        # The innermost compilation owns the slice; its phase is the innermost
        # LLVM section, else "llvm" under the LLVM lock, else the pass's phase.
        phase = None
        rank = 0
        pass_name = None
        for frame in reversed(self._stack):
            if frame[0] == "compile":
                record = self.records[frame[1]]
                record["self"] += seconds
                record[phase or "other"] += seconds
                self.passes[pass_name or "(dispatcher, outside the passes)"] += seconds
                return
            if frame[0] == "pass" and pass_name is None:
                pass_name = frame[3]
            if frame[0] == "section" and rank < 3:
                phase, rank = frame[1], 3
            elif frame[0] == "llvm" and rank < 2:
                phase, rank = "llvm", 2
            elif frame[0] == "pass" and rank < 1:
                phase, rank = frame[1], 1

    def on_start(self, event):
        self.notify(event)

    def on_end(self, event):
        self.notify(event)


def record(workload):
    """Run ``workload()`` under a :class:`CompileRecorder`; return (records, CPU s, wall s)."""
    from contextlib import ExitStack

    from numba.core import event

    class _Listener(event.Listener):
        def __init__(self, recorder):
            self.recorder = recorder

        def on_start(self, ev):
            self.recorder.notify(ev)

        def on_end(self, ev):
            self.recorder.notify(ev)

    recorder = CompileRecorder()
    listener = _Listener(recorder)
    start = _clock()
    wall_start = time.perf_counter()
    with ExitStack() as stack:
        for kind in ("numba:compile", "numba:run_pass", "numba:llvm_lock"):
            stack.enter_context(event.install_listener(kind, listener))
        stack.enter_context(_llvm_sections(recorder))
        workload()
    record.passes = dict(recorder.passes)
    return recorder.records, _clock() - start, time.perf_counter() - wall_start


@contextmanager
def _llvm_sections(recorder):
    """Mark numba's LLVM optimization and machine-code steps (private methods, numba 0.5x-0.6x)."""
    from numba.core import codegen

    patched = []
    for cls, method, phase in ((codegen.CPUCodeLibrary, "_optimize_functions", "opt"),
                               (codegen.CPUCodeLibrary, "_optimize_final_module", "opt"),
                               (codegen.JITCodeLibrary, "_finalize_specific", "codegen")):
        original = cls.__dict__.get(method)
        if original is None:
            continue

        def wrapper(*a, _original=original, _phase=phase, **k):
            recorder.enter(_phase)
            try:
                return _original(*a, **k)
            finally:
                recorder.leave(_phase)

        setattr(cls, method, wrapper)
        patched.append((cls, method, original))
    try:
        yield
    finally:
        for cls, method, original in patched:
            setattr(cls, method, original)


def fastnn_dispatchers():
    """Every numba dispatcher defined in fastnn's kernel modules, by name."""
    import inspect

    from numba.core.registry import CPUDispatcher

    from fastnn import kernels
    found = {}
    for info in os.scandir(os.path.dirname(kernels.__file__)):
        if not info.name.endswith(".py") or info.name.startswith("__"):
            continue
        module = __import__(f"fastnn.kernels.{info.name[:-3]}", fromlist=["_"])
        for name, obj in inspect.getmembers(module):
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = obj
    return found


def cache_stats():
    """Cache hits and misses of fastnn's kernels so far in this process."""
    hits = misses = 0
    for dispatcher in fastnn_dispatchers().values():
        hits += sum(dispatcher.stats.cache_hits.values())
        misses += sum(dispatcher.stats.cache_misses.values())
    return dict(cache_hits=hits, cache_misses=misses)


def epoch_workload(samples=8000, dtype="float32", optimizer="sgd"):
    """One epoch of 784-128-64-10 relu, batch 64, softmax cross-entropy: the benchmark script."""
    import numpy as np

    import fastnn
    rng = np.random.default_rng(0)
    X = rng.random((samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, samples)
    net = fastnn.Network([fastnn.Dense(784, 128, "relu"), fastnn.Dense(128, 64, "relu"),
                          fastnn.Dense(64, 10)], loss="cross_entropy", dtype=dtype, seed=0)
    opt = fastnn.SGD(lr=0.01) if optimizer == "sgd" else fastnn.Adam(lr=1e-3)
    net.fit(X, y, epochs=1, batch_size=64, optimizer=opt, verbose=0)
    return net


def worker(args):
    import fastnn  # imported before recording: import time is not compile time

    dtypes = tuple(args.dtypes.split(","))
    if args.workload == "warmup":
        import inspect

        # Every compile in this process, where it is timed (a parallel warmup would
        # compile part of it in children and load that here as cache hits).
        serial = {"processes": 1} if "processes" in inspect.signature(fastnn.warmup).parameters \
            else {}

        def workload():
            fastnn.warmup(dtypes=dtypes, **serial)
    elif args.workload == "epoch":
        def workload():
            epoch_workload(dtype=dtypes[0])
    else:
        import numpy as np

        def workload():
            net = fastnn.Network([fastnn.Dense(784, 128, "relu"), fastnn.Dense(128, 64, "relu"),
                                  fastnn.Dense(64, 10)], loss="cross_entropy", dtype=dtypes[0])
            net.predict(np.zeros((5, 784), dtypes[0]))
    records, cpu, wall = record(workload)
    print(MARKER + json.dumps(dict(records=records, cpu=cpu, wall=wall, passes=record.passes,
                                   **cache_stats())))


def run_cold(args, tree=ROOT):
    """Run the worker on the source tree ``tree`` in a fresh process, empty numba cache."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    # Everything compiled in the profiled process: no helper process for a cold step.
    env["FASTNN_COMPILE_HELPER"] = "0"
    with tempfile.TemporaryDirectory(prefix="fastnn-cold-") as tmp:
        env["NUMBA_CACHE_DIR"] = tmp
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                               "--workload", args.workload, "--dtypes", args.dtypes],
                              env=env, capture_output=True, text=True, timeout=args.timeout,
                              cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith(MARKER))
    return json.loads(line[len(MARKER):])


# ---- tables ------------------------------------------------------------------

def is_kernel(module):
    return module.startswith("fastnn.kernels") or module.startswith("kernels.")


def by_function(records):
    """Per function: compilations (signatures), inclusive and exclusive seconds by phase."""
    rows = defaultdict(lambda: dict(n=0, total=0.0, self=0.0, **{p: 0.0 for p in PHASES}))
    for r in records:
        row = rows[r["name"]]
        row["n"] += 1
        row["total"] += r["total"]
        row["self"] += r["self"]
        for p in PHASES:
            row[p] += r[p]
        row["kernel"] = is_kernel(r["module"])
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["self"]))


def by_kernel(records):
    """Exclusive seconds charged to the nearest enclosing fastnn kernel (own, helpers)."""
    rows = defaultdict(lambda: dict(own=0.0, helpers=0.0, helper_names=defaultdict(float)))
    for r in records:
        owner = r
        while owner is not None and not is_kernel(owner["module"]):
            owner = records[owner["parent"]] if owner["parent"] is not None else None
        key = owner["name"] if owner is not None else "(outside fastnn)"
        if owner is r:
            rows[key]["own"] += r["self"]
        else:
            rows[key]["helpers"] += r["self"]
            rows[key]["helper_names"][r["name"].rsplit(".", 1)[-1]] += r["self"]
    return dict(sorted(rows.items(), key=lambda kv: -(kv[1]["own"] + kv[1]["helpers"])))


def short(name):
    for prefix in ("fastnn.kernels.", "numba.", "kernels."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _median_rows(tables):
    """Field-wise medians over runs of {name: row} tables (a missing row counts as zeros)."""
    names = {name for table in tables for name in table}
    merged = {}
    for name in names:
        rows = [table.get(name) for table in tables]
        present = next(r for r in rows if r is not None)
        merged[name] = {key: (statistics.median(r[key] if r is not None else 0 for r in rows)
                              if isinstance(value, (int, float)) and not isinstance(value, bool)
                              else value)
                        for key, value in present.items()}
    return merged


def function_table(results, top):
    head = "| function | sigs | self s | total s | " + " | ".join(PHASES) + " |"
    lines = [head, "|" + "---|" * (4 + len(PHASES))]
    rows = _median_rows([by_function(r["records"]) for r in results])
    rows = sorted(rows.items(), key=lambda kv: -kv[1]["self"])
    for name, row in rows[:top]:
        label = f"**{short(name)}**" if row["kernel"] else short(name)
        lines.append(f"| {label} | {row['n']:g} | {row['self']:.2f} | {row['total']:.2f} | "
                     + " | ".join(f"{row[p]:.2f}" for p in PHASES) + " |")
    rest = [row for _, row in rows[top:]]
    if rest:
        lines.append(f"| ({len(rest)} more) | {sum(r['n'] for r in rest):g} | "
                     f"{sum(r['self'] for r in rest):.2f} | | "
                     + " | ".join(f"{sum(r[p] for r in rest):.2f}" for p in PHASES) + " |")
    return "\n".join(lines)


def totals(result):
    """One run's headline numbers: compile seconds, by origin and by phase."""
    records = result["records"]
    kernel = [r for r in records if is_kernel(r["module"])]
    helpers = [r for r in records if not is_kernel(r["module"])]
    out = dict(workload_cpu=result["cpu"], workload_wall=result["wall"],
               compile=sum(r["self"] for r in records), compilations=len(records),
               kernel_compilations=len(kernel), kernel=sum(r["self"] for r in kernel),
               helper_compilations=len(helpers), helpers=sum(r["self"] for r in helpers))
    out.update({p: sum(r[p] for r in records) for p in PHASES})
    return out


def _spread(values, spec=".2f"):
    values = sorted(values)
    median = statistics.median(values)
    if len(values) == 1:
        return format(median, spec)
    return f"{median:{spec}} ({values[0]:{spec}}-{values[-1]:{spec}})"


def summary_lines(results):
    t = [totals(r) for r in results]

    def col(key, spec=".2f"):
        return _spread([x[key] for x in t], spec)

    runs = f"median (min-max) of {len(results)} cold runs" if len(results) > 1 else "one cold run"
    return [
        f"{runs}: workload {col('workload_cpu')} CPU s, {col('workload_wall')} s wall; "
        f"compiling {col('compile')} CPU s in {col('compilations', 'g')} compilations: "
        f"{col('kernel_compilations', 'g')} of fastnn kernels {col('kernel')} s, "
        f"{col('helper_compilations', 'g')} of numba helpers {col('helpers')} s",
        "phases: " + ", ".join(f"{p} {col(p)}" for p in PHASES),
        "fastnn kernel cache: " + ", ".join(f"{r['cache_hits']} hits/{r['cache_misses']} misses"
                                            for r in results),
    ]


def kernel_table(results):
    lines = ["| kernel | own s | helpers s | largest helpers |", "|---|---|---|---|"]
    tables = []
    for r in results:
        table = {}
        for name, row in by_kernel(r["records"]).items():
            table[name] = dict(own=row["own"], helpers=row["helpers"],
                               **{"h:" + k: v for k, v in row["helper_names"].items()})
        tables.append(table)
    rows = _median_rows(tables)
    for name, row in sorted(rows.items(), key=lambda kv: -(kv[1]["own"] + kv[1]["helpers"])):
        top = sorted(((k[2:], v) for k, v in row.items() if k.startswith("h:")),
                     key=lambda kv: -kv[1])[:4]
        helpers = ", ".join(f"{n} {v:.2f}" for n, v in top if v >= 0.01)
        lines.append(f"| {short(name)} | {row['own']:.2f} | {row['helpers']:.2f} | {helpers} |")
    return "\n".join(lines)


def pass_table(results, top=15):
    """Exclusive seconds by numba compiler pass (medians over runs), largest first."""
    rows = _median_rows([{k: dict(s=v) for k, v in r["passes"].items()} for r in results])
    lines = ["| compiler pass | self s |", "|---|---|"]
    for name, row in sorted(rows.items(), key=lambda kv: -kv[1]["s"])[:top]:
        lines.append(f"| {name} | {row['s']:.2f} |")
    return "\n".join(lines)


def render(results, top):
    """The summary, the per-function, per-kernel and per-pass tables (medians over runs)."""
    return "\n".join(summary_lines(results) + [
        "", function_table(results, top), "",
        "by kernel (self seconds charged to the fastnn kernel that caused them)", "",
        kernel_table(results), "",
        "by compiler pass (LLVM work included in the pass that runs it: native_lowering)", "",
        pass_table(results)])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=("warmup", "epoch", "predict"), default="warmup")
    p.add_argument("--dtypes", default="float32", help="comma-separated (warmup); first one "
                                                       "for the other workloads")
    p.add_argument("--top", type=int, default=30, help="functions listed (by self time)")
    p.add_argument("--runs", type=int, default=1,
                   help="cold processes, one after another; tables show medians")
    p.add_argument("--ref", action="append", default=[],
                   help="also profile this git revision (repeatable; runs interleave) and "
                        "compare the totals")
    p.add_argument("--tree", action="append", default=[],
                   help="also profile this source tree (a checkout's root; repeatable)")
    p.add_argument("--json", metavar="FILE", help="also write every compilation record here")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="fastnn-events-") as tmp:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from ab_epoch import export

        trees = [(f"ref {ref}", export(ref, Path(tmp) / f"ref{i}"))
                 for i, ref in enumerate(args.ref)]
        trees += [(f"tree {t}", Path(t).resolve()) for t in args.tree]
        trees.append(("this tree", ROOT))
        results = {name: [] for name, _ in trees}
        for _ in range(args.runs):
            for name, tree in trees:
                result = run_cold(args, tree)
                if result["cache_hits"]:
                    raise RuntimeError(f"{name} not cold: {result['cache_hits']} cache hits")
                results[name].append(result)
    for name, runs in results.items():
        if len(results) > 1:
            print(f"## {name}\n")
        print(render(runs, args.top) + "\n")
    if len(results) > 1:
        print(comparison_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({name: dict(runs=runs, totals=[totals(r) for r in runs])
                       for name, runs in results.items()}, f, indent=1)
    return 0


def comparison_table(results):
    """Median totals per tree, side by side."""
    keys = ["workload_cpu", "compile", "kernel", "helpers", "compilations", *PHASES]
    lines = ["| tree | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, runs in results.items():
        t = [totals(r) for r in runs]
        lines.append(f"| {name} | " + " | ".join(
            f"{statistics.median(x[k] for x in t):.2f}" if k != "compilations"
            else f"{statistics.median(x[k] for x in t):g}" for k in keys) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
