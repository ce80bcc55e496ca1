"""Bad input to a run: a clear message naming the key or the file, before any compute,
nothing lost."""

import json
import os
import shutil

import pytest

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.training import loop


@pytest.mark.parametrize("key,value,message", [
    ("dataset", "mnist", r"Unknown dataset 'mnist': known datasets are phantom, rsna, .*folder"),
    ("method", "gan", r"Unknown method 'gan': known methods are ae"),
    ("latent_size", 0, r"latent_size must be a positive integer, got 0"),
    ("image_size", 40, r"image_size must be a multiple of 16, got 40"),
    ("batch_size", -1, r"batch_size must be an integer in \[1, 65536\], got -1"),
    ("learning_rate", float("nan"), r"learning_rate must be a number > 0, got nan"),
    ("val_fraction", 1.0, r"val_fraction must be a number in \[0, 1\), got 1.0"),
    ("execution.kernels", "fast", r"execution.kernels must be one of \('auto', 'xla', 'cpu'\)"),
    ("entropy_estimators", ("knn", "shannon"), r"entropy_estimators must be a non-empty "
     r"tuple, each item one of \('gaussian', 'knn', 'renyi'\), got \('knn', 'shannon'\)"),
    ("methods", ("ae", "gan"), r"Unknown method 'gan'"),
    ("method", "ae-perceptual", r"needs ImageNet VGG19 weights.*perceptual.vgg_weights"),
    ("vae.kl_weight", -1.0, r"vae.kl_weight must be a number >= 0.0, got -1.0"),
    ("ssim.window", 10, r"ssim.window must be odd"),
    ("rate_weights", (0.0, 0.1), r"rate_weight/rate_weights need the learned rate: set "
                                 r"--config.rate.enabled=True"),
    ("entropy_bootstrap", -1, r"entropy_bootstrap must be an integer >= 0"),
    ("eval.false_positive_rate", 0.0,
     r"eval.false_positive_rate must be a number in \(0, 1\), got 0.0"),
    ("checkpoints_to_keep", 1, r"checkpoints_to_keep must be an integer >= 2"),
    ("channels", 2, r"channels must be one of \(0, 1, 3\), got 2"),
    ("channels", 3, r"Dataset phantom has 1 channel\(s\) but config key channels is 3: leave"),
    ("input_limits.max_slices", 0, r"input_limits.max_slices must be a positive integer"),
    ("eval.batch_size", 2 ** 31,
     r"eval.batch_size must be an integer in \[1, 65536\], got 2147483648"),
])
def test_bad_config_values(test_config, tmp_path, key, value, message):
    group, _, name = key.rpartition(".")
    (test_config[group] if group else test_config)[name] = value
    with pytest.raises(UserError, match=message):
        loop.train_and_evaluate(test_config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # rejected before anything was written


def test_method_without_a_code_takes_no_latent_axes(test_config, tmp_path):
    test_config.method = "dae"
    test_config.latent_sizes = (2, 4)
    with pytest.raises(UserError, match=r"Method dae has no latent code: leave latent_sizes"):
        loop.train_and_evaluate(test_config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("settings,message", [
    ({"method": "vae"}, r"Method vae has no plain latent code to quantise: rate.enabled works "
                        r"with ae, "),
    ({"rate.step": 0.0}, r"rate.step must be a number >= 1e-06, got 0.0"),
    ({"rate_weights": (0.0, -1.0)},
     r"rate_weights must be a tuple, each item a number >= 0, got \(0.0, -1.0\)"),
    ({"rate_weights": (0.1, 0.1)}, r"rate_weights must hold distinct values"),
    ({"rate.filters": (3, 0)}, r"rate.filters must be a non-empty tuple, each item a positive "
                               r"integer, got \(3, 0\)"),
])
def test_bad_rate_settings(test_config, tmp_path, settings, message):
    test_config.rate.enabled = True
    for key, value in settings.items():
        group, _, name = key.rpartition(".")
        (test_config[group] if group else test_config)[name] = value
    with pytest.raises(UserError, match=message):
        loop.train_and_evaluate(test_config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_missing_real_dataset_says_where_to_get_it(test_config, tmp_path):
    test_config.dataset = "brats"
    test_config.data_dir = str(tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"Folder .*nowhere of dataset 'brats' does not exist. "
                                        r"Download BraTS2021 from https://zenodo.org/records/"
                                        r"12677223, extract it to .*MedIAnomaly-Data/BraTS2021"):
        loop.train_and_evaluate(test_config, str(tmp_path / "run"))


def test_unwritable_workdir(test_config, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match=r"Workdir .*a_file/run cannot be created or written"):
        loop.train_and_evaluate(test_config, str(blocker / "run"))
    assert blocker.read_text() == "not a folder"


def test_eval_only_needs_a_checkpoint(test_config, tmp_path):
    with pytest.raises(UserError, match=r"Workdir .*missing does not exist"):
        loop.train_and_evaluate(test_config, str(tmp_path / "missing"), eval_only=True)
    with pytest.raises(UserError, match=r"--eval_only needs a checkpoint"):
        loop.train_and_evaluate(test_config, str(tmp_path), eval_only=True)


def test_checkpoint_of_another_config_is_refused(finished_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished_run.workdir, workdir)
    before = sorted(os.listdir(workdir / "checkpoints"))
    saved_config = (workdir / "config.json").read_text()
    config = finished_run.config.copy_and_resolve_references()
    config.latent_size = 4
    with pytest.raises(UserError, match=r"holds a run of a different config \(latent_size: "
                                        r"16 -> 4\)"):
        loop.train_and_evaluate(config, str(workdir))
    assert sorted(os.listdir(workdir / "checkpoints")) == before
    assert (workdir / "config.json").read_text() == saved_config
    assert json.loads(saved_config)["latent_size"] == 16
