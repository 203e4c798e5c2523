"""Per-epoch progress: a widget bar in Jupyter, a tqdm bar on a terminal, plain lines otherwise."""

import os
import sys


def _format_logs(logs):
    parts = []
    for key, value in logs.items():
        if key in ("epoch", "seconds", "samples_per_second"):
            continue
        if isinstance(value, float):
            parts.append(f"{key} {value + 0.0:.4g}")   # + 0.0: never print "-0"
        else:
            parts.append(f"{key} {value}")
    return " - ".join(parts)


def _notebook_tqdm():
    """tqdm's widget bar class inside a Jupyter (IPython) kernel with ipywidgets, else None.

    Only an IPython that is already running is asked: a plain Python process
    never imports IPython, ipywidgets or tqdm.notebook here.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or getattr(shell, "kernel", None) is None:   # no kernel: a terminal IPython
        return None
    try:
        import ipywidgets  # noqa: F401  (without it tqdm.notebook falls back to text, noisily)
        from tqdm.notebook import tqdm
    except ImportError:
        return None
    return tqdm


def _terminal_sized(stream):
    """Whether the terminal reports a size (a pseudo-terminal never sized reports 0 x 0)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return size.columns > 0 and size.lines > 0


class Progress:
    """Reports training progress; ``verbose=0`` is silent.

    In a Jupyter notebook (an IPython kernel with ipywidgets installed) each
    epoch gets a widget bar; on a terminal it gets a tqdm text bar; both show
    the running loss and the throughput, and keep the epoch's final logs when
    it ends. When the output is a file or a pipe (logs, batch jobs), or a
    notebook without ipywidgets, each epoch prints exactly one line and
    nothing is redrawn.

    Parameters
    ----------
    verbose : {0, 1}
    epochs : int
        The total number of epochs (shown as ``epoch k/epochs``).
    stream : file-like, optional
        Where the terminal bar is drawn; default ``sys.stderr``. Giving a
        stream also turns the notebook bar off (the output goes to it).
    """

    def __init__(self, verbose, epochs, stream=None):
        self.verbose = verbose
        self.epochs = epochs
        self.stream = stream if stream is not None else sys.stderr
        self._bar_class = None
        self._notebook = False
        if verbose:
            notebook = _notebook_tqdm() if stream is None else None
            if notebook is not None:
                self._bar_class, self._notebook = notebook, True
            elif hasattr(self.stream, "isatty") and self.stream.isatty():
                from tqdm import tqdm

                self._bar_class = tqdm
        self._bar = None

    @property
    def wants_updates(self):
        """Whether mid-epoch updates are shown (only a bar, terminal or widget, needs them)."""
        return self._bar_class is not None

    def start_epoch(self, epoch, steps):
        self.epoch = epoch
        if self._bar_class is not None:
            # On a 0 x 0 terminal tqdm hides the bar entirely (nrows=0): give it 80 x 24.
            width = {"dynamic_ncols": True} if self._notebook or _terminal_sized(self.stream) \
                else {"ncols": 80, "nrows": 24}
            self._bar = self._bar_class(total=steps, desc=f"epoch {epoch + 1}/{self.epochs}",
                                        unit="step", file=self.stream, leave=True, **width)

    def update(self, step, loss, samples_per_second):
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(loss=f"{loss + 0.0:.4g}",
                                  samples_s=f"{samples_per_second:,.0f}", refresh=False)

    def end_epoch(self, logs):
        if not self.verbose:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(_format_logs(logs), refresh=True)
            self._bar.close()
            self._bar = None
        else:
            print(f"epoch {logs['epoch'] + 1}/{self.epochs} - {_format_logs(logs)} - "
                  f"{logs['seconds']:.2f} s ({logs['samples_per_second']:,.0f} samples/s)",
                  file=sys.stdout, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
