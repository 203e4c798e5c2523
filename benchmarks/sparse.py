#!/usr/bin/env python
"""Seconds per epoch on sparse, text-like input: fastnn sparse, fastnn dense, scikit-learn, torch.

The data set is synthetic and shaped like bag-of-words text: ``--rows`` x
``--features`` (default 20,000 x 50,000) at ``--density`` (0.1 %, about 50
stored values a row, float32), ``--classes`` balanced classes. Every system
trains the same ``features-hidden-classes`` ReLU classifier with Adam
(lr 1e-3), batch 200, shuffled, one epoch per timed call, single-threaded
(``threadpool_limits(1)``, ``Network(threads=1)``, ``torch.set_num_threads(1)``):

* ``fastnn sparse``: ``Network.fit(X_csr, y, epochs=1)`` (the call, its
  conversion of X to canonical CSR included);
* ``fastnn dense``: the same on ``X.toarray()`` of the first ``--dense-rows``
  rows (the whole would be 4 GB of float32), scaled to ``--rows`` rows
  (the epoch's work is linear in its steps);
* ``sklearn``: ``MLPClassifier(solver="adam", max_iter=1)`` on the same CSR
  (scikit-learn multiplies by the sparse batch with scipy);
* ``torch``: a ``torch.sparse.mm`` first layer on each batch's COO tensor
  (built from the shuffled CSR rows, counted in the epoch).

The first call of each system is a warm-up (fastnn's compile or cache load
is timed there and reported apart); then ``--rounds`` rounds, the systems
interleaved within each round, and the median per system::

    python benchmarks/sparse.py                       # the default problem
    python benchmarks/sparse.py --rows 4000 --rounds 2
"""

import argparse
import statistics
import time
import warnings

import numpy as np
import scipy.sparse as sp


def make_data(rows, features, density, classes, seed=0):
    """A CSR float32 ``X`` of about ``density * features`` values a row (term-count like)."""
    rng = np.random.default_rng(seed)
    per_row = rng.poisson(density * features, rows)
    indptr = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int64)
    # Zipf-like feature popularity, as words in text.
    popularity = 1.0 / np.arange(1, features + 1) ** 0.8
    indices = rng.choice(features, int(indptr[-1]), p=popularity / popularity.sum())
    data = rng.integers(1, 4, indices.shape[0]).astype(np.float32)
    X = sp.csr_matrix((data, indices, indptr), shape=(rows, features))
    X.sum_duplicates()
    y = rng.integers(0, classes, rows)
    return X, y


def fastnn_epoch(X, y, hidden, classes, batch_size, state):
    import fastnn

    if "net" not in state:
        state["net"] = fastnn.Network([fastnn.Dense(X.shape[1], hidden, "relu"),
                                       fastnn.Dense(hidden, classes)], dtype="float32",
                                      seed=0, threads=1)
        state["opt"] = fastnn.Adam(1e-3)
    start = time.perf_counter()
    state["net"].fit(X, y, epochs=1, batch_size=batch_size, optimizer=state["opt"], verbose=0)
    return time.perf_counter() - start


def sklearn_epoch(X, y, hidden, classes, batch_size, state):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(hidden,), solver="adam", learning_rate_init=1e-3,
                        batch_size=batch_size, max_iter=1, alpha=0.0, shuffle=True,
                        random_state=0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return time.perf_counter() - start


def torch_epoch(X, y, hidden, classes, batch_size, state):
    import torch

    if "model" not in state:
        torch.manual_seed(0)
        W1 = torch.nn.Parameter(torch.randn(X.shape[1], hidden) * (2.0 / X.shape[1]) ** 0.5)
        b1 = torch.nn.Parameter(torch.zeros(hidden))
        out = torch.nn.Linear(hidden, classes)
        params = [W1, b1, *out.parameters()]
        state["model"] = (W1, b1, out, torch.optim.Adam(params, lr=1e-3))
        state["rng"] = np.random.default_rng(0)
    W1, b1, out, opt = state["model"]
    labels = torch.from_numpy(y)
    start = time.perf_counter()
    perm = state["rng"].permutation(X.shape[0])
    Xs = X[perm]
    ys = labels[torch.from_numpy(perm)]
    for lo in range(0, X.shape[0], batch_size):
        batch = Xs[lo:lo + batch_size].tocoo()
        xb = torch.sparse_coo_tensor(np.vstack([batch.row, batch.col]).astype(np.int64),
                                     batch.data, batch.shape, check_invariants=False)
        h = torch.relu(torch.sparse.mm(xb, W1) + b1)
        loss = torch.nn.functional.cross_entropy(out(h), ys[lo:lo + batch_size])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--features", type=int, default=50000)
    parser.add_argument("--density", type=float, default=0.001)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--dense-rows", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--systems", default="fastnn_sparse,fastnn_dense,sklearn,torch")
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    X, y = make_data(args.rows, args.features, args.density, args.classes)
    dense_rows = min(args.dense_rows, args.rows)
    print(f"X: {X.shape[0]:,} x {X.shape[1]:,}, {X.nnz:,} stored values "
          f"({X.nnz / X.shape[0]:.1f} a row, {X.nnz / np.prod(X.shape):.3%}), "
          f"{args.classes} classes; network {args.features}-{args.hidden}-{args.classes}, "
          f"Adam, batch {args.batch_size}, 1 thread")
    systems = {}
    for name in args.systems.split(","):
        if name == "fastnn_sparse":
            systems[name] = (fastnn_epoch, X, y, 1.0)
        elif name == "fastnn_dense":
            Xd = X[:dense_rows].toarray()
            systems[name] = (fastnn_epoch, Xd, y[:dense_rows], args.rows / dense_rows)
        elif name == "sklearn":
            systems[name] = (sklearn_epoch, X, y, 1.0)
        elif name == "torch":
            try:
                import torch

                torch.set_num_threads(1)
            except ImportError:
                print("torch: not installed, skipped")
                continue
            systems[name] = (torch_epoch, X, y, 1.0)
        else:
            raise SystemExit(f"unknown system {name!r}")
    states = {name: {} for name in systems}
    times = {name: [] for name in systems}
    with threadpool_limits(1):
        for name, (epoch, Xs, ys, scale) in systems.items():
            first = epoch(Xs, ys, args.hidden, args.classes, args.batch_size, states[name])
            print(f"warm-up {name}: {first:.2f} s (first call: compile or cache load, "
                  f"allocation)")
        for r in range(args.rounds):
            for name, (epoch, Xs, ys, scale) in systems.items():
                times[name].append(scale * epoch(Xs, ys, args.hidden, args.classes,
                                                 args.batch_size, states[name]))
            print(f"round {r + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()))
    base = statistics.median(times["fastnn_sparse"]) if "fastnn_sparse" in times else None
    print(f"\n| system | s / epoch (median of {args.rounds}) | vs fastnn sparse |")
    print("|---|---:|---:|")
    for name, t in times.items():
        median = statistics.median(t)
        note = " (scaled from %d rows)" % dense_rows if name == "fastnn_dense" else ""
        ratio = f"{median / base:.1f}x" if base else "-"
        print(f"| {name}{note} | {median:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
