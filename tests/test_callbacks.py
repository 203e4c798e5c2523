"""Learning-rate schedules, ReduceLROnPlateau and EarlyStopping.

The schedules run inside ``Network.fit``; ``history["lr"][e]`` is the rate
used during epoch ``e`` (fit records it before the callbacks step). The
plateau and early-stopping rules are fed scripted metric sequences whose
outcome was worked out by hand.
"""

import inspect
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

import fastnn
from fastnn.callbacks import (Callback, CosineAnnealingLR, EarlyStopping, ExponentialLR,
                              LambdaCallback, ReduceLROnPlateau, StepLR)

from conftest import TORCH_MISSING

BASE_LR = 0.2
EPOCHS = 12


def tiny_data(n=24, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    y = (X[:, 0] - X[:, 1] > 0).astype(np.int64)
    return X, y


def tiny_net(seed=0):
    return fastnn.Network([fastnn.Dense(4, 6, "tanh"), fastnn.Dense(6, 2)], dtype="float64",
                          seed=seed)


def stub_network(lr=1.0):
    """What the schedules touch: ``network.optimizer.lr``."""
    return SimpleNamespace(optimizer=SimpleNamespace(lr=lr))


# ---- closed-form schedules through fit ----------------------------------------

SCHEDULES = {
    "step": (lambda: StepLR(step_size=3, gamma=0.5),
             lambda e: BASE_LR * 0.5 ** (e // 3)),
    "exponential": (lambda: ExponentialLR(gamma=0.8),
                    lambda e: BASE_LR * 0.8 ** e),
    "cosine": (lambda: CosineAnnealingLR(T_max=8, eta_min=0.01),
               lambda e: 0.01 + (BASE_LR - 0.01) * (1 + math.cos(math.pi * e / 8)) / 2),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_lr_sequence_matches_closed_form(name):
    make, closed_form = SCHEDULES[name]
    X, y = tiny_data()
    net = tiny_net()
    sched = make()
    opt = fastnn.SGD(lr=BASE_LR)
    history = net.fit(X, y, epochs=EPOCHS, batch_size=8, optimizer=opt, callbacks=[sched],
                      verbose=0)
    expected = [closed_form(e) for e in range(EPOCHS)]
    np.testing.assert_allclose(history.history["lr"], expected, rtol=1e-12)
    assert history.history["lr"][0] == BASE_LR
    # after the last epoch the optimizer holds the next epoch's rate
    assert opt.lr == pytest.approx(closed_form(EPOCHS), rel=1e-12)
    assert sched.last_epoch == EPOCHS and sched.base_lr == BASE_LR


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_training_uses_the_scheduled_rate(backend):
    """A 3-epoch fit with StepLR == three 1-epoch fits with the rate set by hand."""
    X, y = tiny_data()

    def net_for(backend):
        return fastnn.Network([fastnn.Dense(4, 6, "tanh"), fastnn.Dense(6, 2)],
                              dtype="float64", seed=0, backend=backend)

    scheduled = net_for(backend)
    scheduled.fit(X, y, epochs=3, batch_size=8, optimizer=fastnn.SGD(lr=0.4, momentum=0.5),
                  shuffle=False, callbacks=[StepLR(step_size=1, gamma=0.25)], verbose=0)
    by_hand = net_for(backend)
    opt = fastnn.SGD(lr=0.4, momentum=0.5)
    for lr in (0.4, 0.1, 0.025):
        opt.lr = lr
        by_hand.fit(X, y, epochs=1, batch_size=8, optimizer=opt, shuffle=False, verbose=0)
    unscheduled = net_for(backend)
    unscheduled.fit(X, y, epochs=3, batch_size=8, optimizer=fastnn.SGD(lr=0.4, momentum=0.5),
                    shuffle=False, verbose=0)
    np.testing.assert_allclose(scheduled.get_params(), by_hand.get_params(), rtol=1e-12)
    assert not np.allclose(scheduled.get_params(), unscheduled.get_params(), rtol=1e-6)


def test_cosine_reaches_eta_min_at_t_max_and_comes_back():
    sched = CosineAnnealingLR(T_max=4, eta_min=0.1)
    net = stub_network(lr=1.0)
    lrs = []
    for _ in range(8):
        sched.on_epoch_end(net, {})
        lrs.append(net.optimizer.lr)
    np.testing.assert_allclose(lrs, [0.1 + 0.9 * (1 + math.cos(math.pi * e / 4)) / 2
                                     for e in range(1, 9)], rtol=1e-12)
    assert lrs[3] == pytest.approx(0.1) and lrs[7] == pytest.approx(1.0)


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_continues_across_fits_and_from_state_dict(name):
    make, closed_form = SCHEDULES[name]
    X, y = tiny_data()
    expected = [closed_form(e) for e in range(EPOCHS)]

    net, sched = tiny_net(), make()
    opt = fastnn.SGD(lr=BASE_LR)
    first = net.fit(X, y, epochs=5, optimizer=opt, callbacks=[sched], verbose=0)
    second = net.fit(X, y, epochs=EPOCHS - 5, callbacks=[sched], verbose=0)
    np.testing.assert_allclose(first.history["lr"] + second.history["lr"], expected,
                               rtol=1e-12)

    # A fresh schedule and optimizer, restored from the state after 5 epochs:
    # on_train_begin puts the optimizer back on the saved epoch's rate.
    saved = make()
    saved.load_state_dict({"base_lr": BASE_LR, "last_epoch": 5})
    fresh_opt = fastnn.SGD(lr=123.0)
    resumed = tiny_net().fit(X, y, epochs=EPOCHS - 5, optimizer=fresh_opt, callbacks=[saved],
                             verbose=0)
    np.testing.assert_allclose(resumed.history["lr"], expected[5:], rtol=1e-12)
    assert saved.state_dict() == {"base_lr": BASE_LR, "last_epoch": EPOCHS}


def test_schedules_agree_with_torch_lr_scheduler():
    torch = pytest.importorskip("torch", reason=TORCH_MISSING)
    pairs = [
        (StepLR(step_size=3, gamma=0.5),
         lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
        (ExponentialLR(gamma=0.8),
         lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.8)),
        (CosineAnnealingLR(T_max=8, eta_min=0.01),
         lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=8, eta_min=0.01)),
    ]
    for ours, make_theirs in pairs:
        topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
        theirs = make_theirs(topt)
        net = stub_network(lr=BASE_LR)
        ours.on_train_begin(net)
        for _ in range(EPOCHS):
            topt.step()
            theirs.step()
            ours.on_epoch_end(net, {})
            assert net.optimizer.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-10)


# ---- ReduceLROnPlateau on scripted values ---------------------------------------

def drive_plateau(cb, values, lr=1.0):
    """Feed ``values`` as ``val_loss``; return the lr after each epoch."""
    net = stub_network(lr)
    lrs = []
    for v in values:
        cb.on_epoch_end(net, {"val_loss": v, "loss": 0.0})
        lrs.append(net.optimizer.lr)
    return lrs


def test_plateau_reduces_after_patience_bad_epochs():
    # best 0.9 at epoch 1; epochs 2, 3, 4 bad -> 3 > patience=2 -> reduce after epoch 4.
    # 0.92, 0.91 are bad (best still 0.9); 0.85 improves at 7; 8, 9, 10 bad -> reduce at 10.
    values = [1.0, 0.9, 0.95, 0.95, 0.95, 0.92, 0.91, 0.85, 0.9, 0.9, 0.9, 0.9]
    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0, threshold_mode="abs")
    lrs = drive_plateau(cb, values)
    assert cb.reductions == [4, 10]
    assert lrs == [1, 1, 1, 1, .5, .5, .5, .5, .5, .5, .25, .25]
    assert cb.best == 0.85 and cb.num_bad_epochs == 1


def test_plateau_patience_zero_with_cooldown():
    # patience 0: every bad epoch outside cooldown reduces; cooldown=2 skips two epochs.
    cb = ReduceLROnPlateau(factor=0.5, patience=0, cooldown=2, min_delta=0.0)
    lrs = drive_plateau(cb, [1.0] * 9)
    assert cb.reductions == [1, 4, 7]
    assert lrs == [1, .5, .5, .5, .25, .25, .25, .125, .125]


@pytest.mark.parametrize("threshold_mode, reductions", [("rel", [2]), ("abs", [3])])
def test_plateau_threshold_mode(threshold_mode, reductions):
    # From best 10 with min_delta 0.1: rel needs < 9.0, abs needs < 9.9, so 9.5
    # improves only in abs mode.
    cb = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.1, threshold_mode=threshold_mode)
    drive_plateau(cb, [10.0, 9.5, 9.5, 9.5])
    assert cb.reductions == reductions


