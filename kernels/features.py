"""What a compiled training step contains: one specialization per run's configuration.

numba compiles every branch of a kernel, taken or not, and everything the
branches call: a training step that dispatched on runtime codes compiled
five losses, four optimizers, dropout and the sparse kernels for every run
(about half of its cold compile). So the step's entry points
(``kernels.step.train_steps``, ``kernels.forward.predict_raw``) are compiled
with their configuration as *literal* arguments: the loss code, the
optimizer code and ``features``, a bit set of the optional parts a run uses
(``MOMENTUM``, ``DROPOUT``, ``SPARSE``, ``WHOLE``, ``CURVED``). Literal arguments reach every
kernel they are passed to, and the dispatchers below choose at typing time:
with a literal configuration they compile only the kernel it names (or
nothing); with a runtime value (a caller that passes plain ints, as the
tests of single kernels do) they dispatch at run time over all of them, as
before. The caller (``fastnn.backends``) compiles the entry point for the
literal types explicitly (``Dispatcher.compile``), and numba caches each
specialization on disk like any other signature.

The runtime conditions stay where they were (``if rates[l] > 0``), so a
specialization without a feature never runs the call it dropped: the bits
say only what is compiled, and ``features_of`` derives them from the same
values the conditions test.
"""

from numba import types
from numba.extending import overload

from .activations import activation_backward, bias_activation
from .dropout import dropout_backward, dropout_forward
from .gather import gather_labels, gather_rows
from .losses import (BCE, CE_LABELS, CE_TARGETS, POISSON, mean_squared_error, output_delta,
                     poisson_deviance, sigmoid_binary_cross_entropy, softmax_cross_entropy,
                     softmax_cross_entropy_targets)
from .optimizers import (ADAM, ADAMW, ALPHA, BETA1, BETA2, CLIP_VALUE, DAMPENING, EPS, LR,
                         NESTEROV, SGD, WEIGHT_DECAY, adam_update, rmsprop_update,
                         sgd_momentum_update, sgd_update, update_scaled)
from .optimizers import MOMENTUM as _MU
from .sparse import csr_product, csr_weight_gradient, gather_csr, sgd_from_gradient

#: SGD with momentum (``hyper[MOMENTUM] != 0``), dropout after some layer, sparse input,
#: the update of the whole gradient after the backward pass (several processes or
#: ``clip_norm``: ``kernels.step.update_chunks``), a sigmoid or tanh layer (without it
#: only the piecewise-linear activations are compiled: ``activations.only_piecewise``).
MOMENTUM, DROPOUT, SPARSE, WHOLE, CURVED = 1, 2, 4, 8, 16
#: Every part: what a runtime (non-literal) ``features`` compiles.
ALL = MOMENTUM | DROPOUT | SPARSE | WHOLE | CURVED


def features_of(momentum, dropout, sparse, whole, curved=True):
    """The ``features`` bits of a run: SGD momentum, any dropout rate > 0, sparse input,
    a whole-gradient update (several processes or ``clip_norm``), a sigmoid or tanh layer."""
    return (MOMENTUM if momentum else 0) | (DROPOUT if dropout else 0) | \
        (SPARSE if sparse else 0) | (WHOLE if whole else 0) | (CURVED if curved else 0)


def _literal(value):
    """The value of a literal integer type, else None (a runtime value)."""
    return value.literal_value if isinstance(value, types.IntegerLiteral) else None


def without(features, bit):
    """Whether ``features`` is a literal that leaves ``bit`` out (nothing to compile)."""
    value = _literal(features)
    return value is not None and not value & bit


# ---- the stubs (numba only: they exist as the overloads below) ----------------------------

def dropout_forward_if(features, h, rate, seed, step, layer, row0, width, col0):
    """``dropout_forward`` unless ``features`` is a literal without ``DROPOUT``."""
    raise NotImplementedError


def bias_activation_of(features, u, b, code):
    """``u <- phi(u + b)`` (``activations.bias_activation``): only the piecewise-linear
    activations when ``features`` is a literal without ``CURVED``."""
    raise NotImplementedError


def activation_backward_of(features, delta, h, codes, rates, layer, seed, step, row0, width,
                           col0):
    """Layer ``layer``'s derivative, through its dropout mask when it has one."""
    raise NotImplementedError


def gather_csr_if(features, indptr, indices, data, perm, start, r, bp, bi, bd):
    """``gather_csr`` unless ``features`` is a literal without ``SPARSE``."""
    raise NotImplementedError


