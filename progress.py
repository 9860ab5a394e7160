"""Progress display for every loop of the project: a tqdm bar on a terminal, plain lines elsewhere.

On a terminal, :func:`progress_bar` is an ordinary ``tqdm`` bar (redrawn in place, with its
rate and ETA). When its stream is not a terminal (a log file, a pipe, CI, a notebook run by
papermill or nbconvert) a redrawn bar would write thousands of carriage-return updates into
one line, and an executed notebook would keep a stalled widget; there :class:`LineProgress`
writes the same meter as one plain line each time another tenth of the total is done (and
at the end), so a log of a whole training stage holds about ten lines per loop; a short loop
(the images of one test set) can ask for fewer (``lines=1``: one line, when it is done).
"""
import sys

from tqdm.std import tqdm

LINE_STEPS = 10
"""A non-interactive bar writes a line each time another 1/LINE_STEPS of its total is done."""


class LineProgress(tqdm):
    """``tqdm`` that writes a full line (never a carriage return) each time ``n`` passes another
    1/``lines`` of ``total`` (``lines``: int >= 1, default :data:`LINE_STEPS`; counted from 0, so
    a bar that starts at ``initial`` -- one epoch of a stage -- prints at the stage's tenths),
    and a last line when closed after progress not yet shown. Without a total, a line whenever
    ``n`` doubles."""

    _shown = None          # the mark of the last line written (set at the first display)

    def __init__(self, *args, lines=LINE_STEPS, **kwargs):
        if not isinstance(lines, int) or isinstance(lines, bool) or lines < 1:
            raise ValueError(f"progress lines={lines!r}: must be an integer >= 1")
        self.lines = lines
        kwargs.update(mininterval=0, miniters=1, ascii=True)  # see every update: lines are few
        super().__init__(*args, **kwargs)

    def _mark(self):
        if self.total:
            return int(self.lines * self.n // self.total)
        return max(0, int(self.n)).bit_length()

    def display(self, msg=None, pos=None):
        if msg is not None:                 # tqdm clearing the bar: nothing was drawn in place
            return True
        mark = self._mark()
        if self._shown is None:             # the first display (at creation): the baseline
            self._shown = mark
        elif mark != self._shown:
            self._shown = mark
            self.fp.write(self.format_meter(**self.format_dict) + "\n")
            self.fp.flush()
        return True

    def clear(self, nolock=False):
        pass

    def close(self):
        if not getattr(self, "disable", True) and self._shown is not None:
            if self._mark() != self._shown:
                self.display()
        self.sp = None          # tqdm's close then writes no trailing '\r' or newline
        super().close()


def interactive(stream=None):
    """True when ``stream`` (default stderr, tqdm's stream) is a terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(iterable=None, lines=LINE_STEPS, **kwargs):
    """A ``tqdm(iterable, **kwargs)`` on a terminal, else a :class:`LineProgress` with the same
    arguments writing ``lines`` lines (int >= 1; ``file`` defaults to stderr, as tqdm's). A
    Jupyter kernel's stderr is not a terminal: notebooks get the plain lines, never a widget
    that an executed notebook would keep at "0%"."""
    if interactive(kwargs.get("file")):
        return tqdm(iterable, **kwargs)
    return LineProgress(iterable, lines=lines, **kwargs)


def write_line(message, file=None):
    """Print ``message`` without breaking a bar that is being drawn (``tqdm.write``)."""
    tqdm.write(message, file=file)