def test_plateau_default_min_delta_is_relative_1e4():
    cb = ReduceLROnPlateau(patience=0)
    drive_plateau(cb, [1.0, 0.99995, 0.9998])      # 0.99995 is within 1e-4 of 1.0
    assert cb.reductions == [1]


def test_plateau_max_mode_auto_for_accuracy_and_min_lr():
    cb = ReduceLROnPlateau(monitor="val_accuracy", factor=0.1, patience=0, min_lr=0.05,
                           min_delta=0.0)
    assert cb.mode == "max"
    net = stub_network(1.0)
    lrs = []
    for acc in [0.5, 0.6, 0.6, 0.55, 0.7, 0.7]:
        cb.on_epoch_end(net, {"val_accuracy": acc})
        lrs.append(net.optimizer.lr)
    # bad epochs 2, 3 and 5; the third reduction would go below min_lr and the
    # second is clipped to it, so only two count.
    assert lrs == pytest.approx([1, 1, 0.1, 0.05, 0.05, 0.05])
    assert cb.reductions == [2, 3]


def test_plateau_state_dict_round_trip():
    values = [1.0, 0.9, 0.95, 0.95, 0.95, 0.92, 0.91, 0.85, 0.9, 0.9, 0.9, 0.9]
    straight = ReduceLROnPlateau(factor=0.5, patience=2)
    expected = drive_plateau(straight, values)
    first = ReduceLROnPlateau(factor=0.5, patience=2)
    head = drive_plateau(first, values[:6])
    second = ReduceLROnPlateau(factor=0.5, patience=2)
    second.load_state_dict(first.state_dict())
    tail = drive_plateau(second, values[6:], lr=head[-1])
    assert head + tail == expected
    assert second.state_dict() == straight.state_dict()


