"""Labelled CSV tables in the common MNIST form: the label first, then the features."""

import os

import numpy as np

from ._base import DatasetError, _finish, _read_bytes

def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _csv_error(name, lines, width):
    """Find the first ragged row or non-numeric cell among ``(line number, text)`` pairs."""
    for line, text in lines:
        cells = text.split(",")
        if len(cells) != width:
            return DatasetError(
                f"{name}: line {line} has {len(cells)} columns, expected {width} like line {lines[0][0]}"
            )
        for column, cell in enumerate(cells, start=1):
            if not _is_number(cell):
                return DatasetError(f"{name}: line {line}, column {column}: {cell!r} is not a number")
    return None


def load_csv(path, *, scale=True, one_hot=False, dtype="float32", n_features=None, header="auto"):
    """Load a labelled CSV table in the common MNIST form: label first, then pixel values.

    Blank lines are skipped. The file may be gzipped (detected from its magic bytes).
    The first column is always read as the label: a table of features alone
    loads without error but with its first feature as ``y`` (often a single
    value, such as an always-zero corner pixel), so check ``np.unique(y)``
    before training on a file of unknown layout.

    Parameters
    ----------
    path : str or os.PathLike
    scale : bool, default True
        Divide the feature values by 255.
    one_hot : bool, default False
        Return the labels one-hot encoded with ``max(10, largest label + 1)``
        columns.
    dtype : str or numpy dtype, default "float32"
        Floating dtype of ``X`` (and of ``y`` when one-hot).
    n_features : int, optional
        Required number of feature columns (784 for MNIST).
    header : {"auto", True, False}, default "auto"
        Whether the first line is a header. ``"auto"``: it is one when any of its
        cells is not a number.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), int64, or (n_samples, n_classes), ``dtype``

    Raises
    ------
    DatasetError
        Empty file, ragged rows, non-numeric or non-finite cells, negative or
        non-integer labels, or a feature count other than ``n_features``; the
        message names the file and, where there is one, the line.
    """
    if header not in ("auto", True, False):
        raise ValueError(f"header must be 'auto', True or False, got {header!r}")
    name = os.fspath(path)
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{name}: not UTF-8 text ({exc})") from exc
    # (line number, text) of every non-blank line
    rows = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if rows and (header is True
                 or (header == "auto" and not all(map(_is_number, rows[0][1].split(","))))):
        rows = rows[1:]
    if not rows:
        raise DatasetError(f"{name}: no data rows")
    width = len(rows[0][1].split(","))
    if width < 2:
        raise DatasetError(f"{name}: line {rows[0][0]} has 1 column; need a label and features")
    lines = [text for _, text in rows]
    table = None
    # numpy's C parser, integers first (several times faster, and what MNIST holds);
    # when both fail, scan the lines once to say where and why
    for parse_dtype in (np.int64, np.float64):
        try:
            table = np.loadtxt(lines, delimiter=",", dtype=parse_dtype, ndmin=2, comments=None)
            break
        except ValueError as exc:
            error = exc
    if table is None:
        raise (_csv_error(name, rows, width) or DatasetError(f"{name}: {error}")) from None
    nonfinite = np.flatnonzero(~np.isfinite(table).all(axis=1))
    if nonfinite.size:
        raise DatasetError(f"{name}: line {rows[nonfinite[0]][0]} has a non-finite value")
    labels = table[:, 0]
    bad = np.flatnonzero((labels < 0) | (labels != np.floor(labels)))
    if bad.size:
        raise DatasetError(
            f"{name}: line {rows[bad[0]][0]}: label {labels[bad[0]]:g} is not a non-negative integer"
        )
    if n_features is not None and width - 1 != n_features:
        raise DatasetError(f"{name}: {width - 1} feature columns, expected n_features={n_features}")
    return _finish(
        table[:, 1:], labels,
        max_value=255, scale=scale, one_hot=one_hot, dtype=dtype,
        n_classes=max(10, int(labels.max()) + 1),
    )
