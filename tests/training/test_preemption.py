"""Stopping at a signal: a checkpoint at the step boundary where the run stood, mid-epoch
if need be, and a resumption that ends bitwise where the uninterrupted run (the session's
finished run) ends. Real signals, delivered to this process by the run's own loop."""

import json
import os
import shutil
import signal

import pytest

from ae4ad_jax.runs import checkpoints
from ae4ad_jax.training import loop, preemption


def _signal_at(monkeypatch, boundary, signum=signal.SIGTERM):
    """Sends `signum` to this process just before the run asks about `boundary` (the n-th
    program boundary, counted from 1)."""
    real = preemption.Stop.requested

    def requested(self):
        if self._boundaries + 1 == boundary:
            os.kill(os.getpid(), signum)
        return real(self)

    monkeypatch.setattr(preemption.Stop, "requested", requested)


def test_a_signal_mid_epoch_saves_there_and_the_resumed_run_ends_bitwise(
        finished_run, tmp_path, monkeypatch, capsys):
    """From the finished run's checkpoint of epoch 3: SIGTERM before step 4 of epoch 4, a
    SIGINT while the checkpoint is written, then the resumed run (checkpointing at epoch 5
    only) ends bitwise where the finished run ended."""
    workdir, config = tmp_path / "run", finished_run.config.copy_and_resolve_references()
    shutil.copytree(finished_run.workdir, workdir)
    shutil.rmtree(workdir / "checkpoints" / "4")
    shutil.rmtree(workdir / "checkpoints" / "5")
    steps = -(-config.phantom.num_train // config.batch_size)  # 8 per epoch
    _signal_at(monkeypatch, 4)  # epoch 4, before its 4th step
    real_save = checkpoints.save_stopped

    def save_with_a_second_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # while the checkpoint is written
        return real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "save_stopped", save_with_a_second_signal)
    with pytest.raises(preemption.Stopped, match=rf"Stopped by SIGTERM at step 3 of {steps} "
                                                 rf"of epoch 4 \(step {3 * steps + 3}\)"):
        loop.train_and_evaluate(config, str(workdir))
    printed = capsys.readouterr().out
    assert "SIGINT received again: the checkpoint is being written" in printed
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back
    assert sorted(os.listdir(workdir / "checkpoints")) == ["3", "stopped"]
    assert os.listdir(workdir / "checkpoints" / "stopped") == [str(3 * steps + 3)]
    assert not (workdir / "run.lock").exists()

    monkeypatch.undo()
    config.checkpoint_every_epochs = 5  # epoch 4 ends without a checkpoint
    summary = loop.train_and_evaluate(config, str(workdir))
    assert f"Resuming epoch 4 at step 4 of {steps}" in capsys.readouterr().out
    assert summary["metrics"] == finished_run.summary["metrics"]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["3", "5"]  # epoch 5's replaced it
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [row["epoch"] for row in rows] == [1, 5]


def test_a_signal_before_the_first_step_saves_nothing(test_config, tmp_path, monkeypatch):
    _signal_at(monkeypatch, 1, signal.SIGINT)
    with pytest.raises(preemption.Stopped, match="Stopped by SIGINT before its first step"):
        loop.train_and_evaluate(test_config, str(tmp_path))
    assert os.listdir(tmp_path / "checkpoints") == []