def test_plateau_agrees_with_torch():
    torch = pytest.importorskip("torch", reason=TORCH_MISSING)
    rng = np.random.default_rng(0)
    values = list(np.round(np.cumsum(rng.normal(-0.01, 0.05, 40)) + 2, 3))
    kwargs = dict(factor=0.5, patience=2, cooldown=1, min_lr=0.01)
    ours = ReduceLROnPlateau(min_delta=1e-3, **kwargs)
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, mode="min", threshold=1e-3,
                                                        **kwargs)
    lrs = drive_plateau(ours, values)
    torch_lrs = []
    for v in values:
        topt.step()
        theirs.step(v)
        torch_lrs.append(topt.param_groups[0]["lr"])
    assert len(ours.reductions) >= 2
    assert lrs == pytest.approx(torch_lrs, rel=1e-12)


def test_plateau_in_fit_reduces_on_val_loss():
    X, y = tiny_data()
    cb = ReduceLROnPlateau(factor=0.5, patience=0, min_delta=10.0, threshold_mode="abs")
    history = tiny_net().fit(X, y, epochs=4, optimizer=fastnn.SGD(lr=0.1), callbacks=[cb],
                             validation_data=(X, y), verbose=0)
    # min_delta 10 means nothing after the first epoch counts as an improvement
    assert history.history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.025])


# ---- EarlyStopping -------------------------------------------------------------------

def scripted_fit(values, cb, epochs=None):
    """Fit with ``logs["scripted"] = values[epoch]`` and a parameter copy per epoch.

    The recorder runs before ``cb`` (callbacks run in order on the same logs).
    Returns ``(network, history, snapshots)``.
    """
    X, y = tiny_data()
    net = tiny_net()
    snapshots = []

    def record(network, logs):
        logs["scripted"] = values[logs["epoch"]]
        snapshots.append(network.get_params())

    history = net.fit(X, y, epochs=epochs or len(values), batch_size=8,
                      optimizer=fastnn.SGD(lr=0.1), verbose=0,
                      callbacks=[LambdaCallback(on_epoch_end=record), cb])
    # fit may or may not call on_train_end itself; a second call must be harmless.
    cb.on_train_end(net)
    return net, history, snapshots


