"""scikit-learn's MLPClassifier, one ``partial_fit`` (one shuffled epoch) at a time."""

import time
import warnings

import numpy as np

from .common import N_CLASSES, OPTIMIZERS, peer_threads, predict_result, summarize


def run(config, data, opts):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    hp = OPTIMIZERS[opts.optimizer]
    if hp["kind"] == "adam":
        solver = dict(solver="adam", beta_1=hp["beta1"], beta_2=hp["beta2"], epsilon=hp["eps"])
    else:
        solver = dict(solver="sgd", momentum=hp["momentum"], nesterovs_momentum=False)
    clf = MLPClassifier(hidden_layer_sizes=config.hidden, activation="relu", alpha=0.0,
                        learning_rate_init=hp["lr"], batch_size=config.batch_size, max_iter=1,
                        shuffle=True, tol=0.0, n_iter_no_change=10**9, warm_start=True,
                        random_state=opts.seed, **solver)
    X, y = data["X_train"], data["y_train"]
    classes = np.arange(N_CLASSES)
    seconds = []
    with warnings.catch_warnings(), threadpool_limits(peer_threads(opts), user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(1 + opts.epochs):
            start = time.perf_counter()
            clf.partial_fit(X, y, classes=classes)
            seconds.append(time.perf_counter() - start)
        result = summarize(seconds)
        result.update(train_loss=float(clf.loss_), dtype=str(clf.coefs_[0].dtype),
                      accuracy=float(np.mean(clf.predict(data["X_test"]) == data["y_test"])))
        result.update(predict_result(lambda: clf.predict(data["X_predict"]), opts.repeats))
    return result
