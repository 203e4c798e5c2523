"""Run by ``tests/test_distributed.py`` under ``mpiexec -n N python -m mpi4py``.

``python -m mpi4py _distributed_worker.py SCENARIO OUT_DIR [ARGS...]`` runs one
scenario on every rank and writes what the test checks into ``OUT_DIR``:
``rank{r}.npz`` (parameters, history as JSON) per rank and, where the
scenario has one, ``single.npz``, the same training in one process (rank 0).
"""

import json
import os
import sys
import time

import numpy as np
from mpi4py import MPI

import fastnn
from fastnn.callbacks import EarlyStopping, ReduceLROnPlateau, StepLR
from fastnn.distributed import DistributedError

COMM = MPI.COMM_WORLD
RANK = COMM.Get_rank()


def data(n=203, features=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features))
    y = rng.integers(0, classes, n)
    return X, y


def network(dtype="float64", dropout=False, seed=5):
    layers = [fastnn.Dense(12, 16, "relu")]
    if dropout:
        layers.append(fastnn.Dropout(0.25))
    layers += [fastnn.Dense(16, 8, "tanh"), fastnn.Dense(8, 4)]
    return fastnn.Network(layers, dtype=dtype, seed=seed)


#: name -> (fit keyword arguments as a function, dropout?)
RUNS = {
    "momentum": (lambda: dict(optimizer=fastnn.SGD(0.05, momentum=0.9, nesterov=True),
                              epochs=4, batch_size=32), False),
    "adam_dropout_schedule_es": (lambda: dict(
        optimizer=fastnn.Adam(0.01), epochs=8, batch_size=32, validation_split=0.2,
        callbacks=[StepLR(3, 0.5), ReduceLROnPlateau(patience=1, factor=0.5),
                   EarlyStopping(patience=2, restore_best_weights=True)]), True),
    "sgd": (lambda: dict(optimizer=fastnn.SGD(0.1), epochs=3, batch_size=32), False),
    "adamw": (lambda: dict(optimizer=fastnn.AdamW(0.01), epochs=3, batch_size=50), False),
    "rmsprop": (lambda: dict(optimizer=fastnn.RMSprop(0.01, momentum=0.5), epochs=3,
                             batch_size=16), False),
    # Clipping acts on the summed gradient: clipping each rank's share would differ.
    "sgd_clip_norm": (lambda: dict(optimizer=fastnn.SGD(0.2, clip_norm=0.8), epochs=3,
                                   batch_size=32), False),
    "adam_clip_value": (lambda: dict(optimizer=fastnn.Adam(0.01, clip_value=0.02), epochs=3,
                                     batch_size=32), True),
}


def save_result(out, name, net, history):
    np.savez(os.path.join(out, name), params=net.get_params(),
             history=json.dumps(history.history), epochs=json.dumps(history.epoch))


def equal(out, run, dtype, n, batch_size=None):
    """Distributed fit on every rank; rank 0 also trains the same in one process."""
    X, y = data(int(n))
    kwargs, dropout = RUNS[run]
    fit_args = kwargs()
    if batch_size is not None:
        fit_args["batch_size"] = int(batch_size)
    net = network(dtype, dropout)
    history = net.fit(X, y, verbose=0, distributed="mpi", **fit_args)
    save_result(out, f"rank{RANK}.npz", net, history)
    if RANK == 0:
        fit_args = kwargs()
        if batch_size is not None:
            fit_args["batch_size"] = int(batch_size)
        single = network(dtype, dropout)
        history = single.fit(X, y, verbose=0, **fit_args)
        save_result(out, "single.npz", single, history)


def communicator(out):
    """An explicit communicator (a duplicate of COMM_WORLD) and a numpy backend run."""
    X, y = data()
    comm = COMM.Dup()
    net = network()
    net.fit(X, y, epochs=2, batch_size=40, optimizer=fastnn.SGD(0.1, momentum=0.5),
            verbose=0, distributed=comm)
    ref = fastnn.Network([fastnn.Dense(12, 16, "relu"), fastnn.Dense(16, 8, "tanh"),
                          fastnn.Dense(8, 4)], seed=5, dtype="float64", backend="numpy")
    ref.fit(X, y, epochs=2, batch_size=40, optimizer=fastnn.SGD(0.1, momentum=0.5),
            verbose=0, distributed=comm)
    np.savez(os.path.join(out, f"rank{RANK}.npz"), params=net.get_params(),
             numpy_params=ref.get_params())


