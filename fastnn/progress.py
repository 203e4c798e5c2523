"""Per-epoch progress: a tqdm bar on a terminal, one plain line per epoch otherwise."""

import sys


def _format_logs(logs):
    parts = []
    for key, value in logs.items():
        if key in ("epoch", "seconds", "samples_per_second"):
            continue
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " - ".join(parts)


class Progress:
    """Reports training progress; ``verbose=0`` is silent.

    On a terminal each epoch gets a tqdm bar with the running loss and the
    throughput; when the output is a file or a pipe (logs, batch jobs) each
    epoch prints exactly one line and nothing is redrawn.
    """

    def __init__(self, verbose, epochs, stream=None):
        self.verbose = verbose
        self.epochs = epochs
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(verbose) and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar = None

    @property
    def wants_updates(self):
        """Whether mid-epoch updates are shown (only a terminal bar needs them)."""
        return self.tty

    def start_epoch(self, epoch, steps):
        self.epoch = epoch
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{self.epochs}",
                             unit="step", file=self.stream, leave=True, dynamic_ncols=True)

    def update(self, step, loss, samples_per_second):
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(loss=f"{loss:.4g}", samples_s=f"{samples_per_second:,.0f}",
                                  refresh=False)

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
