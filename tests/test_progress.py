"""Training progress as a user sees it: a widget bar in Jupyter, a bar on a terminal, lines in a pipe.

The notebook is executed once for the whole module by a real Jupyter kernel
(nbclient + ipykernel + ipywidgets, the ``[dev]`` extra); the terminal case runs
in a real pseudo-terminal.
"""

import json
import os
import re
import subprocess
import sys
import types

import pytest

import fastnn
from fastnn import progress

EPOCHS = 3
# One plain progress line, as printed to a pipe or a log.
PLAIN_LINE = re.compile(r"^epoch \d+/\d+ - loss .* samples/s\)$", re.MULTILINE)

TRAIN = f"""
import json
import numpy as np
import fastnn
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 5))
y = (X[:, 0] > 0).astype(int)
net = fastnn.Network([fastnn.Dense(5, 8, "relu"), fastnn.Dense(8, 2)], seed=0)
history = net.fit(X, y, epochs={EPOCHS}, batch_size=16, verbose=1)
"""


# ---- Jupyter ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """The executed notebook: cell 0 names the fastnn it imports, cell 1 trains, cell 2 reports."""
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat ([dev])")
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient ([dev])")
    pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel ([dev])")
    pytest.importorskip("ipywidgets", reason="the notebook test needs ipywidgets ([dev])")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import fastnn, os, sys; print(os.path.realpath(fastnn.__file__)); "
                                  "print(sys.executable)"),
        nbformat.v4.new_code_cell(TRAIN),
        nbformat.v4.new_code_cell("print(json.dumps(history.history['loss']))"),
    ]
    # A kernel spec of this very interpreter: the installed "python3" spec runs whatever
    # "python" is first on PATH. The kernel inherits this process's environment, PYTHONPATH
    # included (cell 0 checks it imports the fastnn under test).
    spec = tmp_path_factory.mktemp("jupyter")
    (spec / "kernels" / "fastnn-test").mkdir(parents=True)
    (spec / "kernels" / "fastnn-test" / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fastnn test", "language": "python"}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(spec))
        nbclient.NotebookClient(nb, timeout=300, kernel_name="fastnn-test",
                                store_widget_state=True).execute()
    return nb


def _stream_text(cell):
    return "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream")


def _widget_text(widget):
    """A widget's text with tqdm's figure spaces made plain."""
    return str(widget["state"]["value"]).replace("\u2007", " ")


def test_notebook_uses_the_fastnn_under_test(notebook):
    assert _stream_text(notebook.cells[0]).split("\n")[:2] == [os.path.realpath(fastnn.__file__),
                                                              sys.executable]


def test_notebook_progress_is_one_widget_bar_per_epoch_without_plain_lines(notebook):
    train = notebook.cells[1]
    views = [out.data["application/vnd.jupyter.widget-view+json"]["model_id"]
             for out in train.outputs if out.output_type == "display_data"
             and "application/vnd.jupyter.widget-view+json" in out.data]
    assert len(views) == EPOCHS
    # No plain per-epoch lines, and no stream output at all (no tqdm fallback warning either).
    assert not PLAIN_LINE.search(_stream_text(train))
    assert [out.output_type for out in train.outputs] == ["display_data"] * EPOCHS

    # Each bar ended full and kept its epoch's logs, as the terminal bar does.
    losses = json.loads(_stream_text(notebook.cells[2]))
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    for epoch, model_id in enumerate(views):
        box = state[model_id]
        assert box["model_name"] == "HBoxModel"
        children = [state[child.removeprefix("IPY_MODEL_")] for child in box["state"]["children"]]
        label, bar, text = (_widget_text(c) for c in children)
        assert label.startswith(f"epoch {epoch + 1}/{EPOCHS}: 100%")
        assert children[1]["state"]["value"] == children[1]["state"]["max"] == 4  # 64 / batch 16
        assert f"loss {losses[epoch]:.4g} - accuracy " in text


class _Shell:
    def __init__(self, kernel):
        self.kernel = kernel


@pytest.mark.parametrize("shell, widgets, expected", [
    (None, True, None),                      # plain Python: no IPython running
    (_Shell(kernel=None), True, None),       # terminal IPython: the tty rules apply
    (_Shell(kernel=object()), False, None),  # a kernel without ipywidgets: plain lines
    (_Shell(kernel=object()), True, "widget"),
])
def test_notebook_detection(monkeypatch, shell, widgets, expected):
    pytest.importorskip("ipywidgets", reason="needs ipywidgets ([dev])")
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", fake)
    if not widgets:
        monkeypatch.setitem(sys.modules, "ipywidgets", None)   # import raises ImportError
    bar = progress._notebook_tqdm()
    if expected is None:
        assert bar is None
    else:
        from tqdm.notebook import tqdm
        assert bar is tqdm
        assert progress.Progress(1, 2).wants_updates
        assert not progress.Progress(0, 2).wants_updates


def test_a_plain_process_never_imports_ipython():
    code = ("import sys, fastnn, numpy as np; "
            "net = fastnn.Network([fastnn.Dense(2, 2)]); "
            "net.fit(np.zeros((4, 2)), np.array([0, 1, 0, 1]), verbose=1); "
            "print(sorted(m for m in ('IPython', 'ipywidgets', 'tqdm.notebook') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_logs_never_show_negative_zero():
    logs = {"epoch": 0, "loss": -0.0, "accuracy": 1.0, "lr": 0.5, "seconds": 1.0}
    assert progress._format_logs(logs) == "loss 0 - accuracy 1 - lr 0.5"


# ---- terminal and pipe --------------------------------------------------------------

def _train_script():
    return [sys.executable, "-c", TRAIN]


def test_pipe_gets_one_plain_line_per_epoch():
    result = subprocess.run(_train_script(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = PLAIN_LINE.findall(result.stdout)
    assert [line.split(" - ")[0] for line in lines] == [f"epoch {k}/{EPOCHS}"
                                                        for k in range(1, EPOCHS + 1)]
    assert "\r" not in result.stdout + result.stderr     # nothing is redrawn


@pytest.mark.parametrize("columns", [100, 0], ids=["sized", "unsized"])
def test_terminal_gets_a_tqdm_bar_per_epoch(columns):
    """On a pseudo-terminal of 100 columns, and on one never sized (0 x 0, where tqdm alone
    would draw nothing)."""
    pty = pytest.importorskip("pty", reason="needs a POSIX pseudo-terminal")
    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    try:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24 if columns else 0,
                                                              columns, 0, 0))
        proc = subprocess.Popen(_train_script(), stdout=follower, stderr=follower,
                                stdin=subprocess.DEVNULL, close_fds=True)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:        # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=300) == 0
    finally:
        os.close(leader)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert not PLAIN_LINE.search(screen.replace("\r", "\n"))
    for k in range(1, EPOCHS + 1):
        assert re.search(rf"epoch {k}/{EPOCHS}: 100%.*4/4 .*loss \d\S* - accur", screen), screen
    assert "\r" in screen   # a bar, redrawn in place