def test_early_stopping_stops_at_the_right_epoch_and_restores_best():
    values = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 1.0, 0.5]
    cb = EarlyStopping(monitor="scripted", patience=2)
    net, history, snapshots = scripted_fit(values, cb)
    # best 3.0 at epoch 2; epochs 3 and 4 without improvement -> stop after epoch 4
    assert history.epoch == [0, 1, 2, 3, 4]
    assert cb.stopped_epoch == 4 and cb.best_epoch == 2 and cb.best == 3.0
    assert not np.array_equal(snapshots[2], snapshots[4])
    np.testing.assert_array_equal(net.get_params(), snapshots[2])
    np.testing.assert_array_equal(cb.best_weights, snapshots[2])
    cb.on_train_end(net)                    # idempotent
    np.testing.assert_array_equal(net.get_params(), snapshots[2])


def test_early_stopping_restores_best_without_stopping():
    values = [5.0, 4.0, 3.0, 2.0, 2.5, 2.4]
    cb = EarlyStopping(monitor="scripted", patience=10)
    net, history, snapshots = scripted_fit(values, cb)
    assert len(history.epoch) == 6 and cb.stopped_epoch is None and cb.best_epoch == 3
    assert not np.array_equal(snapshots[3], snapshots[5])
    np.testing.assert_array_equal(net.get_params(), snapshots[3])


def test_early_stopping_without_restore_keeps_last_weights():
    values = [5.0, 4.0, 6.0, 6.0]
    cb = EarlyStopping(monitor="scripted", patience=2, restore_best_weights=False)
    net, history, snapshots = scripted_fit(values, cb)
    assert cb.stopped_epoch == 3 and cb.best_weights is None
    np.testing.assert_array_equal(net.get_params(), snapshots[3])


def test_early_stopping_min_delta_and_max_mode():
    # improvements smaller than min_delta do not count
    cb = EarlyStopping(monitor="scripted", patience=3, min_delta=0.1)
    _, history, _ = scripted_fit([1.0, 0.95, 0.92, 0.91, 0.5, 0.4], cb)
    assert cb.best_epoch == 0 and cb.stopped_epoch == 3 and len(history.epoch) == 4
    # "acc" in the name: auto mode maximizes
    cb = EarlyStopping(monitor="scripted_accuracy", patience=1)
    assert cb.mode == "max"
    net = stub_network()
    net.stop_training = False
    net.get_params = lambda: np.zeros(1)
    for epoch, acc in enumerate([0.5, 0.7, 0.6]):
        cb.on_epoch_end(net, {"scripted_accuracy": acc})
    assert net.stop_training and cb.best_epoch == 1 and cb.stopped_epoch == 2


def test_early_stopping_patience_zero_stops_at_first_bad_epoch():
    cb = EarlyStopping(monitor="scripted", patience=0)
    _, history, _ = scripted_fit([3.0, 2.0, 2.0, 1.0], cb)
    assert cb.stopped_epoch == 2 and len(history.epoch) == 3


def test_early_stopping_resets_between_fits():
    cb = EarlyStopping(monitor="scripted", patience=1)
    scripted_fit([1.0, 2.0, 3.0], cb)
    assert cb.stopped_epoch == 1
    # a worse scale in the second fit would never improve on 1.0 without a reset
    _, history, _ = scripted_fit([10.0, 9.0, 8.0], cb)
    assert cb.stopped_epoch is None and cb.best == 8.0 and len(history.epoch) == 3


def test_early_stopping_on_real_val_loss():
    X, y = tiny_data()
    cb = EarlyStopping(patience=2)
    net = tiny_net()
    history = net.fit(X, y, epochs=30, optimizer=fastnn.SGD(lr=0.5), callbacks=[cb],
                      validation_data=(X[:8], y[:8]), verbose=0)
    cb.on_train_end(net)
    val = history.history["val_loss"]
    assert cb.best == min(val) and cb.best_epoch == int(np.argmin(val))
    assert net.evaluate(X[:8], y[:8])["loss"] == pytest.approx(min(val), rel=1e-12)


@pytest.mark.parametrize("cls", [EarlyStopping, ReduceLROnPlateau])
def test_missing_monitor_key_names_the_available_keys(cls):
    X, y = tiny_data()
    with pytest.raises(ValueError, match=r"'val_loss'.*available keys: accuracy, loss, lr"):
        tiny_net().fit(X, y, epochs=2, callbacks=[cls()], verbose=0)


# ---- construction and the base classes -----------------------------------------------

