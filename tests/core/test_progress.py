"""Progress output through tqdm: few redraws into a log file, a bar on a terminal, nothing
when disabled."""

import io

import pytest
from tqdm import std

from ae4ad_jax.core import progress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(std, "time", fake)  # tqdm's clock
    return fake


def _draws(text):
    return [part for part in text.replace("\n", "\r").split("\r") if part]


def test_a_log_file_gets_a_redraw_per_interval_and_the_final_state(clock):
    stream = io.StringIO()
    with progress.bar(100, "scoring", "files", stream=stream) as bar:
        for _ in range(100):  # one file per second
            clock.now += 1.0
            bar.update()
    text = stream.getvalue()
    draws = _draws(text)
    assert draws[0].startswith("scoring:   0%") and text.endswith("\n")
    assert draws[-1].startswith("scoring: 100%") and "100/100 [01:40<00:00" in draws[-1]
    assert "1.00files/s" in draws[-1] and draws[-1].isascii()
    assert 3 <= len(draws) <= 6  # 100 s at one redraw per 30 s, not one per file


def test_a_terminal_gets_a_bar_redrawn_in_place(clock):
    stream = Terminal()
    with progress.bar(4, "epochs", "epochs", stream=stream) as bar:
        for _ in range(2):
            clock.now += 3600.0
            bar.update()
    draws = _draws(stream.getvalue())
    assert "2/4 [2:00:00<2:00:00" in draws[-1] and "█" in draws[-1]
    assert stream.getvalue().count("\n") == 1


def test_a_disabled_bar_prints_nothing_and_durations_read_as_tqdm_writes_them():
    stream = io.StringIO()
    with progress.bar(3, "x", stream=stream, enabled=False) as bar:
        bar.update(3)
    assert stream.getvalue() == ""
    assert progress.format_duration(70) == "01:10"
    assert progress.format_duration(3723) == "1:02:03"
