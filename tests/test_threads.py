"""fastnn's own threads: the same bits for any team size, and the team size that is fastest now."""

import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn._threads import Team, ThreadChoice

OPTIMIZERS = {
    "sgd": lambda: fastnn.SGD(0.05),
    "sgd_wd": lambda: fastnn.SGD(0.05, weight_decay=1e-3),
    "momentum": lambda: fastnn.SGD(0.05, momentum=0.9),
    "nesterov": lambda: fastnn.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "adam": lambda: fastnn.Adam(0.01),
    "adamw": lambda: fastnn.AdamW(0.01),
    "rmsprop": lambda: fastnn.RMSprop(0.01, momentum=0.5),
}


def train(threads, optimizer, dtype="float32", dropout=True, widths=(257, 130, 67, 5), n=301,
          batch_size=37, weights=False, loss="cross_entropy"):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, widths[0]))
    if loss == "cross_entropy":
        y = rng.integers(0, widths[-1], n)
    else:
        y = rng.standard_normal((n, widths[-1]))
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        layers.append(fastnn.Dense(a, b, "identity" if last else "relu"))
        if dropout and not last:
            layers.append(fastnn.Dropout(0.2))
    net = fastnn.Network(layers, loss=loss, dtype=dtype, seed=1, threads=threads)
    w = rng.uniform(0.5, 2.0, n) if weights else None
    history = net.fit(X, y, epochs=3, batch_size=batch_size, optimizer=OPTIMIZERS[optimizer](),
                      verbose=0, sample_weight=w)
    return net.get_params(), history.history


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_threads_give_the_bits_of_one(optimizer, dtype):
    one, history_one = train(1, optimizer, dtype)
    two, history_two = train(2, optimizer, dtype)
    np.testing.assert_array_equal(one, two)
    assert history_one["loss"] == history_two["loss"]
    assert history_one["accuracy"] == history_two["accuracy"]


@pytest.mark.parametrize("case", [
    dict(widths=(784, 128, 64, 10), batch_size=16),
    dict(widths=(784, 1024, 1024, 10), batch_size=64, n=130, dropout=False),
    dict(widths=(3, 2), batch_size=1, n=5),
    dict(widths=(64, 128, 1), batch_size=50, loss="mse", weights=True),
])
def test_same_bits_for_the_benchmark_shapes_and_edge_cases(case):
    for optimizer in ("sgd", "adam"):
        np.testing.assert_array_equal(train(1, optimizer, **case)[0],
                                      train(2, optimizer, **case)[0])


def test_measured_thread_count_gives_the_bits_of_one():
    """threads=None picks the team size by timing; the result cannot depend on it."""
    np.testing.assert_array_equal(train(None, "adam")[0], train(1, "adam")[0])


def test_same_bits_while_another_process_loads_the_cpu():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = train(None, "momentum")[0]
    finally:
        busy.kill()
        busy.wait()
    np.testing.assert_array_equal(loaded, train(1, "momentum")[0])


def test_loss_and_gradients_and_predict_do_not_depend_on_threads():
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((50, 20)), rng.integers(0, 3, 50)
    nets = [fastnn.Network([fastnn.Dense(20, 200, "tanh"), fastnn.Dense(200, 3)], seed=2,
                           threads=t) for t in (1, 2)]
    a, b = (net.loss_and_gradients(X, y) for net in nets)
    assert a[0] == b[0]
    for (dW_a, db_a), (dW_b, db_b) in zip(a[1], b[1]):
        np.testing.assert_array_equal(dW_a, dW_b)
        np.testing.assert_array_equal(db_a, db_b)


# ---- how many threads -------------------------------------------------------------

def test_pinned_count_is_always_used():
    choice = ThreadChoice(pinned=3, max_threads=2)
    for _ in range(5):
        assert choice.next()[0] == 3
        choice.record(3, 0.01, 10)


def drive(choice, seconds_per_step, blocks):
    """Run ``blocks`` blocks with the given per-size cost; return the sizes used."""
    used = []
    for _ in range(blocks):
        n, seconds = choice.next()
        steps = choice.steps_for(n, seconds)
        choice.record(n, steps * seconds_per_step[n], steps)
        used.append(n)
    return used


