"""Hyperparameter search of fastnn.sklearn estimators on a Dask cluster (joblib's Dask backend).

A ``GridSearchCV`` whose fits run in two worker processes of a
``distributed.LocalCluster`` must score every candidate exactly as the same
search run in this process: same folds, same random streams, same kernels.
``threads=1`` pins the BLAS to one thread on both sides, so the results are
bitwise the same (the workers run one task each at a time anyway).
"""

import os
import signal
import sys
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("distributed", reason="dask.distributed is not installed "
                                          "(pip install 'dask[distributed]')")

import joblib  # noqa: E402  (a scikit-learn dependency)
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import fastnn  # noqa: E402
from fastnn import datasets  # noqa: E402
from fastnn.sklearn import MLPClassifier  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Generous: with a cold numba cache the first fit compiles the kernels.
DEADLINE = 300


@contextmanager
def _deadline(seconds):
    """Raise ``TimeoutError`` in the main thread if the block outlives ``seconds``.

    Waiting on Dask futures is interruptible, so a hung search fails the test
    (and the cluster's context manager still shuts its processes down).
    """
    if not hasattr(signal, "SIGALRM"):  # Windows: no alarm; the search runs unguarded
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"the Dask grid search took over {seconds} s (hung?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_grid_search_on_a_local_cluster_equals_n_jobs_1(monkeypatch):
    X, y = datasets.load_digits()
    X, y = X[:300], y[:300]
    estimator = MLPClassifier(max_iter=10, random_state=0, threads=1)
    grid = {"hidden_layer_sizes": [(8,), (16,)], "learning_rate_init": [0.01, 0.05]}

    # Count the fits that run in this process (the class is pickled by
    # reference, so the workers call the real fit, uncounted).
    local_fits = []
    fit = MLPClassifier.fit

    def counted_fit(self, X, y):
        local_fits.append(self.get_params()["hidden_layer_sizes"])
        return fit(self, X, y)

    monkeypatch.setattr(MLPClassifier, "fit", counted_fit)

    def process_and_fastnn():
        # A local function: shipped by value, so a worker running it does not
        # import this test module (which would import fastnn itself).
        module = sys.modules.get("fastnn.sklearn")
        return os.getpid(), module and module.__file__, "test_dask" in sys.modules

    # The reference search first: in this process, where its 12 fits and
    # refit are counted. It also leaves numba's on-disk cache warm for the
    # workers, which would otherwise each compile the kernels at once (twice
    # the CPU time with a cold cache: 61 s instead of 28 s here).
    local_search = GridSearchCV(estimator, grid, cv=3, n_jobs=1).fit(X, y)
    assert len(local_fits) == 12 + 1

    # patch.dict restores os.environ afterwards: LocalCluster's nannies set
    # OMP/OPENBLAS/MKL_NUM_THREADS=1 in this process's environment for their
    # workers and leave them there, for every later test's subprocesses.
    with _deadline(DEADLINE), mock.patch.dict(os.environ), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None) as cluster, \
            Client(cluster) as client:
        workers = set(client.scheduler_info()["workers"])
        assert len(workers) == 2
        with get_task_stream(client) as tasks, joblib.parallel_config(backend="dask"):
            distributed_search = GridSearchCV(estimator, grid, cv=3, n_jobs=-1).fit(X, y)
        # Workers are other processes that imported this very fastnn to run
        # the fits (spawned workers get this process's sys.path; a real
        # cluster's get theirs from PYTHONPATH or the installed package).
        found = client.run(process_and_fastnn)
    assert set(found) == workers
    for pid, path, imported_test_module in found.values():
        assert pid != os.getpid()
        assert path == fastnn.sklearn.__file__
        assert not imported_test_module
    fit_tasks = [task for task in tasks.data if "_fit_and_score" in str(task["key"])]
    assert fit_tasks, [task["key"] for task in tasks.data]
    assert {task["worker"] for task in fit_tasks} == workers
    # Only the refit ran here: the search's 12 cross-validation fits ran remotely.
    assert len(local_fits) == 12 + 1 + 1

    ours, theirs = distributed_search.cv_results_, local_search.cv_results_
    assert ours["params"] == theirs["params"]
    names = ["mean_test_score", "std_test_score", "rank_test_score",
             *(f"split{i}_test_score" for i in range(3))]
    for name in names:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    # The candidates really differ, so equal scores mean the same fits.
    assert len(set(theirs["mean_test_score"])) > 1
    assert distributed_search.best_params_ == local_search.best_params_
    np.testing.assert_array_equal(distributed_search.predict_proba(X),
                                  local_search.predict_proba(X))
