"""Print numba-vs-numpy ratios from the latest asv results of this machine.

Usage (from the repository root or from benchmarks/)::

    python benchmarks/ratios.py                    # latest results file of this machine
    python benchmarks/ratios.py --machine NAME     # another machine's latest
    python benchmarks/ratios.py path/to/HASH-ENV.json

For every benchmark with a ``backend`` parameter, one row per combination of
the other parameters: the numba value, the numpy value and numba / numpy
(below 1: numba is faster or smaller). Benchmarks without that parameter
(compile time) are printed as plain values. Only results recorded with
``asv run --python=same --set-commit-hash ...`` (or in an asv environment)
exist on disk: asv does not save runs of ``--python=same`` alone.
"""

import argparse
import itertools
import json
import math
from pathlib import Path

from asv.machine import Machine
from asv.results import Results
from asv.util import human_value, load_json

HERE = Path(__file__).resolve().parent
RESULTS = HERE / load_json(str(HERE / "asv.conf.json"), js_comments=True)["results_dir"]
BACKEND = "backend"
SIDES = ("numba", "numpy")


def latest_results_file(machine):
    """The most recently written results file of ``machine``."""
    files = [p for p in (RESULTS / machine).glob("*.json") if p.name != "machine.json"]
    if not files:
        raise SystemExit(f"no asv results for machine {machine!r} under {RESULTS}; record some "
                         f"with: asv run --python=same --set-commit-hash $(git rev-parse HEAD)")
    return max(files, key=lambda p: p.stat().st_mtime)


def unquote(param):
    """asv stores parameters as their repr: ``'float32'`` -> ``float32``."""
    return param.strip("'\"")


def fmt(value, unit):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "failed"
    return human_value(value, unit)


def rows(name, result, meta):
    """Table rows ``(other params, numba, numpy, ratio)`` of one benchmark."""
    names = meta["param_names"]
    params = result.get_result_params(name)
    values = result.get_result_value(name, params)
    unit = meta.get("unit", "seconds")
    if BACKEND not in names:
        for combo, value in zip(itertools.product(*params), values):
            yield ", ".join(map(unquote, combo)), fmt(value, unit), "", ""
        return
    i = names.index(BACKEND)
    by_combo = {}
    for combo, value in zip(itertools.product(*params), values):
        key = ", ".join(unquote(p) for j, p in enumerate(combo) if j != i)
        by_combo.setdefault(key, {})[unquote(combo[i])] = value
    for key, pair in by_combo.items():
        numba, numpy = (pair.get(side) for side in SIDES)
        ok = all(v is not None and not math.isnan(v) and v > 0 for v in (numba, numpy))
        ratio = f"{numba / numpy:.2f}" if ok else "n/a"
        yield key, fmt(numba, unit), fmt(numpy, unit), ratio


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_file", nargs="?", help="an asv results JSON file")
    parser.add_argument("--machine", default=None,
                        help="asv machine name (default: this machine's)")
    args = parser.parse_args(argv)
    path = Path(args.results_file) if args.results_file else latest_results_file(
        args.machine or Machine.get_unique_machine_name())
    result = Results.load(str(path))
    meta = json.loads((RESULTS / "benchmarks.json").read_text())
    print(f"# {path.name}: commit {result.commit_hash[:8]}, {result.env_name}")
    for name in sorted(result.get_result_keys(meta)):
        names = meta[name]["param_names"]
        sides = SIDES if BACKEND in names else ("value", "")
        header = (", ".join(n for n in names if n != BACKEND) or "-", *sides,
                  "numba/numpy" if BACKEND in names else "")
        table = [header, *rows(name, result, meta[name])]
        widths = [max(len(r[k]) for r in table) for k in range(4)]
        print(f"\n## {name}")
        for row in table:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


if __name__ == "__main__":
    main()
