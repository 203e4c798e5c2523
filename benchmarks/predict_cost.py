#!/usr/bin/env python
"""What batch-invariant predictions cost, in one process with interleaved repeats.

``Network.predict`` runs every row through fixed-shape chunks (``fastnn.backends.predict_rows``
rows, the last padded), so a row's output is bit-identical whatever rows it comes with. The
alternative it replaced, and the fastest a forward pass through this BLAS gets, is one product
per layer over all the rows (one chunk per thread, not batch-invariant). Both run here through
the same kernels, turn about, on the same 10,000 rows, for a narrow (784-128-64-10) and a wide
(784-1024-1024-10) network::

    python benchmarks/predict_cost.py                    # 1 and 2 threads, 9 rounds
    python benchmarks/predict_cost.py --threads 1 --rounds 15
    python benchmarks/predict_cost.py --threads 1 --chunk-rows 256,1024,2048   # the trade-off

Reported per network and thread count: the median time of each, their ratio (median of the
per-round ratios; the target is at most 1.05) and, for information, the time of a single-row
``predict`` (a whole chunk, padded); the same for each ``--chunk-rows`` size tried.
"""

import argparse
import statistics
import time

import numpy as np

NETWORKS = {"narrow": [784, 128, 64, 10], "wide": [784, 1024, 1024, 10]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--repeats", type=int, default=3, help="predicts per round and variant")
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--networks", default="narrow,wide")
    p.add_argument("--chunk-rows", type=lambda v: [int(r) for r in v.split(",") if r], default=[],
                   help="also try these chunk sizes (comma-separated), as the latency / "
                        "throughput trade-off: each is batch-invariant too")
    args = p.parse_args(argv)
    import fastnn
    from fastnn import backends

    X = np.random.default_rng(0).random((args.rows, 784), dtype=np.float32)
    invariant_rows, plan = backends.predict_rows, backends.predict_tiles
    print(f"{args.rows} rows, float32, {args.rounds} rounds of {args.repeats} predicts each; "
          f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print("| network | threads | chunk rows | invariant (ms) | one chunk a thread (ms) | ratio "
          "| single row (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.networks.split(","):
        sizes = NETWORKS[name]
        for threads in (int(t) for t in args.threads.split(",")):
            layers = [fastnn.Dense(a, b, "relu") for a, b in zip(sizes[:-2], sizes[1:-1])]
            net = fastnn.Network(layers + [fastnn.Dense(sizes[-2], sizes[-1])], seed=0,
                                 threads=threads)
            whole_rows = -(-args.rows // threads)
            variants = {
                "invariant": (invariant_rows, plan),
                "whole": (lambda s: whole_rows,
                          lambda s, r: np.ones(len(s) - 1, np.int64)),
            }
            for r in args.chunk_rows:
                variants[r] = (lambda s, r=r: r, plan)
            times = {k: [] for k in variants}
            single = {k: [] for k in variants if k != "whole"}
            try:
                for _ in range(args.rounds + 1):          # the first round warms up
                    for key, (rows_of, tiles_of) in variants.items():
                        backends.predict_rows, backends.predict_tiles = rows_of, tiles_of
                        net.predict(X[:2])
                        start = time.perf_counter()
                        for _ in range(args.repeats):
                            net.predict(X)
                        times[key].append((time.perf_counter() - start) / args.repeats)
                        if key in single:
                            start = time.perf_counter()
                            for i in range(20):
                                net.predict(X[i:i + 1])
                            single[key].append((time.perf_counter() - start) / 20)
            finally:
                backends.predict_rows, backends.predict_tiles = invariant_rows, plan
            for key in single:
                ratio = statistics.median(a / b for a, b in zip(times[key][1:],
                                                                 times["whole"][1:]))
                rows = invariant_rows(sizes) if key == "invariant" else f"{key} (tried)"
                print(f"| {'-'.join(map(str, sizes))} | {threads} | {rows} | "
                      f"{statistics.median(times[key][1:]) * 1e3:.2f} | "
                      f"{statistics.median(times['whole'][1:]) * 1e3:.2f} | {ratio:.3f} | "
                      f"{statistics.median(single[key][1:]) * 1e3:.3f} |")


if __name__ == "__main__":
    main()
