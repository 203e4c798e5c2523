#!/usr/bin/env python
"""Fit time of ``fastnn.sklearn.MLPClassifier`` against scikit-learn's ``MLPClassifier``.

Both estimators get the same parameters (``solver="sgd"``, ``momentum=0``,
``alpha=0``, ``learning_rate_init=0.01``, the configuration's hidden layers and
batch size, ``max_iter=--epochs`` with ``tol=0`` and ``n_iter_no_change=inf`` so
every run trains exactly that many epochs) and the same synthetic MNIST-shaped
float32 data (``peers.common.make_data``), and ``fit`` is timed end to end::

    python benchmarks/compare_sklearn.py                  # configs A-D
    python benchmarks/compare_sklearn.py --configs B --epochs 2 --samples 2000

Each (system, configuration) runs in its own process (this file with
``--worker SYSTEM CONFIG``), one after another. The fastnn worker runs
``fastnn.warmup()`` first and reports that time (compile or cache load) apart
from the fit. Ratios are fastnn/scikit-learn: below 1 means fastnn is faster.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peers.common import CONFIGS, make_data  # noqa: E402

MARKER = "@@compare-sklearn@@ "
SYSTEMS = ("sklearn", "fastnn")
TARGETS = {"A": 0.3, "B": 0.3, "C": 0.3, "D": 0.5}


def estimator_params(config, epochs):
    """The shared constructor arguments for one configuration."""
    return dict(hidden_layer_sizes=tuple(config.hidden), solver="sgd", momentum=0.0,
                alpha=0.0, learning_rate_init=0.01, batch_size=config.batch_size,
                max_iter=epochs, tol=0.0, n_iter_no_change=float("inf"), shuffle=True,
                random_state=0)


def run_worker(system, config_name, args):
    """Fit one system on one configuration; return the measurements as a dict."""
    from threadpoolctl import threadpool_info, threadpool_limits

    config = CONFIGS[config_name]
    data = make_data(args.samples, seed=args.seed)
    result = dict(system=system, config=config_name)
    if system == "fastnn":
        import fastnn
        from fastnn.sklearn import MLPClassifier

        result["warmup_seconds"] = fastnn.warmup(dtypes=("float32",))
    else:
        from sklearn.neural_network import MLPClassifier
    estimator = MLPClassifier(**estimator_params(config, args.epochs))
    with threadpool_limits(limits=args.threads, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")          # ConvergenceWarning at max_iter, by design
        result["blas_threads"] = sorted({(os.path.basename(i["filepath"]), i["num_threads"])
                                         for i in threadpool_info()
                                         if i["user_api"] == "blas"})
        start = time.perf_counter()
        estimator.fit(data["X_train"], data["y_train"])
        result["fit_seconds"] = time.perf_counter() - start
    result["n_iter"] = int(estimator.n_iter_)
    result["final_loss"] = float(estimator.loss_)
    result["test_accuracy"] = float(estimator.score(data["X_test"], data["y_test"]))
    return result


def run_all(args):
    """Every (config, system) in its own process; return the list of results."""
    results = []
    for config_name in args.configs:
        for system in SYSTEMS:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", system, config_name,
                   "--samples", str(args.samples), "--epochs", str(args.epochs),
                   "--threads", str(args.threads), "--seed", str(args.seed)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            lines = [l for l in proc.stdout.splitlines() if l.startswith(MARKER)]
            if proc.returncode != 0 or not lines:
                sys.exit(f"worker {system} {config_name} failed ({proc.returncode}):\n"
                         f"{proc.stdout}\n{proc.stderr}")
            results.append(json.loads(lines[-1][len(MARKER):]))
            print(f"  {config_name} {system}: fit {results[-1]['fit_seconds']:.2f} s",
                  file=sys.stderr)
    return results


def table(results, args):
    """Markdown table: one row per configuration."""
    by = {(r["config"], r["system"]): r for r in results}
    rows = [f"{args.samples} samples, {args.epochs} epochs, sgd lr 0.01, float32, "
            f"{args.threads} BLAS threads",
            "",
            "| config | scikit-learn fit (s) | fastnn fit (s) | fastnn/sklearn | target | "
            "fastnn warmup (s) | test acc sklearn / fastnn |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for name in args.configs:
        sk, fn = by[(name, "sklearn")], by[(name, "fastnn")]
        ratio = fn["fit_seconds"] / sk["fit_seconds"]
        verdict = "ok" if ratio <= TARGETS[name] else "MISSED"
        rows.append(f"| {CONFIGS[name].describe()} | {sk['fit_seconds']:.2f} | "
                    f"{fn['fit_seconds']:.2f} | {ratio:.3f} | <= {TARGETS[name]} {verdict} | "
                    f"{fn['warmup_seconds']:.2f} | {sk['test_accuracy']:.3f} / "
                    f"{fn['test_accuracy']:.3f} |")
    return "\n".join(rows)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="A,B,C,D", help="comma-separated subset of A,B,C,D")
    p.add_argument("--samples", type=int, default=8000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="BLAS threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    p.add_argument("--json", metavar="FILE", help="also write every number here")
    p.add_argument("--worker", nargs=2, metavar=("SYSTEM", "CONFIG"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.configs = [c.strip().upper() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in args.configs if c not in CONFIGS]
    if bad:
        p.error(f"unknown config {', '.join(bad)}; valid: {', '.join(CONFIGS)}")
    for name in ("samples", "epochs", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        system, config_name = args.worker
        print(MARKER + json.dumps(run_worker(system, config_name.upper(), args)))
        return
    results = run_all(args)
    print(table(results, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
