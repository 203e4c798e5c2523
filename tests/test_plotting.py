"""Tests for fastnn.plotting: the PNG is real, both history forms work, bad input is refused."""

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from fastnn.plotting import plot_format, plot_history  # noqa: E402

HISTORY = {
    "loss": [1.2, 0.8, 0.55, 0.4, 0.33],
    "val_loss": [1.3, 0.9, 0.7, 0.62, 0.6],
    "accuracy": [0.55, 0.7, 0.81, 0.87, 0.9],
    "val_accuracy": [0.5, 0.66, 0.75, 0.8, 0.82],
}


class _Fit:
    def __init__(self, history):
        self.history = history


def _check_png(path, min_width):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
    image = imread(path)
    height, width = image.shape[:2]
    assert height >= 200 and width >= min_width
    assert np.ptp(image[..., :3]) > 0.5  # drawn, not one flat colour
    return image


def test_two_panels_from_dict(tmp_path):
    path = tmp_path / "history.png"
    plot_history(HISTORY, path)
    image = _check_png(path, min_width=400)
    assert image.shape[1] > image.shape[0]  # loss and accuracy side by side


def test_object_with_history_draws_the_same_as_dict(tmp_path):
    plot_history(HISTORY, tmp_path / "dict.png")
    plot_history(_Fit(HISTORY), tmp_path / "object.png")
    assert np.array_equal(imread(tmp_path / "dict.png"), imread(tmp_path / "object.png"))


def test_loss_only_gives_one_narrower_panel(tmp_path):
    plot_history(HISTORY, tmp_path / "both.png")
    loss_only = tmp_path / "loss.png"
    plot_history(_Fit({"loss": np.array([0.9, 0.5, 0.3])}), str(loss_only))
    assert _check_png(loss_only, 200).shape[1] < imread(tmp_path / "both.png").shape[1]


@pytest.mark.parametrize("history", [{}, _Fit({}), {"loss": []}, {"lr": [0.1, 0.1]}])
def test_empty_history_raises(tmp_path, history):
    with pytest.raises(ValueError, match="no per-epoch"):
        plot_history(history, tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match=r"\.history"):
        plot_history([0.5, 0.4], tmp_path / "x.png")
    with pytest.raises(ValueError, match="one value per epoch"):
        plot_history({"loss": [[1, 2], [3, 4]]}, tmp_path / "x.png")


def test_missing_matplotlib_message(tmp_path, monkeypatch):
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"pip install fastnn-numba\[plot\]"):
        plot_history(HISTORY, tmp_path / "x.png")


@pytest.mark.parametrize("name, magic", [("curves.pdf", b"%PDF-"), ("curves.SVG", b"<?xml"),
                                         ("curves.Png", b"\x89PNG\r\n\x1a\n")])
def test_the_extension_chooses_the_format(tmp_path, name, magic):
    plot_history(HISTORY, tmp_path / name)
    data = (tmp_path / name).read_bytes()
    assert data.startswith(magic)
    if name.endswith("SVG"):
        assert b"<svg" in data


@pytest.mark.parametrize("name", ["curves.jpg", "curves", "curves.png.txt"])
def test_other_extensions_are_refused_and_nothing_is_written(tmp_path, name):
    with pytest.raises(ValueError, match=r"unsupported extension .*use \.png, \.pdf, \.svg"):
        plot_history(HISTORY, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
    assert plot_format(tmp_path / "x.PDF") == "pdf"
