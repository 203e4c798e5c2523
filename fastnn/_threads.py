"""Threads: the team that runs the kernels, how many of them, and the BLAS pools.

fastnn runs its kernels on a team of threads of its own (``kernels.team``):
each thread calls single-threaded BLAS on its tiles of a step. So the BLAS
libraries' own pools are capped at one thread while fastnn computes
(``blas_threads``), and a :class:`Team` keeps helper threads alive between
calls.

How many threads a run uses is measured, not assumed (:class:`ThreadChoice`):
a pool that waits for its slowest thread runs slower, not faster, when other
work takes a core, so the team size that is fastest *now* is chosen by
timing blocks of steps and re-checked as the run goes. Results do not depend
on the choice: the work is cut into the same tiles for any team size.
"""

import os
import queue
import threading
from contextlib import contextmanager

_controller = None


def _get_controller():
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  load numba's BLAS before scanning
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def check_threads(threads):
    """Validate a ``threads`` setting: ``None`` (measured) or an int >= 1."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be None or a positive integer, got {threads!r}")
    return threads


@contextmanager
def blas_threads(threads):
    """Limit every loaded BLAS to ``threads`` threads inside the block (None: leave them)."""
    if threads is None:
        yield
        return
    with _get_controller().limit(limits=threads, user_api="blas"):
        yield


def available_cores():
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Team:
    """Helper threads that run a kernel together with the calling thread.

    ``run(n, call)`` calls ``call(worker)`` for ``worker = 1 .. n-1`` on
    helper threads (started on first use and kept) and ``call(0)`` here, and
    returns what ``call(0)`` returned once every one has finished. The calls
    release the GIL (nogil kernels), so they run in parallel.
    """

    def __init__(self):
        self._threads = []
        self._jobs = []
        self._done = queue.SimpleQueue()

    def _serve(self, jobs):
        while True:
            call, worker = jobs.get()
            try:
                call(worker)
            except BaseException as exc:       # reported to the caller of run()
                self._done.put(exc)
            else:
                self._done.put(None)

    def _ensure(self, helpers):
        while len(self._threads) < helpers:
            jobs = queue.SimpleQueue()
            thread = threading.Thread(target=self._serve, args=(jobs,), daemon=True,
                                      name=f"fastnn-worker-{len(self._threads) + 1}")
            thread.start()
            self._threads.append(thread)
            self._jobs.append(jobs)

    def run(self, n, call):
        if n == 1:
            return call(0)
        self._ensure(n - 1)
        for worker in range(1, n):
            self._jobs[worker - 1].put((call, worker))
        try:
            result = call(0)
        finally:
            errors = [self._done.get() for _ in range(n - 1)]
        for error in errors:
            if error is not None:
                raise error
        return result


_LOCAL = threading.local()


def team():
    """This thread's :class:`Team` (each thread that trains has helpers of its own)."""
    if getattr(_LOCAL, "team", None) is None:
        _LOCAL.team = Team()
    return _LOCAL.team


class ThreadChoice:
    """How many threads the next block of steps uses: fixed, or the fastest measured now.

    With ``pinned`` (``Network(threads=N)``) always N. Otherwise the
    candidates are 1 .. ``max_threads``: every block of steps is timed, and
    a team size's seconds per step are those of its last ``HISTORY`` blocks
    together (total seconds over total steps; its first block, with the
    start-up costs, left out). A size counts as measured once those blocks
    add up to ``MEASURED`` seconds: until then it is tried first, with blocks
    sized from what was seen so far. The fastest measured size is used,
    and each other size tried again for one block after
    ``RECHECK`` seconds of training, a wait that doubles (up to
    ``MAX_RECHECK``) each time a probe confirms the choice and starts over
    when the choice changes. A probe comes sooner when the current size's
    average has slowed to 1.5 times what it was at the last probe (the
    machine's load changed).

    Parameters
    ----------
    pinned : int or None
    max_threads : int
    """

    BLOCK = 0.03          # seconds of steps per block
    PROBE = 0.03          # seconds of a probing block (as long as a block: short ones misjudged)
    RECHECK = 1.0         # seconds of training between probes, at first
    MAX_RECHECK = 16.0
    HISTORY = 3           # blocks per size that make its estimate
    MEASURED = 0.02       # seconds of steps a size's estimate needs

    def __init__(self, pinned=None, max_threads=None):
        self.pinned = pinned
        self.max_threads = max(1, max_threads or available_cores())
        self.per_step = {}            # team size -> seconds per step (its recent blocks)
        self.recent = {}              # team size -> (seconds, steps) of its last blocks
        self.warmed = set()           # sizes whose first block (start-up costs) has run
        self.since_probe = 0.0
        self.recheck = self.RECHECK
        self.probing = None
        self.best = None
        self.best_at_probe = None     # the best size's average when it was last confirmed

    @property
    def candidates(self):
        if self.pinned is not None:
            return [self.pinned]
        return list(range(1, self.max_threads + 1))

    def next(self):
        """``(team size, seconds the block should last)`` for the next block."""
        candidates = self.candidates
        if len(candidates) == 1:
            return candidates[0], self.BLOCK
        untried = [n for n in reversed(candidates) if not self._measured(n)]
        if untried:
            self.probing = untried[0]
            return self.probing, self.BLOCK
        best = min(candidates, key=self.per_step.__getitem__)
        if best != self.best:
            self.best, self.recheck = best, self.RECHECK
            self.best_at_probe = self.per_step[best]
        slowed = self.per_step[best] > 1.5 * self.best_at_probe
        if self.since_probe >= self.recheck or slowed:
            self.since_probe = 0.0
            self.recheck = min(self.MAX_RECHECK, self.recheck * 2) if not slowed \
                else self.RECHECK
            self.best_at_probe = self.per_step[best]
            others = [n for n in candidates if n != best]
            self.probing = min(others, key=self.per_step.__getitem__)
            return self.probing, self.PROBE
        self.probing = None
        return best, self.BLOCK

    def steps_for(self, n, seconds):
        """Steps that should take about ``seconds`` with ``n`` threads."""
        per_step = self.per_step.get(n) or (min(self.per_step.values()) if self.per_step
                                            else None)
        if per_step is None:
            return 1
        return max(1, int(seconds / max(per_step, 1e-9)))

    def record(self, n, seconds, steps):
        """A block of ``steps`` steps took ``seconds`` with ``n`` threads.

        A size's first block is not counted: it carries one-time costs
        (starting the helper threads, first touches of the buffers).
        """
        self.since_probe += seconds
        if steps <= 0:
            return
        if n not in self.warmed and len(self.candidates) > 1:
            self.warmed.add(n)
            return
        recent = self.recent.setdefault(n, [])
        recent.append((seconds, steps))
        del recent[:-self.HISTORY]
        self.per_step[n] = sum(s for s, _ in recent) / sum(k for _, k in recent)

    def _measured(self, n):
        return sum(s for s, _ in self.recent.get(n, ())) >= self.MEASURED
