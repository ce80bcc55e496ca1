"""Progress of long work: a bar on a terminal, plain periodic lines elsewhere.

On a terminal the bar is redrawn in place (at most a few times a second) with
the count, the rate and the time left. When the output is a file or a pipe
(CI, `> log.txt`), a plain line is written every `interval_s` seconds and at
the end, so logs stay readable and short.
"""

import sys
import time

LINE_INTERVAL_S = 30.0  # plain lines: at most one per this many seconds
REDRAW_INTERVAL_S = 0.2  # terminal bar
BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Counts `total` units of work named `label`; `update(n)` after each piece.

    `stream` defaults to stdout; `enabled=False` (processes other than 0) prints nothing.
    Usable as a context manager, which writes the final line on exit.
    """

    def __init__(self, total: int, label: str, unit: str = "items", *, stream=None,
                 interval_s: float = LINE_INTERVAL_S, enabled: bool = True, clock=time.time):
        self.total, self.label, self.unit = int(total), label, unit
        self.stream = stream if stream is not None else sys.stdout
        self.interval_s, self.enabled, self.clock = interval_s, enabled, clock
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.start = self.last = clock()
        self.closed = False

    def text(self) -> str:
        """`label 120/500 (24%)  35.2 units/s  1:10 left`, with a bar on a terminal."""
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        fraction = self.done / self.total if self.total else 1.0
        parts = [self.label]
        if self.terminal:
            filled = int(BAR_WIDTH * fraction)
            parts.append("[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]")
        parts.append(f"{self.done}/{self.total} ({100 * fraction:.0f}%)")
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.done >= self.total:
            parts.append(f"{format_duration(elapsed)} in all")
        elif self.done:
            parts.append(f"{format_duration((self.total - self.done) / rate)} left")
        return "  ".join(parts)

    def update(self, count: int = 1) -> None:
        self.done += count
        if not self.enabled:
            return
        now = self.clock()
        interval = REDRAW_INTERVAL_S if self.terminal else self.interval_s
        if now - self.last >= interval:
            self._write()
            self.last = now

    def _write(self, final=False):
        if self.terminal:
            self.stream.write("\r" + self.text() + ("\n" if final else ""))
        else:
            self.stream.write(self.text() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and not self.closed:
            self._write(final=True)
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