def csr_product_if(features, indptr, indices, data, row0, W, u):
    """``csr_product`` unless ``features`` is a literal without ``SPARSE``."""
    raise NotImplementedError


def csr_weight_gradient_if(features, bp, bi, bd, r, i0, i1, delta, g):
    """``csr_weight_gradient`` unless ``features`` is a literal without ``SPARSE``."""
    raise NotImplementedError


def sgd_from_gradient_if(features, W, g, lr, weight_decay):
    """``sgd_from_gradient`` unless ``features`` is a literal without ``SPARSE``."""
    raise NotImplementedError


def gather_targets(loss_code, labels, targets, perm, start, r, yb, tb, n_classes, one, zero,
                   no, no_order):
    """The batch's labels (``CE_LABELS``) or targets; the first bad one's index, or -1."""
    raise NotImplementedError


def loss_delta(loss_code, out, y, t, w, norm, out_code, delta):
    """``losses.output_delta``: with a literal ``loss_code``, only that loss's kernel."""
    raise NotImplementedError


def update_with(opt_code, features, w, g, s1, s2, t, hyper, scale):
    """``optimizers.update_scaled``: with literal codes, only that optimizer's kernel.

    A negative ``opt_code`` (no update: ``kernels.step.NO_UPDATE``) does nothing.
    """
    raise NotImplementedError


# ---- the overloads -------------------------------------------------------------------------

@overload(dropout_forward_if, prefer_literal=True, inline="always")
def _dropout_forward_if(features, h, rate, seed, step, layer, row0, width, col0):
    if without(features, DROPOUT):
        return lambda features, h, rate, seed, step, layer, row0, width, col0: None
    return lambda features, h, rate, seed, step, layer, row0, width, col0: dropout_forward(
        h, rate, seed, step, layer, row0, width, col0)


@overload(bias_activation_of, prefer_literal=True, inline="always")
def _bias_activation_of(features, u, b, code):
    if without(features, CURVED):
        return lambda features, u, b, code: bias_activation(u, b, code, False)
    return lambda features, u, b, code: bias_activation(u, b, code)


@overload(activation_backward_of, prefer_literal=True, inline="always")
def _activation_backward_of(features, delta, h, codes, rates, layer, seed, step, row0, width,
                            col0):
    if without(features, DROPOUT):
        if without(features, CURVED):
            def piecewise(features, delta, h, codes, rates, layer, seed, step, row0, width,
                          col0):
                activation_backward(delta, h, codes[layer], False)
            return piecewise

        def plain(features, delta, h, codes, rates, layer, seed, step, row0, width, col0):
            activation_backward(delta, h, codes[layer])
        return plain

    def masked(features, delta, h, codes, rates, layer, seed, step, row0, width, col0):
        if layer < rates.shape[0] and rates[layer] > 0:
            dropout_backward(delta, h, codes[layer], rates[layer], seed, step, layer, row0,
                             width, col0)
        else:
            activation_backward(delta, h, codes[layer])
    return masked


@overload(gather_csr_if, prefer_literal=True, inline="always")
def _gather_csr_if(features, indptr, indices, data, perm, start, r, bp, bi, bd):
    if without(features, SPARSE):
        return lambda features, indptr, indices, data, perm, start, r, bp, bi, bd: None
    return lambda features, indptr, indices, data, perm, start, r, bp, bi, bd: gather_csr(
        indptr, indices, data, perm, start, r, bp, bi, bd)


@overload(csr_product_if, prefer_literal=True, inline="always")
def _csr_product_if(features, indptr, indices, data, row0, W, u):
    if without(features, SPARSE):
        return lambda features, indptr, indices, data, row0, W, u: None
    return lambda features, indptr, indices, data, row0, W, u: csr_product(
        indptr, indices, data, row0, W, u)


@overload(csr_weight_gradient_if, prefer_literal=True, inline="always")
def _csr_weight_gradient_if(features, bp, bi, bd, r, i0, i1, delta, g):
    if without(features, SPARSE):
        return lambda features, bp, bi, bd, r, i0, i1, delta, g: None
    return lambda features, bp, bi, bd, r, i0, i1, delta, g: csr_weight_gradient(
        bp, bi, bd, r, i0, i1, delta, g)