def errors(out):
    """Every way one rank fails; each rank records what it raised."""
    X, y = data()
    seen = {}

    bad = X.copy()
    if RANK == 1:
        bad[3, 2] = np.nan                    # only rank 1 has bad input
    try:
        network().fit(bad, y, verbose=0, distributed="mpi")
    except ValueError as exc:
        seen["bad_input"] = str(exc)

    class FailOnRank0:
        def on_epoch_end(self, net, logs):
            if RANK == 0 and logs["epoch"] == 1:
                raise KeyError("callback failed")

    try:
        network().fit(X, y, epochs=4, verbose=0, distributed="mpi", callbacks=[FailOnRank0()])
    except KeyError as exc:
        seen["callback"] = str(exc)

    diverging = fastnn.Network([fastnn.Dense(12, 4)], dtype="float64")   # linear: it overflows
    try:
        diverging.fit(X * 1e200, y, epochs=3, optimizer=fastnn.SGD(1e6), verbose=0,
                      distributed="mpi")
    except FloatingPointError as exc:
        seen["diverged"] = str(exc)
    seen["diverged_finite"] = bool(np.isfinite(diverging.get_params()).all())

    class TamperOnRank1:
        def on_epoch_end(self, net, logs):
            if RANK == 1 and logs["epoch"] == 0:
                net.layers[0].W[0, 0] += 1.0

    try:
        network().fit(X, y, epochs=2, verbose=0, distributed="mpi", callbacks=[TamperOnRank1()])
    except DistributedError as exc:
        seen["replicas"] = str(exc)
    np.savez(os.path.join(out, f"rank{RANK}.npz"), seen=json.dumps(seen),
             diverged_params=diverging.get_params())


def files(out):
    """Only rank 0 prints and writes; resume works on every rank."""
    X, y = data()
    net = network()
    net.fit(X, y, epochs=2, verbose=1, distributed="mpi",
            checkpoint=os.path.join(out, f"ckpt{RANK}.npz"))
    fastnn.save(net, os.path.join(out, f"model{RANK}.npz"))


def train(out, epochs, checkpoint, resume, pid_dir=None):
    """Long-ish training with a checkpoint every epoch (the kill and resume test)."""
    if pid_dir:
        with open(os.path.join(pid_dir, f"pid{RANK}"), "w") as handle:
            handle.write(str(os.getpid()))
    X, y = data(2000)
    net = network(dropout=True)

    class Slow:                               # time for the test to kill a rank mid-run
        def on_epoch_end(self, net, logs):
            if pid_dir:
                time.sleep(0.3)

    history = net.fit(X, y, epochs=int(epochs), batch_size=64, optimizer=fastnn.Adam(0.003),
                      verbose=0, distributed="mpi", checkpoint=checkpoint,
                      resume=None if resume == "-" else resume, callbacks=[Slow()])
    save_result(out, f"rank{RANK}.npz", net, history)


def cache(out):
    """After a warm run, a fresh launch loads the compiled step from numba's cache."""
    from fastnn.kernels import step as kt

    X, y = data()
    network().fit(X, y, epochs=1, verbose=0, distributed="mpi")
    stats = kt.train_steps.stats
    np.savez(os.path.join(out, f"rank{RANK}.npz"), hits=sum(stats.cache_hits.values()),
             misses=sum(stats.cache_misses.values()))


def own_rows(out, ranks):
    """Memory maps of which every rank may read only the rows it trains on.

    ``shuffle=False`` makes the rows of each rank's shares known: batch ``k``
    of ``r`` rows starting at ``start`` gives rank ``i`` the rows ``start +
    r i // N`` up to ``start + r (i + 1) // N``. Each rank's files hold the
    true rows there and wrong ones (features shifted by 100, labels rotated)
    everywhere else, so a rank that read a row of another's share would
    leave the one-process result.
    """
    ranks, n, batch = int(ranks), 203, 32
    X, y = data(n)
    own = np.zeros(n, bool)
    for start in range(0, n, batch):
        r = min(batch, n - start)
        own[start + r * RANK // ranks:start + r * (RANK + 1) // ranks] = True
    Xr, yr = X.copy(), y.copy()
    Xr[~own] += 100.0
    yr[~own] = (yr[~own] + 1) % 4
    np.save(os.path.join(out, f"X{RANK}.npy"), Xr)
    np.save(os.path.join(out, f"y{RANK}.npy"), yr)
    Xm = np.load(os.path.join(out, f"X{RANK}.npy"), mmap_mode="r")
    ym = np.load(os.path.join(out, f"y{RANK}.npy"), mmap_mode="r")
    fit_args = dict(epochs=3, batch_size=batch, shuffle=False, verbose=0)
    net = network()
    history = net.fit(Xm, ym, distributed="mpi", optimizer=fastnn.SGD(0.05, momentum=0.9),
                      **fit_args)
    save_result(out, f"rank{RANK}.npz", net, history)
    np.save(os.path.join(out, f"own{RANK}.npy"), own)
    if RANK == 0:
        single = network()
        history = single.fit(X, y, optimizer=fastnn.SGD(0.05, momentum=0.9), **fit_args)
        save_result(out, "single.npz", single, history)


SCENARIOS = {"own_rows": own_rows, "equal": equal, "communicator": communicator, "errors": errors, "files": files,
             "train": train, "cache": cache}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](*sys.argv[2:])
