"""Compile (or load from the on-disk cache) every kernel ahead of timing."""

import json
import os
import subprocess
import sys
import time

import numpy as np

#: A job is ``(dtype, part)``; a part is ``"train:<loss>:<optimizer>"`` (the training
#: step of that loss and optimizer, see ``fastnn.backends.LEAN_STEPS``), ``"predict"``
#: (the predict side) or ``"generic"`` (the training step every other configuration
#: shares: momentum, dropout, sparse input, clipping by norm, other losses and optimizers).
PARTS = ("train", "predict", "generic")
#: Their relative compile times (cold, one dtype).
_COST = {"train": 2, "predict": 1, "generic": 4}
#: What ``warmup()`` compiles by default: the common first runs.
LOSSES = ("cross_entropy",)
OPTIMIZERS = ("sgd", "adam")
#: A child process's program: compile the (dtype, part) jobs given as JSON.
_CHILD = "import json, sys; from fastnn.warmup import _compile; " \
         "[_compile(d, p) for d, p in json.loads(sys.argv[1])]"


def _kind(part):
    return part.split(":", 1)[0]


def _compile(dtype, part):
    """Run ``part``'s kernels for ``dtype`` once on tiny data (compiling or loading them)."""
    from .data import KeyedOrder
    from .layers import Dense
    from .network import Network
    from .optimizers import SGD, get_optimizer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 3))
    labels = np.array([0, 1, 0, 1, 1, 0])
    targets = np.eye(2)[labels]
    kind = _kind(part)
    if kind == "train":
        _, loss, optimizer = part.split(":")
        y = labels if loss == "cross_entropy" else targets
        net = Network([Dense(3, 4, "relu"), Dense(4, 2)], loss=loss, dtype=dtype)
        net.fit(X, y, epochs=1, batch_size=4, optimizer=get_optimizer(optimizer), verbose=0)
    elif kind == "generic":
        KeyedOrder(rng, 10).rows(0, 10)          # the order of fits over many rows
        net = Network([Dense(3, 4, "relu"), Dense(4, 2)], loss="cross_entropy", dtype=dtype)
        net.fit(X, targets, epochs=1, batch_size=4, optimizer=SGD(0.1, momentum=0.9),
                verbose=0)
    else:
        for loss, y in (("cross_entropy", labels), ("binary_cross_entropy", targets),
                        ("mse", targets)):
            net = Network([Dense(3, 4, "relu"), Dense(4, 2)], loss=loss, dtype=dtype)
            net.predict(X)
            net.predict_proba(X)


def _cache_is_cold():
    """Whether the training step has never been compiled into numba's cache here."""
    from .kernels import step

    cache = getattr(step.train_steps, "_cache", None)
    index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
    return index is not None and not os.path.exists(index)


def _plan(jobs, n):
    """``jobs`` split into ``n`` lists of about equal cost, each run in order by one process.

    The training steps of one dtype share most of their kernels (the gather,
    the forward tiles, the loss, the activations): the first compiles them
    into the cache and a later one, in any process, loads them. So with at
    least as many dtypes as processes, a dtype's jobs stay in one process
    (whole dtypes balanced by cost). With fewer, a dtype's costliest step
    leads in one process, and the others start with the predict side, which
    shares little with it, so that their training steps come once the shared
    kernels are in the cache (counted at half cost).
    """
    groups = {}
    for job in sorted(jobs, key=lambda j: -_COST[_kind(j[1])]):
        groups.setdefault(job[0], []).append(job)
    shares = [[] for _ in range(n)]
    loads = [0.0] * n

    def give(job_list, cost, among=range(n)):
        k = min(among, key=lambda i: loads[i])
        shares[k].extend(job_list)
        loads[k] += cost
        return k

    if len(groups) >= n:
        costs = [(sum(_COST[_kind(p)] for _, p in g), g) for g in groups.values()]
        for cost, group in sorted(costs, key=lambda c: -c[0]):
            give(group, cost)
        return shares
    for group in groups.values():                   # n >= 2 here
        lead, rest = group[0], group[1:]
        k = give([lead], _COST[_kind(lead[1])])
        rest.sort(key=lambda j: _kind(j[1]) != "predict")       # predict first
        for job in rest:
            give([job], _COST[_kind(job[1])] / (1 if _kind(job[1]) == "predict" else 2),
                 [i for i in range(n) if i != k])
    return shares


def warmup(dtypes=("float32", "float64"), processes=None, *, losses=LOSSES,
           optimizers=OPTIMIZERS, generic=False):
    """Compile the kernels a run will use, so that it starts at full speed.

    The first call in a fresh environment compiles the kernels and writes
    numba's cache (seconds); later processes load them from the cache. Only
    what is asked for is compiled: the training step of each loss and
    optimizer given (each common configuration has a step of its own, see
    ``fastnn.backends.LEAN_STEPS``), and the predict side. Every other
    configuration (SGD momentum, dropout, sparse input, ``clip_norm``,
    several processes, other losses or optimizers) shares one generic step:
    ``generic=True`` compiles it too. Compiling is single-threaded, so when
    the cache is cold the work is shared with child processes, one per core:
    each compiles its share of the jobs into the same cache, and this process
    then loads what they compiled. With a warm cache everything is loaded
    here, with no child.

    Parameters
    ----------
    dtypes : sequence of {"float32", "float64"}
    processes : int, optional
        Processes that compile (this one included): 1 compiles everything
        here. Default: the cores this process may use, up to one per job,
        when the training step is not in the cache yet; else 1.
    losses : sequence of str
        Loss names (``Network(loss=...)``); ``"cross_entropy"`` with integer labels.
    optimizers : sequence of str
        Optimizer names (``fastnn.get_optimizer``), with their default settings.
    generic : bool
        Also compile the generic training step.

    Returns
    -------
    float
        Seconds spent, so callers can report compile time apart from training.
    """
    from . import backends
    from ._threads import available_cores

    start = time.perf_counter()
    parts = [f"train:{loss}:{opt}" for loss in losses for opt in optimizers] + ["predict"]
    parts += ["generic"] if generic else []
    jobs = [(str(np.dtype(d)), part) for d in dtypes for part in parts]
    if processes is None:
        processes = min(len(jobs), available_cores()) if _cache_is_cold() else 1
    processes = max(1, min(int(processes), len(jobs)))
    shares = _plan(jobs, processes)
    # Every core compiles a share already: no helper process per training step.
    env = backends.compiler_environment()
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(share)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for share in shares[1:]]
    helper = backends.COMPILE_HELPER["on"]
    backends.COMPILE_HELPER["on"] = helper and not children
    try:
        for job in shares[0]:
            _compile(*job)
        for child in children:
            child.wait(timeout=900)
    finally:
        backends.COMPILE_HELPER["on"] = helper
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    # Load what the children compiled (or compile it, should one have failed).
    for job in jobs:
        _compile(*job)
    return time.perf_counter() - start
