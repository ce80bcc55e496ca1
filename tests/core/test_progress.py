"""Progress output: a redrawn bar on a terminal, periodic plain lines elsewhere."""

import io

from ae4ad_jax.core import progress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_come_at_the_interval_and_at_the_end():
    clock, stream = Clock(), io.StringIO()
    bar = progress.Progress(100, "scoring", "files", stream=stream, interval_s=30,
                            clock=clock)
    for _ in range(100):  # one file per second
        clock.now += 1.0
        bar.update()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[:3] == ["scoring  30/100 (30%)  1.0 files/s  1:10 left",
                         "scoring  60/100 (60%)  1.0 files/s  0:40 left",
                         "scoring  90/100 (90%)  1.0 files/s  0:10 left"]
    assert lines[3] == "scoring  100/100 (100%)  1.0 files/s  1:40 in all"
    assert len(lines) == 4 and "\r" not in stream.getvalue()


def test_terminal_bar_is_redrawn_in_place():
    clock, stream = Clock(), Terminal()
    with progress.Progress(4, "epochs", "epochs", stream=stream, clock=clock) as bar:
        for _ in range(2):
            clock.now += 3600.0
            bar.update()
    text = stream.getvalue()
    assert text.startswith("\repochs  [" + "#" * 6 + "." * 18 + "]  1/4 (25%)")
    assert "3:00:00 left" in text  # an hour per epoch, three to go
    assert text.endswith("\repochs  [" + "#" * 12 + "." * 12 + "]  2/4 (50%)  0.0 epochs/s  "
                         "2:00:00 left\n")
    assert text.count("\n") == 1


def test_disabled_progress_prints_nothing():
    stream = io.StringIO()
    with progress.Progress(3, "x", stream=stream, enabled=False) as bar:
        bar.update(3)
    assert stream.getvalue() == ""
