#!/usr/bin/env python
"""Data-parallel scaling: MPI ranks against threads on this machine, and a cost model beyond it.

    python benchmarks/scaling.py                      # B, C, D on 60,000 x 784; ~5 min
    python benchmarks/scaling.py --configs B --samples 8000 --epochs 2
    python benchmarks/scaling.py --model-only         # the cost model from measured rates

On this machine each configuration trains (float32, SGD lr 0.01) in three
ways, each in fresh processes: 2 MPI ranks with 1 BLAS thread each
(``mpiexec -n 2``, ``fit(distributed="mpi")``), 1 process with 2 BLAS
threads, and 1 process with 1. Reported: the median steady epoch over
``--rounds`` launches (interleaved), the launch overhead of ``mpiexec -n 2``
with a warm kernel cache, and the per-step allreduce of the flat gradient
(timed on its own with mpi4py over the same communicator) with its share of
a distributed step.

The cost model extends the measurement to N hosts for B, D and
784-4096-4096-10 at the same global batch (strong scaling)::

    t_step(N) = t_compute / N + t_allreduce(N)
    t_allreduce(N) = 2 (N - 1) / N * P * 4 bytes / bandwidth + 2 (N - 1) * latency

``t_compute`` comes from this machine's measured one-core FLOP rate for
the configuration (the 4096-wide network uses D's rate), ``P`` is the
parameter count (the ring allreduce sends and receives each byte
2 (N - 1) / N times), and the latency is per message (10 Gbit/s Ethernet:
25 us over TCP; 100 Gbit/s: 3 us, RDMA). The model ignores that a share of
a batch smaller than ~32 rows runs the matrix products slower, so it is an
upper bound on the speed-up.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peers.common import CONFIGS  # noqa: E402

MARKER = "@@scaling@@ "
BIG = (784, 4096, 4096, 10)


def n_params(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def step_flops(sizes, batch):
    """Forward, weight-gradient and input-delta products (none for the first layer)."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    forward = sum(2 * batch * a * b for a, b in pairs)
    return 2 * forward + sum(2 * batch * a * b for a, b in pairs[1:])


# ---- worker -----------------------------------------------------------------------

def worker(args):
    import numpy as np

    import fastnn

    config = CONFIGS[args.config]
    rng = np.random.default_rng(0)
    X = rng.random((args.samples, config.sizes[0]), dtype=np.float32)
    y = rng.integers(0, config.sizes[-1], args.samples)
    distributed = "mpi" if args.mode == "mpi" else None
    threads = 2 if args.mode == "threads2" else 1
    layers = [fastnn.Dense(a, b, "relu") for a, b in zip(config.sizes[:-2], config.sizes[1:-1])]
    layers.append(fastnn.Dense(config.sizes[-2], config.sizes[-1]))
    net = fastnn.Network(layers, seed=0, threads=threads)
    times = []
    for _ in range(args.epochs + 1):
        start = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=config.batch_size, optimizer=fastnn.SGD(0.01),
                verbose=0, distributed=distributed)
        times.append(time.perf_counter() - start)
    result = {"epoch": statistics.median(times[1:]), "first": times[0]}
    if distributed:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        buf = np.zeros(net.n_params + 1, np.float32)
        out = np.empty_like(buf)
        for _ in range(20):
            comm.Allreduce(buf, out)
        comm.Barrier()
        reps = 300
        start = time.perf_counter()
        for _ in range(reps):
            comm.Allreduce(buf, out)
        result["allreduce"] = (time.perf_counter() - start) / reps
        if comm.Get_rank() != 0:
            return
    print(MARKER + json.dumps(result), flush=True)


def launch(args, config, mode):
    argv = [sys.executable, os.path.abspath(__file__), "--worker", config, mode,
            "--samples", str(args.samples), "--epochs", str(args.epochs)]
    env = dict(os.environ, HYDRA_LAUNCHER="fork", MPIEXEC_TIMEOUT=str(args.timeout))
    if mode == "mpi":
        argv = [args.mpiexec, "-n", "2", *argv[:1], "-m", "mpi4py", *argv[1:]]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{config} {mode} failed:\n{proc.stdout}\n{proc.stderr}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith(MARKER))
    result = json.loads(line[len(MARKER):])
    result["wall"] = wall
    return result


def launch_overhead(args):
    """Seconds of ``mpiexec -n 2 python -c 'import fastnn; MPI'`` (warm caches)."""
    code = "import fastnn, numpy; from mpi4py import MPI; MPI.COMM_WORLD.Barrier()"
    env = dict(os.environ, HYDRA_LAUNCHER="fork")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([args.mpiexec, "-n", "2", sys.executable, "-c", code], env=env,
                       check=True, timeout=120)
        times.append(time.perf_counter() - start)
    single = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import fastnn"], check=True, timeout=120)
        single.append(time.perf_counter() - start)
    return statistics.median(times), statistics.median(single)


# ---- the cost model --------------------------------------------------------------------

NETWORKS = {"10 Gbit/s": (10e9 / 8, 25e-6), "100 Gbit/s": (100e9 / 8, 3e-6)}
HOSTS = (2, 4, 8, 16, 32, 64)