def test_the_faster_size_is_used_and_the_other_rechecked_less_and_less():
    choice = ThreadChoice(max_threads=2)
    used = drive(choice, {1: 1e-3, 2: 4e-3}, 1000)       # two threads 4x slower (a busy core)
    # Each size measured first: its start-up block (not counted), then blocks until they
    # add up to MEASURED seconds (here: one step, then one block's worth).
    assert used[:5] == [2, 2, 2, 1, 1]
    probes = [i for i, n in enumerate(used) if n == 2][3:]
    assert len(probes) >= 4 and len(probes) <= 0.02 * len(used)
    gaps = np.diff(probes)
    assert (gaps[1:] >= gaps[:-1]).all() and gaps[-1] > 3 * gaps[0]     # backing off


def test_a_size_is_measured_over_enough_steps_before_it_is_judged():
    """A single slow first step (cold caches) must not condemn a size for the whole run."""
    choice = ThreadChoice(max_threads=2)
    cost = {1: 1e-3, 2: 5e-4}
    seen = []
    for block in range(40):
        n, seconds = choice.next()
        steps = choice.steps_for(n, seconds)
        per_step = cost[n] * (20 if (n == 2 and len(seen) == 1) else 1)   # a 20x first step
        choice.record(n, steps * per_step, steps)
        seen.append(n)
    assert choice.per_step[2] < choice.per_step[1]
    assert seen[-10:].count(2) >= 9          # (one re-check of the other size allowed)


def test_a_slowdown_triggers_a_recheck_and_a_switch():
    choice = ThreadChoice(max_threads=2)
    drive(choice, {1: 2e-3, 2: 1e-3}, 50)                 # two threads faster
    used = drive(choice, {1: 2e-3, 2: 8e-3}, 60)          # then the other core gets busy
    assert used[-20:].count(1) >= 18


def test_team_runs_workers_in_parallel_and_reports_their_errors():
    team = Team()
    seen = []
    assert team.run(3, lambda w: seen.append(w) or w * 10) == 0
    assert sorted(seen) == [0, 1, 2]

    def fail_on_1(worker):
        if worker == 1:
            raise KeyError("worker 1 failed")
        return worker

    with pytest.raises(KeyError, match="worker 1 failed"):
        team.run(2, fail_on_1)
    assert team.run(2, lambda w: w) == 0                  # still usable afterwards


def test_threads_must_be_positive_integers():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be None or a positive integer"):
            fastnn.Network([fastnn.Dense(2, 2)], threads=bad)


def test_time_per_block_is_bounded():
    """A block is about BLOCK seconds, so the choice reacts within a fraction of a second."""
    choice = ThreadChoice(max_threads=2)
    drive(choice, {1: 1e-4, 2: 2e-4}, 10)
    n, seconds = choice.next()
    assert choice.steps_for(n, seconds) * {1: 1e-4, 2: 2e-4}[n] == pytest.approx(seconds,
                                                                                rel=0.05)


@pytest.mark.parametrize("threads", [1, 2])
def test_clip_norm_over_several_update_chunks_is_the_global_norm(threads):
    """A network larger than kernels.step.UPDATE_CHUNK: the norm must span every chunk."""
    from fastnn.kernels.step import UPDATE_CHUNK

    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((64, 300)), rng.integers(0, 4, 64)
    nets = [fastnn.Network([fastnn.Dense(300, 120, "tanh"), fastnn.Dense(120, 4)], seed=1,
                           dtype="float64", backend=backend, threads=threads)
            for backend in ("numba", "numpy")]
    assert nets[0].n_params > 2 * UPDATE_CHUNK
    for net in nets:
        net.fit(X, y, epochs=2, batch_size=16, optimizer=fastnn.Adam(0.01, clip_norm=0.05),
                verbose=0)
    np.testing.assert_allclose(nets[0].get_params(), nets[1].get_params(), rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("clip", [dict(clip_norm=0.1), dict(clip_value=0.01)])
def test_clipped_training_has_the_same_bits_on_two_threads(clip):
    def run(threads):
        rng = np.random.default_rng(6)
        X, y = rng.standard_normal((90, 300)), rng.integers(0, 4, 90)
        net = fastnn.Network([fastnn.Dense(300, 130, "relu"), fastnn.Dense(130, 4)], seed=2,
                             threads=threads)
        net.fit(X, y, epochs=2, batch_size=20, optimizer=fastnn.SGD(0.05, **clip), verbose=0)
        return net.get_params()

    np.testing.assert_array_equal(run(1), run(2))
