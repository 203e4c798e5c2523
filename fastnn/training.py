"""The training loop: epochs of mini-batch steps, and the strategy that runs them.

:meth:`fastnn.Network.fit` checks its inputs and calls :func:`fit` here. One
loop serves every kind of run; what differs between one process and several
MPI ranks is a *strategy* object (``SingleProcess`` here,
``fastnn.distributed.MPIStrategy``): which rows of a batch this process
computes, how gradients and metrics are combined, how errors are agreed on,
and who prints and writes files.

An epoch is ceil(n / batch_size) steps over a fresh shuffle; the last, partial
batch counts.
"""

import contextlib
import time
import warnings

import numpy as np

from . import data as _data
from .kernels import forward as _kt
from .progress import Progress


class History:
    """Per-epoch training records returned by :meth:`fastnn.Network.fit`.

    Attributes
    ----------
    history : dict of str to list
        One value per epoch under each name (``loss``, ``accuracy``,
        ``val_loss``, ``val_accuracy``, ``lr``, ``seconds``,
        ``samples_per_second``).
    epoch : list of int
        The 0-based index of each recorded epoch.
    nonfinite : dict, optional
        ``{"epoch", "step"}`` of a divergence, when one stopped training.
    """

    def __init__(self, keys=()):
        self.history = {key: [] for key in keys}
        self.epoch = []

    def append(self, epoch, logs):
        """Record one epoch: ``logs`` maps names to values (its ``"epoch"`` key is skipped)."""
        self.epoch.append(epoch)
        for key, value in logs.items():
            if key != "epoch":
                self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class SingleProcess:
    """The strategy of a run in one process: every row here, nothing to combine."""

    rank = 0
    size = 1
    writer = True

    def kernel_args(self, dtype):
        """``(rank, size, allreduce address, comm, datatype, op)`` for the step kernel."""
        return 0, 1, 0, 0, 0, 0

    def broadcast(self, arrays):
        """Make every process's ``arrays`` equal to the writer's (in place)."""

    def agree(self, value):
        """The writer's ``value`` (a Python object) on every process."""
        return value

    def sum(self, array):
        """``array`` summed over the processes, in place."""
        return array

    def shard(self, n):
        """This process's share ``(start, stop)`` of ``n`` rows."""
        return 0, n

    @contextlib.contextmanager
    def collective(self):
        """A block after which every process has either succeeded or raised."""
        yield

    def check_replicas(self, theta, epoch):
        """Raise if the processes' parameters differ (after ``epoch`` epochs)."""


def get_strategy(distributed):
    """The strategy for ``Network.fit(distributed=...)``: None, "mpi" or an mpi4py communicator."""
    if distributed is None:
        return SingleProcess()
    from .distributed import MPIStrategy

    return MPIStrategy.from_argument(distributed)


HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                "samples_per_second")


def fit(net, data, *, epochs, batch_size, optimizer, shuffle, verbose, validation, callbacks,
        on_nonfinite, checkpoint, checkpoint_every, resume, strategy):
    """Train ``net`` for ``epochs`` epochs; the body of :meth:`fastnn.Network.fit`.

    Every argument has been checked by the caller. ``data`` and
    ``validation`` (or None) are :class:`fastnn.data.TrainingData`;
    ``epochs`` is the total (a resumed run continues to it). Bad input that
    the kernels find while reading a memory map raises
    :class:`fastnn.data.DataError` after restoring the network, its
    optimizer and its shuffling state to what they were at the call.
    """
    theta = net._sync_params()
    optimizer.init_state(theta.size, net.dtype)
    start_state = (theta.copy(), optimizer.state_dict(), optimizer.lr,
                   net._shuffle_rng.bit_generator.state, net.history)
    try:
        return _fit(net, data, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                    shuffle=shuffle, verbose=verbose, validation=validation,
                    callbacks=callbacks, on_nonfinite=on_nonfinite, checkpoint=checkpoint,
                    checkpoint_every=checkpoint_every, resume=resume, strategy=strategy)
    except _data.DataError:
        params, state, lr, rng_state, history = start_state
        theta[...] = params
        optimizer.load_state_dict(state)
        optimizer.lr = lr
        net._shuffle_rng.bit_generator.state = rng_state
        net.history = history
        raise


