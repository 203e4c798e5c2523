#!/usr/bin/env python
"""Training from a memory-mapped uint8 file against training from memory (issue 13).

    python benchmarks/memmap.py                       # all three parts, ~5 min
    python benchmarks/memmap.py --parts warm --rounds 7
    python benchmarks/memmap.py --parts cold --cold-rows 400000

Config B of ``benchmarks/compare.py`` (784-128-64-10 relu, batch 64, SGD
lr 0.01, float32) in fresh processes, interleaved round by round:

* **warm**: the steady epoch (median of ``--epochs`` after a first one) on
  ``--rows`` rows held in memory as float32 (``X / 255``), against the same
  rows as a uint8 ``.npy`` memory map with a ``Rescaling(1/255)`` first
  layer, page cache warm. Target: the map's epoch <= 1.1x memory's.
* **cold**: the first epoch right after the file's pages were dropped from
  the page cache (``echo 3 > /proc/sys/vm/drop_caches`` where allowed, else
  ``posix_fadvise(DONTNEED)`` on the file), ``shuffle=True`` against
  ``shuffle="block"``, on ``--cold-rows`` rows (the time of ``fit``, cached
  kernels loaded first). A process still running after ``--cold-timeout``
  seconds (its start included) is killed and reported as more than that.
* **memory**: the peak anonymous memory (``RssAnon`` of
  ``/proc/self/status``, sampled every 5 ms by a thread during ``fit``) for
  a map of N and of 10 N rows: it must not grow with the rows.

The data are noisy copies of ten prototype images (learnable, not MNIST
itself), written once into ``--dir``.
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
MARKER = "@@memmap@@ "

WORKER = textwrap.dedent("""
    import json, sys, threading, time
    import numpy as np
    import fastnn

    mode, folder, epochs, shuffle = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    shuffle = shuffle if shuffle == "block" else True

    def rss_anon():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        return 0

    X = np.load(f"{folder}/X.npy", mmap_mode="r")
    y = np.load(f"{folder}/y.npy", mmap_mode="r")
    layers = [fastnn.Dense(784, 128, "relu"), fastnn.Dense(128, 64, "relu"), fastnn.Dense(64, 10)]
    if mode == "memory":
        X = (np.asarray(X, np.float32) / np.float32(255))
        y = np.array(y)
    else:
        layers.insert(0, fastnn.Rescaling(1 / 255))
    net = fastnn.Network(layers, seed=0)
    fastnn.warmup(("float32",))
    ends = []

    class Clock(fastnn.callbacks.Callback):
        def on_epoch_end(self, network, logs):
            ends.append(time.perf_counter())

    peak = [rss_anon()]
    running = [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.005)

    before = rss_anon()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    history = net.fit(X, y, epochs=epochs, batch_size=64, optimizer=fastnn.SGD(0.01),
                      shuffle=shuffle, verbose=0, callbacks=[Clock()])
    running[0] = False
    sampler.join()
    epochs_s = [b - a for a, b in zip([began] + ends[:-1], ends)]
    print("@@memmap@@ " + json.dumps({
        "epochs": epochs_s, "elapsed": time.perf_counter() - began, "rss_anon_before": before,
        "rss_anon_peak": peak[0], "loss": history.history["loss"]}))
