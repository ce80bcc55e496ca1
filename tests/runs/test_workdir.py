"""A workdir's config.json: the workdir format, and which config changes a resumed run may
make."""

import json

import ml_collections
import pytest

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.runs import workdir as workdir_lib


def _config(**changes):
    config = ml_collections.ConfigDict({
        "latent_size": 16, "num_epochs": 20, "seeds": (0, 1),
        "model": {"base_width": 16}, "execution": {"kernels": "auto"}})
    config.update(changes)
    return config


def test_config_json_holds_the_format_and_reads_back_as_the_config(tmp_path):
    workdir_lib.prepare_workdir(str(tmp_path), _config())
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["workdir_format"] == workdir_lib.WORKDIR_FORMAT
    loaded = workdir_lib.load_saved_config(str(tmp_path))
    assert loaded.seeds == (0, 1) and loaded.model.base_width == 16  # tuples are tuples
    assert "workdir_format" not in loaded


def test_a_resumed_run_may_change_only_what_leaves_results_unchanged(tmp_path):
    workdir = str(tmp_path)
    workdir_lib.prepare_workdir(workdir, _config())
    workdir_lib.prepare_workdir(workdir, _config(num_epochs=250,
                                                 execution={"kernels": "xla"}))
    # a workdir written before the caps existed resumes with them
    workdir_lib.prepare_workdir(workdir, _config(num_epochs=250, execution={
        "kernels": "xla"}, input_limits={"max_slices": 2048}))
    assert json.loads((tmp_path / "config.json").read_text())["num_epochs"] == 250
    with pytest.raises(UserError, match=r"different config \(model.base_width: 16 -> 8\)"):
        workdir_lib.prepare_workdir(workdir, _config(model={"base_width": 8}))
    with pytest.raises(UserError, match=r"different config \(entropy_weight: None -> 0.0\)"):
        workdir_lib.prepare_workdir(workdir, _config(entropy_weight=0.0))  # a new key


@pytest.mark.parametrize("edit, words", [
    (lambda saved: saved.pop("workdir_format"), "no workdir_format in its config.json"),
    (lambda saved: saved.update(workdir_format=99), "workdir format 99"),
])
def test_a_workdir_of_another_format_gets_one_message(tmp_path, edit, words):
    workdir_lib.prepare_workdir(str(tmp_path), _config())
    saved = json.loads((tmp_path / "config.json").read_text())
    edit(saved)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    message = (rf"Workdir {tmp_path} was written by another version of ae4ad-jax \({words}\); "
               rf"this version reads workdir format {workdir_lib.WORKDIR_FORMAT}\. Use the "
               r"version that wrote it, or train again in a fresh --workdir\.")
    for call in (workdir_lib.load_saved_config,
                 lambda workdir: workdir_lib.prepare_workdir(workdir, _config())):
        with pytest.raises(UserError, match=message):
            call(str(tmp_path))
