"""Progress of long work, shown by tqdm (notebooks included, through `tqdm.auto`).

On a terminal or in a notebook the bar is redrawn at most five times a second. When
the output is a file or a pipe (CI, `> log.txt`) it is redrawn at most once every
`LINE_INTERVAL_S`, so logs stay short; the final state ends with a newline.
Durations in log lines use tqdm's format (`01:10`, `1:02:03`).
"""

import sys

from tqdm import auto

LINE_INTERVAL_S = 30.0  # redraws of a bar that is not on a terminal
REDRAW_INTERVAL_S = 0.2  # on a terminal

format_duration = auto.tqdm.format_interval


def bar(total: int, label: str, unit: str = "items", *, stream=None,
        enabled: bool = True) -> auto.tqdm:
    """A tqdm bar counting `total` units of work named `label` (`update(n)` after each
    piece; a context manager). `stream` defaults to stdout; `enabled=False` (processes
    other than 0) prints nothing."""
    stream = stream if stream is not None else sys.stdout
    terminal = bool(getattr(stream, "isatty", lambda: False)())
    return auto.tqdm(total=int(total), desc=label, unit=unit, file=stream,
                     disable=not enabled, dynamic_ncols=terminal,
                     mininterval=REDRAW_INTERVAL_S if terminal else LINE_INTERVAL_S,
                     ascii=not terminal)