""")


def make_data(folder, rows, seed=0):
    """``X.npy`` (uint8, rows x 784) and ``y.npy`` in ``folder``, unless already there.

    A learnable data set: noisy copies of ten prototype images, written in
    pieces (``tests/test_cgroup.py`` uses it too).
    """
    import numpy as np

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x_path = folder / "X.npy"
    if x_path.exists() and (folder / "y.npy").exists():
        if np.load(x_path, mmap_mode="r").shape[0] == rows:
            return folder
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, (10, 784)).astype(np.int16)
    y = rng.integers(0, 10, rows).astype(np.uint8)
    X = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.uint8, shape=(rows, 784))
    for start in range(0, rows, 50_000):
        stop = min(rows, start + 50_000)
        noise = rng.integers(-100, 101, (stop - start, 784), dtype=np.int16)
        X[start:stop] = np.clip(prototypes[y[start:stop]] + noise, 0, 255)
    X.flush()
    del X
    np.save(folder / "y.npy", y)
    return folder


def drop_cache(folder):
    """Drop the data files from the page cache; returns how."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches"
    except OSError:
        for name in ("X.npy", "y.npy"):
            fd = os.open(Path(folder) / name, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "fadvise"


def run(mode, folder, epochs, shuffle="true", timeout=1800):
    """One worker process's result, or None when it ran past ``timeout`` seconds."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run([sys.executable, "-c", WORKER, mode, str(folder), str(epochs),
                               shuffle], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    raise RuntimeError(f"worker {mode} failed:\n{proc.stderr[-3000:]}")


def spread(values):
    m = statistics.median(values)
    return (max(values) - min(values)) / m if m else 0.0


def warm(args, out):
    folder = make_data(Path(args.dir) / f"rows{args.rows}", args.rows)
    run("map", folder, 1)                                   # page cache warm, kernels cached
    times = {"memory": [], "map": []}
    for _ in range(args.rounds):
        for mode in times:
            result = run(mode, folder, args.epochs + 1)
            times[mode].append(statistics.median(result["epochs"][1:]))
    memory, mapped = (statistics.median(times[m]) for m in ("memory", "map"))
    out["warm"] = {"rows": args.rows, "times": times, "ratio": mapped / memory}
    print(f"\nwarm page cache, {args.rows} rows, config B, steady epoch (median of "
          f"{args.rounds} processes):")
    print("| X | epoch (s) | spread | / in-memory float32 |")
    print("|---|---:|---:|---:|")
    for mode, label in (("memory", "in memory, float32"), ("map", "uint8 memory map + Rescaling")):
        t = statistics.median(times[mode])
        print(f"| {label} | {t:.4f} | {spread(times[mode]):.0%} | {t / memory:.2f} |")
    print(f"target: map <= 1.10x in-memory: {'met' if mapped / memory <= 1.10 else 'missed'}")


def cold(args, out):
    folder = make_data(Path(args.dir) / f"rows{args.cold_rows}", args.cold_rows)
    size = (Path(folder) / "X.npy").stat().st_size
    times = {"true": [], "block": []}
    stopped = {"true": False, "block": False}
    how = None
    for _ in range(args.cold_rounds):
        for shuffle in times:
            how = drop_cache(folder)
            result = run("map", folder, 1, shuffle, args.cold_timeout)
            stopped[shuffle] |= result is None
            times[shuffle].append(args.cold_timeout if result is None else result["elapsed"])
    out["cold"] = {"rows": args.cold_rows, "bytes": size, "how": how, "times": times,
                   "stopped": stopped}
    print(f"\ncold page cache ({how} before each run), {args.cold_rows} rows "
          f"({size / 2**20:.0f} MiB uint8), config B, first epoch:")
    print("| shuffle | first epoch (s) | spread | MB/s read |")
    print("|---|---:|---:|---:|")
    for shuffle in times:
        t = statistics.median(times[shuffle])
        cell = f"> {args.cold_timeout:.0f} (stopped)" if stopped[shuffle] else f"{t:.2f}"
        rate = "-" if stopped[shuffle] else f"{size / t / 1e6:.0f}"
        print(f"| {shuffle} | {cell} | {spread(times[shuffle]):.0%} | {rate} |")


def memory(args, out):
    rows = [args.rows, 10 * args.rows]
    peaks = {}
    for n in rows:
        folder = make_data(Path(args.dir) / f"rows{n}", n)
        run("map", folder, 1)                       # warm cache: this part is about RAM
        result = run("map", folder, 2)
        peaks[n] = result
    out["memory"] = {str(n): peaks[n] for n in rows}
    print("\npeak anonymous memory during fit on a uint8 memory map (RssAnon, sampled "
          "every 5 ms):")
    print("| rows | file (MiB) | RssAnon before fit (MiB) | peak during fit (MiB) | growth (MiB) |")
    print("|---:|---:|---:|---:|---:|")
    for n in rows:
        r = peaks[n]
        print(f"| {n} | {n * 784 / 2**20:.0f} | {r['rss_anon_before'] / 2**20:.1f} | "
              f"{r['rss_anon_peak'] / 2**20:.1f} | "
              f"{(r['rss_anon_peak'] - r['rss_anon_before']) / 2**20:.1f} |")
    a, b = (peaks[n]["rss_anon_peak"] - peaks[n]["rss_anon_before"] for n in rows)
    print(f"10x the rows: growth during fit {b / 2**20:.1f} MiB against {a / 2**20:.1f} MiB")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="warm,cold,memory")
    p.add_argument("--rows", type=int, default=60_000)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per warm process")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cold-rows", type=int, default=400_000)
    p.add_argument("--cold-rounds", type=int, default=3)
    p.add_argument("--cold-timeout", type=float, default=120.0)
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "fastnn-memmap-bench"))
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    out = {"args": vars(args)}
    parts = {"warm": warm, "cold": cold, "memory": memory}
    for name in args.parts.split(","):
        parts[name](args, out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
