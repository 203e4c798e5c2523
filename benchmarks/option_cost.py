#!/usr/bin/env python
"""What sample weights and gradient clipping cost, in one process with interleaved epochs.

``compare.py --sample-weight`` / ``--clip-norm`` compare fresh processes, whose
steady epochs move 10-30 % between processes on a shared machine. Here the
variants of config B (784-128-64-10 relu, batch 64, 8,000 samples, float32,
the same start) train side by side in one process, one epoch each in turn,
so a change of load hits all of them alike; the ratio of each epoch to the
plain epoch of the same cycle is taken and its median reported::

    python benchmarks/option_cost.py                      # plain SGD, 30 cycles, 1 thread
    python benchmarks/option_cost.py --optimizer adam --cycles 20 --threads 2
"""

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peers.common import CONFIGS, OPTIMIZERS, initial_params, make_data  # noqa: E402
from peers.fastnn_peer import sample_weights  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    p.add_argument("--cycles", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clip-norm", type=float, default=1.0)
    args = p.parse_args(argv)
    import fastnn

    config = CONFIGS["B"]
    data = make_data(8000, 0)
    theta0 = np.concatenate([a.ravel() for pair in initial_params(config.sizes, 0)
                             for a in pair])
    hp = OPTIMIZERS[args.optimizer]

    def variant(**clip):
        layers = [fastnn.Dense(a, b, "relu") for a, b in zip(config.sizes[:-2],
                                                            config.sizes[1:-1])]
        net = fastnn.Network(layers + [fastnn.Dense(config.sizes[-2], config.sizes[-1])],
                             dtype="float32", seed=0, threads=args.threads)
        net.set_params(theta0)
        if hp["kind"] == "adam":
            opt = fastnn.Adam(hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], **clip)
        else:
            opt = fastnn.SGD(hp["lr"], momentum=hp["momentum"], **clip)
        return net, opt

    weights = sample_weights(8000, 0)
    variants = {"plain": (variant(), None), "sample_weight": (variant(), weights),
                f"clip_norm={args.clip_norm:g}": (variant(clip_norm=args.clip_norm), None),
                "clip_value=1": (variant(clip_value=1.0), None)}
    seconds = {name: [] for name in variants}
    for cycle in range(args.cycles + 1):               # cycle 0 warms up
        for name, ((net, opt), w) in variants.items():
            history = net.fit(data["X_train"], data["y_train"], epochs=1,
                              batch_size=config.batch_size, optimizer=opt, verbose=0,
                              sample_weight=w)
            if cycle:
                seconds[name].append(history.history["seconds"][0])
    plain = seconds["plain"]
    print(f"config B, optimizer {args.optimizer}, threads {args.threads}, {args.cycles} "
          f"cycles; load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
    for name, times in seconds.items():
        ratios = [t / p for t, p in zip(times, plain)]
        print(f"{name:15s} median epoch {statistics.median(times):.4f} s (min {min(times):.4f}, "
              f"max {max(times):.4f}); vs plain, median of per-cycle ratios "
              f"{statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
