"""Plots of training runs. Needs the optional matplotlib extra (``fastnn-numba[plot]``)."""

import os
from collections.abc import Mapping

import numpy as np

__all__ = ["FORMATS", "plot_format", "plot_history"]

#: File extension -> the format written (matplotlib's name for it).
FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}

# panel -> (y-axis label, ((history key, legend label), ...))
_PANELS = (
    ("loss", (("loss", "train"), ("val_loss", "validation"))),
    ("accuracy", (("accuracy", "train"), ("val_accuracy", "validation"))),
)


def plot_format(path):
    """The image format that ``path``'s extension asks for: ``"png"``, ``"pdf"`` or ``"svg"``.

    Parameters
    ----------
    path : str or os.PathLike

    Raises
    ------
    ValueError
        The extension (case-insensitive) is none of ``.png``, ``.pdf``, ``.svg``.
    """
    name = os.fspath(path)
    ext = os.path.splitext(name)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"cannot plot to {name}: unsupported extension {ext or '(none)'!r}; "
                         f"use {', '.join(FORMATS)}")
    return FORMATS[ext]


def plot_history(history, path):
    """Save loss and accuracy per epoch as a PNG, PDF or SVG image (from ``path``'s extension).

    One panel shows the loss and, when the history holds accuracy, a second panel
    shows it; each panel has the training curve and the validation curve when
    present. The figure is drawn with matplotlib's Agg canvas, so no window is
    opened and the pyplot state is untouched.

    Parameters
    ----------
    history : mapping or object with a ``history`` mapping
        Maps ``"loss"``, ``"val_loss"``, ``"accuracy"``, ``"val_accuracy"`` to
        sequences of shape (n_epochs,); epoch ``i`` is plotted at ``x = i + 1``.
        Other keys are ignored.
    path : str or os.PathLike
        Where the image is written; its extension (``.png``, 100 dpi, ``.pdf``
        or ``.svg``) chooses the format, see :func:`plot_format`.

    Raises
    ------
    ImportError
        matplotlib is not installed.
    ValueError
        The history has neither a non-empty ``"loss"`` nor ``"accuracy"`` series,
        a series is not one-dimensional, or ``path`` has another extension.
        Nothing is written then.
    TypeError
        ``history`` is neither a mapping nor has a ``history`` mapping.
    """
    fmt = plot_format(path)
    records = history if isinstance(history, Mapping) else getattr(history, "history", None)
    if not isinstance(records, Mapping):
        raise TypeError(
            "history must be a dict of per-epoch lists or an object with a .history dict, "
            f"got {type(history).__name__}"
        )
    panels = []
    for ylabel, series in _PANELS:
        curves = []
        for key, label in series:
            if key not in records:
                continue
            values = np.asarray(records[key], dtype=np.float64)
            if values.ndim != 1:
                raise ValueError(f"history[{key!r}] must be one value per epoch, got shape {values.shape}")
            if values.size:
                curves.append((values, label))
        if curves:
            panels.append((ylabel, curves))
    if not panels:
        raise ValueError(
            "history has no per-epoch 'loss' or 'accuracy' values to plot "
            f"(keys present: {sorted(records)})"
        )

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install fastnn-numba[plot]") from exc

    fig = Figure(figsize=(5.5 * len(panels), 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (ylabel, curves) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for values, label in curves:
            ax.plot(np.arange(1, values.size + 1), values, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.capitalize())
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("Training history")
    fig.savefig(path, format=fmt, dpi=100)
