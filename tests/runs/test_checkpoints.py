"""Checkpoints that cannot be read are moved aside and the run goes on from the newest
readable one; a save that fails stops the run and leaves the earlier ones whole."""

import os
import resource
import shutil
import signal

import jax
import jax.numpy as jnp
import pytest

from ae4ad_jax.runs import checkpoints
from ae4ad_jax.training import loop


def _truncate_arrays(folder):
    for directory, _, names in os.walk(folder):
        for name in names:
            if os.sep + "d" in directory:  # the array data of the OCDBT store
                path = os.path.join(directory, name)
                os.truncate(path, os.path.getsize(path) // 2)


def test_an_unreadable_latest_checkpoint_is_moved_aside_and_an_older_one_used(
        finished_run, tmp_path, capsys):
    """The finished run's last checkpoint (epoch 5) truncated: the run falls back to epoch
    4, trains epoch 5 again and ends where the run from epoch 4's checkpoint ends: the
    finished run itself."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_run.workdir, workdir)
    _truncate_arrays(workdir / "checkpoints" / "5")
    summary = loop.train_and_evaluate(finished_run.config, str(workdir))
    printed = capsys.readouterr().out
    assert f"The checkpoint of epoch 5 in {workdir}/checkpoints cannot be read" in printed
    print(printed)  # for the record
    aside = os.listdir(workdir / checkpoints.UNREADABLE)
    assert len(aside) == 1 and aside[0].startswith("checkpoints-5-")
    assert "epoch 5/5" in printed and "epoch 4/5" not in printed  # resumed after epoch 4
    assert summary["metrics"] == finished_run.summary["metrics"]


def test_a_save_that_fails_stops_the_run_and_keeps_the_earlier_checkpoints(
        test_config, tmp_path, monkeypatch):
    """A real failed write: the file-size limit makes the checkpoint's files too large."""
    test_config.num_epochs = 2
    real_save = checkpoints.save
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill

    def save(manager, epoch, state):
        if epoch == 2:
            resource.setrlimit(resource.RLIMIT_FSIZE, (64, limits[1]))
        return real_save(manager, epoch, state)

    monkeypatch.setattr(checkpoints, "save", save)
    try:
        with pytest.raises(checkpoints.SaveFailed, match=r"Saving the checkpoint of epoch 2 to "
                                                         r".*failed \(.*File too large.*\); "
                                                         r"the checkpoint of epoch 1 is intact"
                                                         ) as error:
            loop.train_and_evaluate(test_config, str(tmp_path))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
    print(error.value)  # for the record
    assert [name for name in os.listdir(tmp_path / "checkpoints") if name.isdigit()] == ["1"]
    rng = jax.ShapeDtypeStruct((1, 2), jnp.uint32)
    restored, epoch = checkpoints.restore_parts(str(tmp_path), {"rng": rng})
    assert epoch == 1 and restored["rng"].shape == (1, 2)
