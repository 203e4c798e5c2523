"""fastnn, with the numba kernels or the numpy reference backend."""

import time

import numpy as np

from .common import OPTIMIZERS, initial_params, predict_result, summarize


def _optimizer(fastnn, name, clip_norm=None, clip_value=None):
    hp = OPTIMIZERS[name]
    if hp["kind"] == "adam":
        return fastnn.Adam(lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                           clip_norm=clip_norm, clip_value=clip_value)
    return fastnn.SGD(lr=hp["lr"], momentum=hp["momentum"], clip_norm=clip_norm,
                      clip_value=clip_value)


def sample_weights(n, seed):
    """``--sample-weight``: weights uniform in [0.5, 1.5), the same in every process."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(6)[5]).uniform(0.5, 1.5, n)


def run(config, data, opts, backend, threads):
    """Train one epoch in one ``fit`` call, then ``opts.epochs`` more in a second.

    Without ``--warmup`` there is no ``fastnn.warmup()``: the first ``fit``
    call's wall time carries numba's start-up and the kernels' compile or
    cache-load cost, whether it falls in the step loop or in fit's input
    checks (the first numba call of the process pays it). Steady epochs are fit's own
    ``History.history["seconds"]`` (each epoch's step loop; the optimizer and
    its state carry over between the calls); the wall time of that call is
    kept as ``fit_wall`` and what it spent outside the epochs as
    ``fit_overhead``.

    ``threads`` goes to ``Network(threads=...)``: None is fastnn's default
    (the team size it measures as fastest, re-checked as it trains), an int
    pins it.
    """
    start = time.perf_counter()
    import fastnn
    import_seconds = time.perf_counter() - start
    warmup_seconds = None
    if getattr(opts, "warmup", False):
        warmup_seconds = fastnn.warmup(dtypes=("float32",))

    sizes = config.sizes
    layers = [fastnn.Dense(a, b, "relu") for a, b in zip(sizes[:-2], sizes[1:-1])]
    layers.append(fastnn.Dense(sizes[-2], sizes[-1]))
    net = fastnn.Network(layers, loss="cross_entropy", dtype="float32", seed=opts.seed,
                         backend=backend, threads=threads)
    net.set_params(np.concatenate([a.ravel() for pair in initial_params(sizes, opts.seed)
                                   for a in pair]))
    optimizer = _optimizer(fastnn, opts.optimizer, getattr(opts, "clip_norm", None),
                           getattr(opts, "clip_value", None))
    weights = sample_weights(len(data["y_train"]), opts.seed) \
        if getattr(opts, "sample_weight", False) else None

    def fit(epochs):
        start = time.perf_counter()
        history = net.fit(data["X_train"], data["y_train"], epochs=epochs,
                          batch_size=config.batch_size, optimizer=optimizer, shuffle=True,
                          verbose=0, sample_weight=weights)
        return history, time.perf_counter() - start

    first, first_wall = fit(1)
    steady, steady_wall = fit(opts.epochs)
    seconds = steady.history["seconds"]
    result = summarize([first_wall] + seconds)
    result.update(
        import_seconds=import_seconds, warmup_seconds=warmup_seconds,
        first_epoch_loop=first.history["seconds"][0],
        fit_wall=steady_wall, fit_overhead=steady_wall - sum(seconds),
        train_loss=steady.history["loss"][-1], sample_weight=weights is not None,
        clip_norm=optimizer.clip_norm, clip_value=optimizer.clip_value,
        accuracy=float(np.mean(net.predict(data["X_test"]) == data["y_test"])),
        threads="default (measured)" if threads is None else threads)
    choice = getattr(net, "_choice", None)
    if backend == "numba" and choice is not None:
        # What the measured choice saw: seconds per step for each team size.
        result["seconds_per_step_by_threads"] = {str(k): v for k, v in choice.per_step.items()}
    result.update(predict_result(lambda: net.predict(data["X_predict"]), opts.repeats))
    return result


def run_numba(config, data, opts):
    """fastnn's numba kernels with ``--threads`` if given, else fastnn's default."""
    return run(config, data, opts, "numba", opts.threads)


def run_numba_one_thread(config, data, opts):
    """fastnn's numba kernels pinned to one thread (``Network(threads=1)``)."""
    return run(config, data, opts, "numba", 1)


def run_numpy(config, data, opts):
    return run(config, data, opts, "numpy", opts.threads)