@pytest.mark.parametrize("build", [
    lambda: StepLR(0), lambda: StepLR(2.5), lambda: StepLR(True), lambda: StepLR(2, gamma=0),
    lambda: StepLR(2, gamma=float("nan")), lambda: ExponentialLR(-0.5),
    lambda: ExponentialLR("0.5"), lambda: CosineAnnealingLR(0),
    lambda: CosineAnnealingLR(5, eta_min=-1),
    lambda: ReduceLROnPlateau(factor=1.0), lambda: ReduceLROnPlateau(factor=0),
    lambda: ReduceLROnPlateau(patience=-1), lambda: ReduceLROnPlateau(min_delta=-1e-4),
    lambda: ReduceLROnPlateau(threshold_mode="relative"), lambda: ReduceLROnPlateau(cooldown=-1),
    lambda: ReduceLROnPlateau(min_lr=-1), lambda: ReduceLROnPlateau(mode="minimum"),
    lambda: ReduceLROnPlateau(monitor=""), lambda: EarlyStopping(patience=1.5),
    lambda: EarlyStopping(min_delta=-0.1), lambda: EarlyStopping(mode="up"),
    lambda: EarlyStopping(monitor=None), lambda: LambdaCallback(on_epoch_end=3),
])
def test_invalid_arguments_raise_value_error(build):
    with pytest.raises(ValueError):
        build()


# Every hyperparameter of every callback, found by introspection (a new one without a check
# fails here), with the required arguments filled in.
REQUIRED = {StepLR: dict(step_size=2), ExponentialLR: dict(gamma=0.5),
            CosineAnnealingLR: dict(T_max=4)}
CHOICES = {"monitor", "mode", "threshold_mode"}   # strings, tested above
NOT_NUMBERS = ["0.5", True, False, None, [1], np.array([1.0])]
NOT_FLAGS = ["no", "False", 0, 1, None]


def _hyperparameters():
    for cls in (StepLR, ExponentialLR, CosineAnnealingLR, ReduceLROnPlateau, EarlyStopping):
        for name, param in inspect.signature(cls).parameters.items():
            if name not in CHOICES:
                default = REQUIRED.get(cls, {}).get(name, param.default)
                yield pytest.param(cls, name, default, id=f"{cls.__name__}-{name}")


@pytest.mark.parametrize("cls, name, default", list(_hyperparameters()))
def test_every_hyperparameter_refuses_wrong_types(cls, name, default):
    bad_values = NOT_FLAGS if isinstance(default, bool) else NOT_NUMBERS
    for bad in bad_values:
        with pytest.raises(ValueError, match=rf"^{name} must be .*got {re.escape(repr(bad))}"):
            cls(**{**REQUIRED.get(cls, {}), name: bad})


def test_callback_ints_are_fine_for_floats():
    plateau = ReduceLROnPlateau(factor=np.float32(0.5), min_delta=0, min_lr=0, eps=0,
                                patience=np.int64(2))
    assert (plateau.factor, plateau.min_delta, plateau.patience) == (0.5, 0.0, 2)
    assert type(plateau.patience) is int and type(plateau.min_lr) is float
    assert ExponentialLR(gamma=1).gamma == 1.0 and CosineAnnealingLR(3, eta_min=0).eta_min == 0.0
    assert EarlyStopping(restore_best_weights=np.bool_(False)).restore_best_weights is False


def test_schedule_without_optimizer_is_a_clear_error():
    with pytest.raises(ValueError, match="optimizer"):
        StepLR(2).on_epoch_end(SimpleNamespace(optimizer=None), {})


def test_base_callback_is_a_no_op_and_lambda_forwards():
    net = stub_network()
    base = Callback()
    base.on_train_begin(net)
    base.on_epoch_end(net, {"loss": 1.0})
    base.on_train_end(net)
    calls = []
    cb = LambdaCallback(on_epoch_end=lambda n, logs: calls.append(("epoch", logs["epoch"])),
                        on_train_begin=lambda n: calls.append("begin"),
                        on_train_end=lambda n: calls.append("end"))
    X, y = tiny_data()
    tiny_net().fit(X, y, epochs=2, callbacks=[cb], verbose=0)
    assert calls[:3] == ["begin", ("epoch", 0), ("epoch", 1)]
    assert calls[3:] in ([], ["end"])         # on_train_end is called by fit once it has it