@overload(sgd_from_gradient_if, prefer_literal=True, inline="always")
def _sgd_from_gradient_if(features, W, g, lr, weight_decay):
    if without(features, SPARSE):
        return lambda features, W, g, lr, weight_decay: None
    return lambda features, W, g, lr, weight_decay: sgd_from_gradient(W, g, lr, weight_decay)


@overload(gather_targets, prefer_literal=True, inline="always")
def _gather_targets(loss_code, labels, targets, perm, start, r, yb, tb, n_classes, one, zero,
                    no, no_order):
    code = _literal(loss_code)

    def of_labels(loss_code, labels, targets, perm, start, r, yb, tb, n_classes, one, zero, no,
                  no_order):
        return gather_labels(labels, perm, start, r, yb, n_classes)

    def of_targets(loss_code, labels, targets, perm, start, r, yb, tb, n_classes, one, zero, no,
                   no_order):
        return gather_rows(targets, perm, start, r, tb, one, zero, no, no_order)

    if code == CE_LABELS:
        return of_labels
    if code is not None:
        return of_targets

    def either(loss_code, labels, targets, perm, start, r, yb, tb, n_classes, one, zero, no,
               no_order):
        if loss_code == CE_LABELS:
            return gather_labels(labels, perm, start, r, yb, n_classes)
        return gather_rows(targets, perm, start, r, tb, one, zero, no, no_order)
    return either


@overload(loss_delta, prefer_literal=True, inline="always")
def _loss_delta(loss_code, out, y, t, w, norm, out_code, delta):
    code = _literal(loss_code)
    if code is None:
        return lambda loss_code, out, y, t, w, norm, out_code, delta: output_delta(
            loss_code, out, y, t, w, norm, out_code, delta)
    if code == CE_LABELS:
        return lambda loss_code, out, y, t, w, norm, out_code, delta: softmax_cross_entropy(
            out, y, w, norm, delta)
    if code == CE_TARGETS:
        return lambda loss_code, out, y, t, w, norm, out_code, delta: \
            softmax_cross_entropy_targets(out, t, w, norm, delta)
    if code == BCE:
        return lambda loss_code, out, y, t, w, norm, out_code, delta: \
            sigmoid_binary_cross_entropy(out, t, w, norm, delta)
    if code == POISSON:
        return lambda loss_code, out, y, t, w, norm, out_code, delta: poisson_deviance(
            out, t, w, norm, delta)
    return lambda loss_code, out, y, t, w, norm, out_code, delta: mean_squared_error(
        out, t, w, norm, out_code, delta)


@overload(update_with, prefer_literal=True, inline="always")
def _update_with(opt_code, features, w, g, s1, s2, t, hyper, scale):
    code, bits = _literal(opt_code), _literal(features)
    if code is None or bits is None:
        def runtime(opt_code, features, w, g, s1, s2, t, hyper, scale):
            if opt_code >= 0:
                update_scaled(opt_code, w, g, s1, s2, t, hyper, scale)
        return runtime
    if code < 0:
        return lambda opt_code, features, w, g, s1, s2, t, hyper, scale: None
    if code == SGD and bits & MOMENTUM:
        def momentum(opt_code, features, w, g, s1, s2, t, hyper, scale):
            sgd_momentum_update(w, g, s1, t, hyper[LR], hyper[_MU], hyper[DAMPENING],
                                hyper[WEIGHT_DECAY], hyper[NESTEROV] != 0, scale,
                                hyper[CLIP_VALUE])
        return momentum
    if code == SGD:
        def plain(opt_code, features, w, g, s1, s2, t, hyper, scale):
            sgd_update(w, g, hyper[LR], hyper[WEIGHT_DECAY], scale, hyper[CLIP_VALUE])
        return plain
    if code == ADAM or code == ADAMW:
        decoupled = code == ADAMW

        def adam(opt_code, features, w, g, s1, s2, t, hyper, scale):
            adam_update(w, g, s1, s2, t, hyper[LR], hyper[BETA1], hyper[BETA2], hyper[EPS],
                        hyper[WEIGHT_DECAY], decoupled, scale, hyper[CLIP_VALUE])
        return adam

    def rmsprop(opt_code, features, w, g, s1, s2, t, hyper, scale):
        rmsprop_update(w, g, s2, s1, hyper[LR], hyper[ALPHA], hyper[EPS], hyper[WEIGHT_DECAY],
                       hyper[_MU], scale, hyper[CLIP_VALUE])
    return rmsprop
