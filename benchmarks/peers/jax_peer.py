"""JAX: the whole train step (forward, grad, update) under one ``jax.jit``.

Parameters and optimizer state are donated; each epoch gathers a permuted
copy of the device-resident data in one jitted call, and each step slices its
batch from it with ``lax.dynamic_slice``. The partial last batch has its own
compiled step (its shape differs).
"""

import os
import time

import numpy as np

from .common import OPTIMIZERS, initial_params, peer_threads, predict_result, summarize


def run(config, data, opts):
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    single = peer_threads(opts) == 1
    if single:
        # XLA's CPU client has no thread-count setting beyond this switch.
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1")
    import jax
    import jax.numpy as jnp
    from jax import lax

    hp = OPTIMIZERS[opts.optimizer]
    lr = hp["lr"]

    def forward(params, x):
        for W, b in params[:-1]:
            x = jax.nn.relu(x @ W + b)
        W, b = params[-1]
        return x @ W + b

    def loss_fn(params, x, y):
        logits = forward(params, x)
        picked = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)

    tree_map = jax.tree_util.tree_map
    if hp["kind"] == "adam":
        b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]

        def init_state(params):
            zeros = tree_map(jnp.zeros_like, params)
            return (zeros, tree_map(jnp.zeros_like, params), jnp.zeros((), jnp.float32))

        def update(params, state, grads):
            m, v, t = state
            t = t + 1
            m = tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
            v = tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
            c1, c2 = 1 - b1 ** t, 1 - b2 ** t
            params = tree_map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps),
                              params, m, v)
            return params, (m, v, t)
    elif hp["momentum"]:
        mu = hp["momentum"]

        def init_state(params):
            return tree_map(jnp.zeros_like, params)

        def update(params, state, grads):
            # PyTorch's momentum: buf = mu buf + g (buf = g on the first step).
            state = tree_map(lambda s, g: mu * s + g, state, grads)
            return tree_map(lambda p, s: p - lr * s, params, state), state
    else:
        def init_state(params):
            return ()

        def update(params, state, grads):
            return tree_map(lambda p, g: p - lr * g, params, grads), state

    def make_step(size):
        def step(params, state, Xp, yp, start):
            xb = lax.dynamic_slice_in_dim(Xp, start, size)
            yb = lax.dynamic_slice_in_dim(yp, start, size)
            return update(params, state, jax.grad(loss_fn)(params, xb, yb))
        return jax.jit(step, donate_argnums=(0, 1))

    @jax.jit
    def shuffled(X, y, key):
        perm = jax.random.permutation(key, X.shape[0])
        return X[perm], y[perm]

    predict_labels = jax.jit(lambda params, x: jnp.argmax(forward(params, x), axis=1))

    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in initial_params(config.sizes, opts.seed)]
    state = init_state(params)
    X = jnp.asarray(data["X_train"])
    y = jnp.asarray(data["y_train"].astype(np.int32))
    n, batch = X.shape[0], min(config.batch_size, X.shape[0])
    full, rest = divmod(n, batch)
    step_full = make_step(batch)
    step_rest = make_step(rest) if rest else None
    key = jax.random.PRNGKey(opts.seed)

    seconds = []
    for _ in range(1 + opts.epochs):
        start = time.perf_counter()
        key, sub = jax.random.split(key)
        Xp, yp = shuffled(X, y, sub)
        for s in range(full):
            params, state = step_full(params, state, Xp, yp, s * batch)
        if rest:
            params, state = step_rest(params, state, Xp, yp, full * batch)
        jax.block_until_ready(params)
        seconds.append(time.perf_counter() - start)

    def predict(X):
        return np.asarray(jax.block_until_ready(predict_labels(params, X)))

    # predict takes the numpy array, as every other system's predict does,
    # so the host-to-device copy is part of it.
    result = summarize(seconds)
    result.update(accuracy=float(np.mean(predict(data["X_test"]) == data["y_test"])),
                  jax_threads="1" if single else "XLA default (all cores)")
    result.update(predict_result(lambda: predict(data["X_predict"]), opts.repeats))
    return result
