"""Keras 3 on TensorFlow's CPU build: ``keras.Sequential`` of ``Dense``, ``model.fit``.

The model is compiled with ``jit_compile=True`` (XLA) and trained the way a
Keras user would: one ``model.fit(X, y, batch_size=B, epochs=1, shuffle=True,
verbose=0)`` per timed epoch, so each epoch includes Keras's own per-call
work (its data adapter over the numpy arrays, callbacks, the step loop).
Weights start from the common He-normal initialization; the shuffles come
from ``keras.utils.set_random_seed``. Keras's Adam adds ``epsilon`` to
``sqrt(v)`` before the bias correction (PyTorch: to ``sqrt(v_hat)``), which
only shifts the last digits; its momentum SGD is PyTorch's for a constant
learning rate.
"""

import os
import time

import numpy as np

from .common import OPTIMIZERS, initial_params, peer_threads, predict_result, summarize


def run(config, data, opts):
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    import tensorflow as tf

    threads = peer_threads(opts)
    # Before TensorFlow's runtime starts (the first op), or it keeps its defaults.
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    import_seconds = time.perf_counter() - start

    keras.utils.set_random_seed(opts.seed)
    sizes = config.sizes
    model = keras.Sequential(
        [keras.Input((sizes[0],), dtype="float32")]
        + [keras.layers.Dense(m, activation="relu") for m in sizes[1:-1]]
        + [keras.layers.Dense(sizes[-1])])
    for layer, (W, b) in zip(model.layers, initial_params(sizes, opts.seed)):
        layer.set_weights([W, b])
    hp = OPTIMIZERS[opts.optimizer]
    if hp["kind"] == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=hp["lr"], beta_1=hp["beta1"],
                                          beta_2=hp["beta2"], epsilon=hp["eps"])
    else:
        optimizer = keras.optimizers.SGD(learning_rate=hp["lr"], momentum=hp["momentum"])
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)

    X, y = data["X_train"], data["y_train"]
    seconds, losses = [], []
    for _ in range(1 + opts.epochs):
        start = time.perf_counter()
        history = model.fit(X, y, batch_size=config.batch_size, epochs=1, shuffle=True,
                            verbose=0)
        seconds.append(time.perf_counter() - start)
        losses.append(float(history.history["loss"][-1]))

    def predict(X):
        # One batch of all rows, as every other system's predict call.
        return np.argmax(model.predict(X, batch_size=len(X), verbose=0), axis=1)

    result = summarize(seconds)
    result.update(import_seconds=import_seconds, train_loss=losses[-1],
                  accuracy=float(np.mean(predict(data["X_test"]) == data["y_test"])),
                  tf_threads=dict(intra_op=tf.config.threading.get_intra_op_parallelism_threads(),
                                  inter_op=tf.config.threading.get_inter_op_parallelism_threads()),
                  keras_backend=keras.backend.backend(),
                  jit_compile=bool(model.jit_compile))   # Keras turns it off if unsupported
    result.update(predict_result(lambda: predict(data["X_predict"]), opts.repeats))
    return result