def _fit(net, data, *, epochs, batch_size, optimizer, shuffle, verbose, validation, callbacks,
         on_nonfinite, checkpoint, checkpoint_every, resume, strategy):
    from .checkpoint import restore_checkpoint, save_checkpoint

    theta = net._theta
    keys = [k for k in HISTORY_KEYS if (k != "accuracy" and k != "val_accuracy")
            or net.loss.classification]
    keys = [k for k in keys if validation is not None or not k.startswith("val_")]
    history = History(keys)
    for callback in callbacks:
        if hasattr(callback, "on_train_begin"):
            callback.on_train_begin(net)
    first_epoch = 0
    if resume is not None:
        with strategy.collective():
            first_epoch = restore_checkpoint(resume, net, optimizer, callbacks, history,
                                             batch_size=batch_size, n_samples=data.n,
                                             shuffle=shuffle)
    strategy.broadcast([theta, optimizer.state["s1"], optimizer.state["s2"]])
    _agree_rng(net, strategy)
    steps = -(-data.n // batch_size)
    if data.X.mapped:
        _data.advise(data.X.array, "random" if shuffle is True else "normal")
    run = EpochRunner(net, data, batch_size, steps, optimizer, strategy, net._thread_choice(),
                      readahead=data.X.mapped and shuffle == "block")
    progress = Progress(verbose if strategy.writer else 0, epochs)
    net.stop_training = False
    net.history = history
    net._writer = strategy.writer            # fastnn.save writes on the writer only
    for epoch in range(first_epoch, epochs):
        start = time.perf_counter()
        order = _data.epoch_order(net._shuffle_rng, data.n, shuffle, data.X.row_bytes,
                                  batch_size)
        progress.start_epoch(epoch, steps)
        failed_step = run.epoch(order, progress, start)
        if failed_step is not None:
            progress.close()
            history.nonfinite = {"epoch": epoch, "step": failed_step}
            message = (f"training diverged: non-finite loss, activations or weights at "
                       f"epoch {epoch + 1}, step {failed_step + 1}; the network keeps "
                       f"the last finite weights (from before that step)")
            values = data.X.csr[2] if data.X.sparse else data.X.array
            big = 0.0 if data.X.mapped or not values.size else float(np.abs(values).max())
            if big > 1e15:
                message += f"; note max |X| = {big:.3g}, too large: scale the inputs"
            if on_nonfinite == "raise":
                error = FloatingPointError(message)
                error.history = history
                if strategy.size > 1:
                    error.fastnn_rank = 0          # every rank diverged at this step
                raise error
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            break
        seconds = time.perf_counter() - start
        with strategy.collective():
            logs = {"epoch": epoch, "loss": run.mean_loss()}
            if net.loss.classification:
                logs["accuracy"] = run.accuracy()
            if validation is not None:
                logs.update({"val_" + k: v for k, v in metrics(net, validation,
                                                                strategy).items()})
            logs["lr"] = optimizer.lr
            logs["seconds"] = strategy.agree(seconds)
            logs["samples_per_second"] = (data.n / logs["seconds"] if logs["seconds"] > 0
                                          else float("inf"))
            history.append(epoch, logs)
            progress.end_epoch(logs)
            for callback in callbacks:
                callback.on_epoch_end(net, logs)
            if strategy.writer and checkpoint is not None and (
                    (epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs
                    or net.stop_training):
                save_checkpoint(checkpoint, net, optimizer, callbacks, history,
                                epoch=epoch + 1, batch_size=batch_size, n_samples=data.n,
                                shuffle=shuffle)
        strategy.check_replicas(theta, epoch + 1)
        if net.stop_training:
            break
    progress.close()
    for callback in callbacks:
        if hasattr(callback, "on_train_end"):
            callback.on_train_end(net)
    return history


def _agree_rng(net, strategy):
    """Every process shuffles as the writer does (seeds may differ between ranks)."""
    state = strategy.agree(net._shuffle_rng.bit_generator.state)
    net._shuffle_rng.bit_generator.state = state


METRIC_ROWS = 65536     # rows forwarded at a time by metrics (bounded memory for maps)
MAX_BLOCK_STEPS = 4096  # steps in one call of the backend at most,
MAX_BLOCK_ROWS = 65536  # and rows (unless one batch is more): the order's stretch is this long


def metrics(net, data, strategy):
    """Mean loss (and accuracy) of ``net`` over ``data``, each process doing its shard.

    Weighted by the sample weights when ``data`` has them; the rows go
    through the network ``METRIC_ROWS`` at a time.
    """
    lo, hi = strategy.shard(data.n)
    totals = np.zeros(3)                # weighted loss sum, weighted correct, total weight
    error = None
    try:
        for start in range(lo, hi, METRIC_ROWS):
            chunk = data.rows(start, min(hi, start + METRIC_ROWS))
            totals += net._metric_sums(net._output(chunk.X, overflow="propagate"), chunk)
    except Exception as exc:            # raised after the sum, which every rank enters
        error = exc
    strategy.sum(totals)
    if error is not None:
        raise error
    result = {"loss": float(totals[0] / totals[2])}
    if net.loss.classification:
        result["accuracy"] = float(totals[1] / totals[2])
    return result


class EpochRunner:
    """Runs one epoch's steps through the backend in timed blocks, with progress and rollback.

    The backend runs a block of steps per call, on as many threads as
    ``net``'s :class:`fastnn._threads.ThreadChoice` says (each block is
    timed, so the choice follows the machine's load; the results do not
    depend on it). The parameters and optimizer state are copied at the
    start of the epoch. A block stops at a step whose forward pass or loss is
    not finite; if the weights (or the optimizer state) are then not finite,
    or are not at the end of the epoch, the copy is restored and the steps
    are replayed one at a time (the kernels are deterministic) to find the
    first step after which they are not, whose update is then undone: the
    network ends on the last finite weights. Under a distributed strategy
    every process makes calls of the same length (rank 0's) and takes the
    same decisions at the same steps.
    """

    def __init__(self, net, data, batch_size, steps, optimizer, strategy, choice,
                 readahead=False):
        self.net, self.data, self.strategy, self.choice = net, data, strategy, choice
        self.readahead = _data.block_rows(data.X.row_bytes, batch_size) if readahead \
            else 0
        self.read_until = 0               # rows of the epoch's order asked for ahead
        self.windows_done = 0             # windows of blocks handed back to the OS
        self.batch_size, self.steps, self.optimizer = batch_size, steps, optimizer
        self.theta = net._theta
        # One block's step losses and correct counts (the epoch keeps running sums, so
        # nothing a fit holds grows with the rows).
        block = min(steps, MAX_BLOCK_STEPS, max(1, MAX_BLOCK_ROWS // batch_size))
        self.step_losses = np.empty(block, np.float64)
        self.step_correct = np.zeros(block, np.int64)
        self.loss_sum = self.correct_sum = self.seen = 0

    def _rows_of(self, begin, end):
        """The rows of steps ``begin .. end - 1`` (every batch full but the epoch's last)."""
        return min(end * self.batch_size, self.data.n) - begin * self.batch_size

    def _add_block(self, begin, end):
        """Add steps ``begin .. end - 1`` (summed over processes) to the epoch's sums."""
        k = end - begin
        self.strategy.sum(self.step_losses[:k])
        self.strategy.sum(self.step_correct[:k])
        rows = np.full(k, self.batch_size, np.float64)
        rows[-1] = self._rows_of(end - 1, end)
        # In step order, one step at a time: the same sum whatever the blocks were.
        for value in (self.step_losses[:k] * rows).tolist():
            self.loss_sum += value
        self.correct_sum += int(self.step_correct[:k].sum())
        self.seen += self._rows_of(begin, end)

    def _call(self, order, begin, end, threads=1):
        """Steps ``begin .. end - 1``: the backend gets their stretch of the epoch's order."""
        rows = order.rows(begin * self.batch_size, end * self.batch_size)
        completed = self.net.backend.train_steps(
            self.net._spec, self.theta, self.data, rows, self.batch_size, 0, end - begin,
            self.optimizer, self.step_losses, self.step_correct,
            self.strategy, threads, first_step=begin)
        self.optimizer.state["t"] += completed
        return completed

    def _snapshot(self):
        state = self.optimizer.state
        return self.theta.copy(), state["s1"].copy(), state["s2"].copy(), state["t"]

    def _restore(self, snap):
        state = self.optimizer.state
        self.theta[...], state["s1"][...], state["s2"][...] = snap[:3]
        state["t"] = snap[3]

    def _finite(self):
        state = self.optimizer.state
        return (_kt.all_finite(self.theta) and _kt.all_finite(state["s1"])
                and _kt.all_finite(state["s2"]))

    def epoch(self, order, progress, start):
        """Run every step; return None, or the index of the step that failed."""
        snap = self._snapshot()
        done = 0
        shown = start
        self.read_until = self.windows_done = 0
        self.loss_sum = self.correct_sum = self.seen = 0
        while done < self.steps:
            threads, seconds = self.choice.next()
            per_call = self.strategy.agree(min(self.step_losses.shape[0],
                                               self.choice.steps_for(threads, seconds)))
            stop = min(self.steps, done + per_call)
            if self.readahead:
                self._read_ahead(order, done, stop)
            began = time.perf_counter()
            completed = self._call(order, done, stop, threads)
            self.choice.record(threads, time.perf_counter() - began, completed)
            if completed < stop - done:
                if self._finite():
                    return done + completed          # that step made no update
                return self._replay(order, snap, done + completed)
            self._add_block(done, stop)
            done = stop
            now = time.perf_counter()
            if progress.wants_updates and (now - shown >= 0.1 or done == self.steps):
                shown = now
                progress.update(done, self.loss_sum / self.seen,
                                self.seen / max(now - start, 1e-9))
        if not self._finite():
            return self._replay(order, snap, self.steps - 1)
        return None

    def _read_ahead(self, order, done, stop):
        """``shuffle="block"`` from a memory map: ask the OS for the blocks up to one window
        past step ``stop``, and hand back those of the windows before step ``done``."""
        window = self.readahead * _data.BLOCKS_PER_BUFFER
        until = min(order.n, stop * self.batch_size + window)
        if until > self.read_until:
            rows = order.rows(self.read_until, until)
            _data.will_need(self.data.X.array, _data.blocks_of(rows, self.readahead))
            self.read_until = until
        finished = done * self.batch_size // window       # windows every step has passed
        if finished > self.windows_done:
            rows = order.rows(self.windows_done * window, finished * window)
            _data.done_with(self.data.X.array, _data.blocks_of(rows, self.readahead))
            self.windows_done = finished

    def _replay(self, order, snap, last):
        """From the epoch's start, the first step (<= ``last``) after which the state is not finite."""
        self._restore(snap)
        for step in range(last + 1):
            before = self._snapshot()
            if self._call(order, step, step + 1) < 1 or not self._finite():
                self._restore(before)
                return step
            self.strategy.sum(self.step_losses[:1])
            self.strategy.sum(self.step_correct[:1])
        return last

    def mean_loss(self):
        return float(self.loss_sum / self.seen)

    def accuracy(self):
        """Running accuracy over the epoch's batches, each before its update."""
        net = self.net
        per_sample = net.n_outputs if net.loss.name == "binary_cross_entropy" else 1
        return float(self.correct_sum / (self.seen * per_sample))