def cost_model(rates):
    """Rows ``(network, config, link, N, speed-up, allreduce share)`` from per-core FLOP rates."""
    rows = []
    for name, sizes, batch, rate in (("B", CONFIGS["B"].sizes, 64, rates["B"]),
                                     ("D", CONFIGS["D"].sizes, 256, rates["D"]),
                                     ("784-4096-4096-10", BIG, 256, rates["D"])):
        compute = step_flops(sizes, batch) / rate
        for link, (bandwidth, latency) in NETWORKS.items():
            for hosts in HOSTS:
                comm = (2 * (hosts - 1) / hosts * n_params(sizes) * 4 / bandwidth
                        + 2 * (hosts - 1) * latency)
                step = compute / hosts + comm
                rows.append((name, link, hosts, compute / step, comm / step, compute))
    return rows


def model_markdown(rates):
    rows = cost_model(rates)
    lines = ["| network (batch) | link | " + " | ".join(f"N={n}" for n in HOSTS) + " |",
             "|---|---|" + "---:|" * len(HOSTS)]
    for key in dict.fromkeys((r[0], r[1]) for r in rows):
        cells = [r for r in rows if (r[0], r[1]) == key]
        best = max(cells, key=lambda r: r[3])
        text = [f"{r[3]:.1f}x ({100 * r[4]:.0f}%)" + (" *" if r is best else "") for r in cells]
        batch = 64 if key[0] == "B" else 256
        lines.append(f"| {key[0]} ({batch}) | {key[1]} | " + " | ".join(text) + " |")
    lines.append("")
    lines.append("Speed-up over one host at the same global batch (allreduce share of the "
                 "step); * marks the fastest N: past it, more hosts cost more than they give.")
    return "\n".join(lines)


# ---- main -------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="B,C,D")
    p.add_argument("--samples", type=int, default=60000)
    p.add_argument("--epochs", type=int, default=2, help="steady epochs after the first")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--model-only", action="store_true",
                   help="print the cost model from --rates (GFLOP/s per core, B and D)")
    p.add_argument("--rates", default=None, help="B,D one-core GFLOP/s for --model-only")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--worker", nargs=2, metavar=("CONFIG", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.config, args.mode = args.worker
        worker(args)
        return 0
    if args.model_only:
        b, d = (float(v) * 1e9 for v in (args.rates or "80,90").split(","))
        print(model_markdown({"B": b, "D": d}))
        return 0
    args.mpiexec = shutil.which("mpiexec", path=os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    if args.mpiexec is None:
        p.error("no mpiexec: pip install 'fastnn-numba[mpi]'")
    configs = [c.strip().upper() for c in args.configs.split(",")]
    modes = ("mpi", "threads2", "threads1")
    results = {(c, m): [] for c in configs for m in modes}
    for _ in range(args.rounds):                    # interleaved rounds
        for config in configs:
            for mode in modes:
                results[config, mode].append(launch(args, config, mode))
    overhead, single_import = launch_overhead(args)

    print(f"{args.samples} samples, float32, SGD; median of {args.rounds} launches per cell\n")
    print("| config | 2 ranks x 1 thread (s) | 1 x 2 threads (s) | 1 x 1 thread (s) | "
          "2 ranks / 1x2 | 2 ranks / 1x1 | allreduce per step (us) | allreduce share |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rates, table = {}, {}
    for config in configs:
        cfg = CONFIGS[config]
        epoch = {m: statistics.median(r["epoch"] for r in results[config, m]) for m in modes}
        allreduce = statistics.median(r["allreduce"] for r in results[config, "mpi"])
        steps = -(-args.samples // cfg.batch_size)
        share = allreduce * steps / epoch["mpi"]
        flops = step_flops(cfg.sizes, cfg.batch_size) * steps
        rates[config] = flops / epoch["threads1"]
        table[config] = dict(epoch=epoch, allreduce=allreduce, share=share,
                             rate_one_core=rates[config],
                             rounds={m: [r["epoch"] for r in results[config, m]] for m in modes})
        print(f"| {cfg.describe()} | {epoch['mpi']:.3f} | {epoch['threads2']:.3f} | "
              f"{epoch['threads1']:.3f} | {epoch['mpi'] / epoch['threads2']:.2f} | "
              f"{epoch['mpi'] / epoch['threads1']:.2f} | {1e6 * allreduce:.0f} | "
              f"{100 * share:.1f}% |")
    print(f"\nmpiexec -n 2 launch (import fastnn + MPI init, warm cache): {overhead:.2f} s; "
          f"one plain process importing fastnn: {single_import:.2f} s")
    print("one-core FLOP rates (GFLOP/s): " +
          ", ".join(f"{c} {r / 1e9:.0f}" for c, r in rates.items()))
    if "B" in rates and "D" in rates:
        print("\nCost model (strong scaling, same global batch):\n")
        print(model_markdown(rates))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"samples": args.samples, "configs": table, "launch_overhead": overhead,
                       "import_fastnn": single_import}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
