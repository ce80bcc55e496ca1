"""Atomic writes: a file or folder appears whole or not at all."""

import json
import os

import numpy as np
import pytest

from ae4ad_jax.core import files


def test_writes_appear_whole_and_leave_no_partial(tmp_path):
    files.write_json(str(tmp_path / "a.json"), {"x": [1, 2]})
    files.write_text(str(tmp_path / "b.txt"), "line\n")
    files.write_npz(str(tmp_path / "c.npz"), {"v": np.arange(3)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    assert (tmp_path / "b.txt").read_text() == "line\n"
    np.testing.assert_array_equal(np.load(tmp_path / "c.npz")["v"], [0, 1, 2])
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.txt", "c.npz"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_partial(tmp_path):
    target = tmp_path / "a.json"
    files.write_json(str(target), {"old": True})
    with pytest.raises(TypeError):
        files.write_json(str(target), {"new": object()})  # not JSON: fails mid-write
    assert json.loads(target.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["a.json"]


def test_a_folder_is_committed_onto_an_empty_one_only_when_complete(tmp_path):
    target = tmp_path / "saved"
    target.mkdir()
    with pytest.raises(RuntimeError):
        with files.atomic_path(str(target)) as partial:
            os.makedirs(partial)
            (tmp_path / "saved.partial" / "half").write_text("x")
            raise RuntimeError("stopped")
    assert os.listdir(target) == [] and not (tmp_path / "saved.partial").exists()
    with files.atomic_path(str(target)) as partial:
        os.makedirs(partial)
        (tmp_path / "saved.partial" / "whole").write_text("x")
    assert os.listdir(target) == ["whole"]
