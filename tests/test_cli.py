"""Tests for the ``fastnn`` command line: in-process through ``main`` and as the console script."""

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import cli
from fastnn.datasets import DatasetError, load_digits, train_test_split, write_idx
from fastnn.io import ModelFileError, load, save

ACCURACY = re.compile(r"test accuracy (\d\.\d+)")


def _console_script():
    """The installed ``fastnn`` script, else the same entry point through ``-m``."""
    script = shutil.which("fastnn")
    return [script] if script else [sys.executable, "-m", "fastnn.cli"]


def _run(args, cwd):
    return subprocess.run(_console_script() + args, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _test_split():
    X, y = load_digits()
    _, X_test, _, y_test = train_test_split(X, y, test_fraction=0.2, seed=0)
    return X_test, y_test


def _error_line(stderr):
    """The single stderr line of a runtime error, checked for its form."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("fastnn: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small digits model trained in-process, and what ``train`` printed."""
    folder = tmp_path_factory.mktemp("cli")
    model = folder / "model.npz"
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = cli.main(["train", "--layers", "32", "--epochs", "5", "--save", str(model),
                         "--seed", "1"])
    assert code == 0
    return model, output.getvalue()


# ---- train ---------------------------------------------------------------------


def test_train_with_no_arguments_reaches_95_percent(capsys):
    assert cli.main(["train"]) == 0
    out = capsys.readouterr().out
    assert "64 -> 128 relu -> 64 relu -> 10 softmax" in out
    assert "Adam(lr=0.001" in out and "batch size 32, 10 epochs" in out
    assert re.search(r"compiled kernels in \d+\.\d\d s", out)
    assert "epoch 10/10" in out
    assert float(ACCURACY.search(out).group(1)) >= 0.95


def test_console_script_train_writes_model_history_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    result = _run(["train", "--epochs", "2", "--save", "m.npz", "--history", "h.json",
                   "--plot", "c.png"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "epoch 2/2" in result.stdout
    for line in ("saved model to m.npz", "saved history to h.json", "saved plot to c.png"):
        assert line in result.stdout
    history = json.loads((tmp_path / "h.json").read_text())
    assert len(history["loss"]) == len(history["accuracy"]) == 2
    assert history["loss"][1] < history["loss"][0]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    net = load(tmp_path / "m.npz")
    accuracy = float(ACCURACY.search(result.stdout).group(1))
    X_test, y_test = _test_split()
    assert net.evaluate(X_test, y_test)["accuracy"] == pytest.approx(accuracy, abs=5e-5)
    assert type(net.optimizer).__name__ == "Adam" and net.optimizer.state["t"] == 2 * 45


def test_console_script_reports_a_missing_model_in_one_line(tmp_path):
    result = _run(["info", "missing.npz"], cwd=tmp_path)
    assert result.returncode == 1
    assert "missing.npz" in _error_line(result.stderr)


def test_console_script_usage_error_exits_2(tmp_path):
    result = _run(["train", "--layers", "abc"], cwd=tmp_path)
    assert result.returncode == 2
    assert "--layers" in result.stderr and "Traceback" not in result.stderr


def test_validation_split_and_quiet(tmp_path, capsys):
    history = tmp_path / "h.json"
    code = cli.main(["train", "--layers", "8", "--epochs", "2", "--validation-split", "0.25",
                     "--optimizer", "momentum", "--dtype", "float64", "--history", str(history),
                     "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and ACCURACY.search(out)  # only the test result
    records = json.loads(history.read_text())
    assert len(records["val_loss"]) == len(records["val_accuracy"]) == 2


def test_validation_split_holds_out_the_last_fraction_after_a_seeded_shuffle(capsys):
    assert cli.main(["train", "--layers", "8", "--epochs", "1",
                     "--validation-split", "0.1"]) == 0
    # 1437 training samples of digits: round(143.7) = 144 held out
    assert "(1293 train, 144 validation, 360 test samples" in capsys.readouterr().out
    X, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    X_train, y_train, (X_val, y_val) = cli._validation_split(X, y, 0.3, seed=5)
    order = np.random.default_rng(5).permutation(10)
    np.testing.assert_array_equal(y_train, order[:7])
    np.testing.assert_array_equal(y_val, order[7:])
    np.testing.assert_array_equal(X_val, X[order[7:]])


def test_train_on_mnist_folder(tmp_path, capsys):
    """The official split: train files for training, t10k files for the test."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 12)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28)).astype(np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    assert cli.main(["train", "--data", f"mnist:{tmp_path}", "--layers", "8", "--epochs", "1",
                     "--save", str(tmp_path / "m.npz")]) == 0
    out = capsys.readouterr().out
    assert "(40 train, 12 test samples; 784 features, 10 classes)" in out
    assert cli.main(["evaluate", str(tmp_path / "m.npz"), "--data", f"mnist:{tmp_path}"]) == 0
    assert "(12 samples)" in capsys.readouterr().out


def test_train_on_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    table = np.column_stack([np.arange(30) % 3, rng.integers(0, 256, (30, 4))])
    path = tmp_path / "data.csv"
    np.savetxt(path, table, fmt="%d", delimiter=",", header="label,a,b,c,d", comments="")
    assert cli.main(["train", "--data", f"csv:{path}", "--layers", "4", "--epochs", "1"]) == 0
    assert "(24 train, 6 test samples; 4 features, 3 classes)" in capsys.readouterr().out


# ---- evaluate, info, predict -----------------------------------------------------


def test_evaluate_prints_what_train_printed(trained, capsys):
    model, train_output = trained
    assert cli.main(["evaluate", str(model)]) == 0
    out = capsys.readouterr().out.strip()
    assert re.fullmatch(r"test loss \d\.\d{4} - test accuracy \d\.\d{4} \(360 samples\)", out)
    assert out in train_output


def test_info(trained, capsys):
    model, _ = trained
    assert cli.main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert "architecture: 64 -> 32 relu -> 10 softmax" in out
    assert "parameters:   2,410" in out  # 64*32 + 32 + 32*10 + 10
    assert "dtype:        float32" in out and "seed:         1" in out
    assert f"written by fastnn {fastnn.__version__}" in out
    assert "optimizer:    adam(lr=0.001" in out and "after 225 steps" in out  # 5 x 45


def test_info_shows_dropout_layers(tmp_path, capsys):
    net = fastnn.Network([fastnn.Dense(4, 6, "tanh"), fastnn.Dropout(0.2), fastnn.Dense(6, 2)],
                         loss="binary_cross_entropy", dtype="float64", seed=7)
    save(net, tmp_path / "d.npz")
    assert cli.main(["info", str(tmp_path / "d.npz")]) == 0
    out = capsys.readouterr().out
    assert "architecture: 4 -> 6 tanh -> dropout 0.2 -> 2 sigmoid" in out
    assert "layer 1: Dropout(0.2)" in out and "optimizer:    not saved" in out


def test_info_shows_gradient_clipping(tmp_path, capsys):
    X, y = _test_split()
    net = fastnn.Network([fastnn.Dense(64, 10)], seed=2)
    net.fit(X[:20], y[:20], epochs=1, batch_size=10, verbose=0,
            optimizer=fastnn.Adam(0.01, clip_norm=0.5))
    save(net, tmp_path / "c.npz", include_optimizer=True)
    assert cli.main(["info", str(tmp_path / "c.npz")]) == 0
    out = capsys.readouterr().out
    assert "weight_decay=0.0, clip_norm=0.5), after 2 steps" in out
    assert "clip_value" not in out                     # unset: not shown


def test_info_shows_a_checkpoint(tmp_path, capsys):
    X, y = _test_split()
    net = fastnn.Network([fastnn.Dense(64, 8, "relu"), fastnn.Dropout(0.1), fastnn.Dense(8, 10)],
                         seed=4)
    path = tmp_path / "run.npz"
    history = net.fit(X[:100], y[:100], epochs=3, batch_size=16, verbose=0,
                      optimizer=fastnn.SGD(0.05, momentum=0.9), checkpoint=path,
                      callbacks=[fastnn.callbacks.StepLR(2, gamma=0.5),
                                 fastnn.EarlyStopping(monitor="loss", patience=5)])
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^(\w[\w ]*): +(.*)$", out, re.MULTILINE))
    assert rows["file"] == str(path)
    assert rows["format"].startswith("fastnn-checkpoint 1, a training checkpoint")
    assert rows["architecture"] == "64 -> 8 relu -> dropout 0.1 -> 10 softmax"
    assert rows["parameters"] == "610" and rows["seed"] == "4"   # 64*8+8 + 8*10+10
    assert rows["epoch"] == "3 finished (batch size 16, 100 training samples)"
    assert rows["optimizer"] == ("sgd(lr=0.025, momentum=0.9, nesterov=False, weight_decay=0.0, "
                                 "dampening=0.0), after 21 steps")   # 3 x ceil(100/16); StepLR
    assert rows["history"] == f"3 epochs, last loss {history.history['loss'][-1]:.4g}"
    assert rows["callbacks"] == "state of StepLR saved"   # EarlyStopping keeps none
    assert "  layer 1: Dropout(0.1)" in out


def test_info_on_a_corrupted_checkpoint_says_so(tmp_path, capsys):
    X, y = _test_split()
    net = fastnn.Network([fastnn.Dense(64, 10)])
    path = tmp_path / "run.npz"
    net.fit(X[:50], y[:50], epochs=1, verbose=0, checkpoint=path)
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["params"] = arrays["params"] + 1
    np.savez(path, **arrays)
    assert cli.main(["info", str(path)]) == 1
    line = _error_line(capsys.readouterr().err)
    assert str(path) in line and "checksum mismatch (corrupted checkpoint)" in line


def test_predict_npy_prints_one_label_per_line(trained, tmp_path, capsys):
    model, _ = trained
    X_test, _ = _test_split()
    np.save(tmp_path / "x.npy", X_test[:7])
    assert cli.main(["predict", str(model), "--input", str(tmp_path / "x.npy")]) == 0
    lines = capsys.readouterr().out.split()
    assert lines == [str(v) for v in load(model).predict(X_test[:7])]


def test_predict_csv_with_header_to_file(trained, tmp_path, capsys):
    model, _ = trained
    X_test, y_test = _test_split()
    raw = np.rint(X_test * 16).astype(int)  # the digits' original 0..16 pixel values
    header = ",".join(f"pixel{i}" for i in range(64))
    np.savetxt(tmp_path / "x.csv", raw, fmt="%d", delimiter=",", header=header, comments="")
    out_file = tmp_path / "preds.csv"
    assert cli.main(["predict", str(model), "--input", str(tmp_path / "x.csv"),
                     "--scale", "16", "--output", str(out_file)]) == 0
    assert f"saved 360 predictions to {out_file}" in capsys.readouterr().out
    predicted = np.array(out_file.read_text().split(), dtype=np.int64)
    np.testing.assert_array_equal(predicted, load(model).predict(X_test))
    assert np.mean(predicted == y_test) > 0.8


def test_predict_writes_round_trippable_floats_for_regression(tmp_path, capsys):
    net = fastnn.Network([fastnn.Dense(3, 2, "tanh")], loss="mse", dtype="float64")
    save(net, tmp_path / "r.npz")
    X = np.random.default_rng(0).standard_normal((4, 3))
    np.save(tmp_path / "x.npy", X)
    assert cli.main(["predict", str(tmp_path / "r.npz"), "--input", str(tmp_path / "x.npy")]) == 0
    rows = [list(map(float, line.split(","))) for line in capsys.readouterr().out.split()]
    np.testing.assert_array_equal(np.array(rows), net.predict(X))


# ---- errors and exit codes ----------------------------------------------------------


@pytest.mark.parametrize("argv, where", [
    (["info", "{tmp}/missing.npz"], "missing.npz"),
    (["evaluate", "{tmp}/missing.npz"], "missing.npz"),
    (["train", "--data", "mnist:{tmp}/no-such-dir", "--epochs", "1"], "no-such-dir"),
    (["train", "--data", "csv:{tmp}/no.csv"], "no.csv"),
    (["train", "--save", "{tmp}/no-dir/m.npz"], "does not exist"),
    (["info", "{tmp}/bad.npz"], "not an .npz"),
    (["predict", "{tmp}/bad.npz", "--input", "x.npy"], "not an .npz"),
    (["predict", "{model}", "--input", "{tmp}/x.txt"], "use .npy or .csv"),
    (["predict", "{model}", "--input", "{tmp}/wide.npy"], "65 features but the network "
                                                           "expects 64"),
    (["predict", "{model}", "--input", "{tmp}/ragged.csv"], "line 3 has 2 values"),
    (["predict", "{model}", "--input", "{tmp}/pick.npy"], "pick.npy: holds an object array "
                                                          "(pickled Python objects)"),
    (["predict", "{model}", "--input", "{tmp}/text.npy"], "text.npy: not an .npy file"),
    (["predict", "{model}", "--input", "{tmp}/cut.npy"], "cut.npy: not a valid .npy file"),
    (["predict", "{model}", "--input", "{tmp}/words.npy"], "words.npy: holds a <U1 array"),
])
def test_runtime_errors_exit_1_with_one_line(trained, tmp_path, capsys, argv, where):
    (tmp_path / "bad.npz").write_text("not a model")
    (tmp_path / "x.txt").write_text("1 2 3")
    (tmp_path / "ragged.csv").write_text("a,b,c\n1,2,3\n4,5\n")
    np.save(tmp_path / "wide.npy", np.zeros((2, 65)))
    np.save(tmp_path / "pick.npy", np.array([{"a": 1}, 2], dtype=object), allow_pickle=True)
    (tmp_path / "text.npy").write_text("1,2,3")
    np.save(tmp_path / "cut.npy", np.zeros((10, 64)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "cut.npy").read_bytes()[:300])
    np.save(tmp_path / "words.npy", np.array(["a", "b"]))
    argv = [a.format(tmp=tmp_path, model=trained[0]) for a in argv]
    assert cli.main(argv) == 1
    line = _error_line(capsys.readouterr().err)
    assert where in line


@pytest.mark.parametrize("error", [
    FileNotFoundError("f"), ValueError("v"), ModelFileError("m"), DatasetError("d"),
    TypeError("t"), ConnectionError("c"), ImportError("needs matplotlib"),
    FloatingPointError("training diverged"), ValueError("two\nlines"),
], ids=lambda e: type(e).__name__)
def test_expected_exceptions_become_exit_1(monkeypatch, capsys, error):
    def raising(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "warmup", raising)
    assert cli.main(["train", "--epochs", "1"]) == 1
    assert _error_line(capsys.readouterr().err) == \
        "fastnn: error: " + " ".join(str(error).split())


def test_ctrl_c_exits_130_quietly(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "warmup", interrupted)
    assert cli.main(["train", "--quiet"]) == 130
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_a_bug_still_shows_its_traceback(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "warmup", broken)
    with pytest.raises(RuntimeError):
        cli.main(["train", "--quiet"])


@pytest.mark.parametrize("argv", [
    [], ["fit"], ["train", "--layers", "abc"], ["train", "--layers", "128,0"],
    ["train", "--bogus"], ["train", "--epochs", "0"], ["train", "--lr", "-1"],
    ["train", "--validation-split", "1.5"], ["train", "--data", "imagenet"],
    ["train", "--data", "csv"], ["train", "--download"], ["train", "--optimizer", "lbfgs"],
    ["predict", "m.npz"], ["info"],
], ids=" ".join)
def test_usage_errors_exit_2(capsys, argv):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: fastnn" in err and "Traceback" not in err


def test_help_and_version_exit_0(capsys):
    assert cli.main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0
    assert fastnn.__version__ in capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "info"):
        assert cli.main([command, "--help"]) == 0
        capsys.readouterr()


# ---- rough edges a new user hit -------------------------------------------------------


def test_train_rejects_single_class_labels_naming_the_file(tmp_path, capsys):
    """Raw digits pixels without a label column: the first pixel (always 0) became the label."""
    X, _ = load_digits(scale=False)
    path = tmp_path / "raw.csv"
    np.savetxt(path, X[:5].astype(int), fmt="%d", delimiter=",")
    assert cli.main(["train", "--data", f"csv:{path}", "--epochs", "1"]) == 1
    captured = capsys.readouterr()
    assert "classes" not in captured.out and "test accuracy" not in captured.out
    line = _error_line(captured.err)
    assert f"csv:{path}" in line
    assert "all 4 training samples have label 0, so there is only 1 class" in line
    assert "needs at least 2" in line and "label column" in line


def test_train_plot_honours_pdf_and_refuses_jpg_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["train", "--layers", "4", "--epochs", "1", "--quiet",
                     "--plot", str(tmp_path / "curves.pdf")]) == 0
    assert (tmp_path / "curves.pdf").read_bytes()[:5] == b"%PDF-"
    capsys.readouterr()
    assert cli.main(["train", "--epochs", "1", "--plot", str(tmp_path / "curves.jpg")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""      # refused before loading data or training
    line = _error_line(captured.err)
    assert "curves.jpg" in line and "use .png, .pdf, .svg" in line


def test_train_lines_say_one_epoch_one_sample_and_no_negative_zero(tmp_path, capsys):
    table = np.column_stack([np.arange(5) % 2, np.arange(5)])
    path = tmp_path / "tiny.csv"
    np.savetxt(path, table, fmt="%d", delimiter=",")
    assert cli.main(["train", "--data", f"csv:{path}", "--layers", "2", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "(4 train, 1 test sample; 1 feature, 2 classes)" in out
    assert "batch size 32, 1 epoch\n" in out
    assert re.search(r"^trained 1 epoch in ", out, re.MULTILINE)
    assert re.search(r"\(1 sample\)$", out, re.MULTILINE)
    assert "epochs" not in out and "samples)" not in out


@pytest.mark.parametrize("loss, shown", [(-0.0, "0.0000"), (-1e-9, "0.0000"),
                                         (-4e-5, "0.0000"), (-6e-5, "-0.0001"),
                                         (0.12344, "0.1234")])
def test_metrics_line_never_prints_negative_zero(loss, shown):
    assert cli._metrics_line({"loss": loss, "accuracy": 1.0}, 2) == \
        f"test loss {shown} - test accuracy 1.0000 (2 samples)"


def test_plural_words():
    assert [cli._plural(n, "class") for n in (0, 1, 2)] == ["0 classes", "1 class", "2 classes"]
    assert [cli._plural(n, "epoch") for n in (1, 10)] == ["1 epoch", "10 epochs"]
    assert cli._plural(1, "test sample") == "1 test sample"
    assert cli._plural(360, "test sample") == "360 test samples"
