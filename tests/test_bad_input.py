"""Bad input: a clear message before any compute, exit status 2, nothing lost."""

import json
import os
import subprocess
import sys

import pytest

from ae4ad_jax import train
from ae4ad_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("key,value,message", [
    ("dataset", "mnist", r"Unknown dataset 'mnist': known datasets are phantom, brats, .*folder"),
    ("method", "gan", r"Unknown method 'gan': known methods are ae"),
    ("latent_size", 0, r"latent_size must be a positive integer, got 0"),
    ("image_size", 40, r"image_size must be a multiple of 16 .* got 40"),
    ("batch_size", -1, r"batch_size must be a positive integer"),
    ("learning_rate", float("nan"), r"learning_rate must be a positive finite number"),
    ("val_fraction", 1.0, r"val_fraction must be in \[0, 1\), got 1.0"),
    ("execution.kernels", "fast", r"execution.kernels must be one of \('auto', 'xla', 'cpu'\)"),
    ("entropy_estimators", ("knn", "shannon"), r"unknown estimators \['shannon'\]"),
    ("methods", ("ae", "gan"), r"Unknown method 'gan'"),
    ("method", "ae-perceptual", r"needs ImageNet VGG19 weights.*perceptual.vgg_weights"),
    ("vae.kl_weight", -1.0, r"vae.kl_weight must be a number in \[0.0, inf\]"),
    ("ssim.window", 10, r"ssim.window must be odd"),
    ("rate_weights", (0.0, 0.1), r"rate_weight/rate_weights need the learned rate: set "
                                 r"--config.rate.enabled=True"),
    ("entropy_bootstrap", -1, r"entropy_bootstrap must be an integer >= 0"),
    ("eval.false_positive_rate", 0.0, r"eval.false_positive_rate must be in \(0, 1\), got 0.0"),
])
def test_bad_config_values(test_config, tmp_path, key, value, message):
    group, _, name = key.rpartition(".")
    (test_config[group] if group else test_config)[name] = value
    with pytest.raises(UserError, match=message):
        train.train_and_evaluate(test_config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # rejected before anything was written


def test_method_without_a_code_takes_no_latent_axes(test_config, tmp_path):
    test_config.method = "dae"
    test_config.latent_sizes = (2, 4)
    with pytest.raises(UserError, match=r"Method dae has no latent code: leave latent_sizes"):
        train.train_and_evaluate(test_config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("settings,message", [
    ({"method": "vae"}, r"Method vae has no plain latent code to quantise: rate.enabled works "
                        r"with ae, "),
    ({"rate.step": 0.0}, r"rate.step must be a number in \[1e-06, inf\], got 0.0"),
    ({"rate_weights": (0.0, -1.0)}, r"rate_weight/rate_weights must be finite numbers >= 0"),
    ({"rate_weights": (0.1, 0.1)}, r"rate_weights must hold distinct values"),
    ({"rate.filters": (3, 0)}, r"rate.filters must be a tuple of positive integers"),
])
def test_bad_rate_settings(test_config, tmp_path, settings, message):
    test_config.rate.enabled = True
    for key, value in settings.items():
        group, _, name = key.rpartition(".")
        (test_config[group] if group else test_config)[name] = value
    with pytest.raises(UserError, match=message):
        train.train_and_evaluate(test_config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_missing_real_dataset_says_where_to_get_it(test_config, tmp_path):
    test_config.dataset = "brats"
    test_config.data_dir = str(tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"Folder .*nowhere of dataset 'brats' does not exist. "
                                        r"Download BraTS2021 from https://zenodo.org/records/"
                                        r"12677223, extract it to .*MedIAnomaly-Data/BraTS2021"):
        train.train_and_evaluate(test_config, str(tmp_path / "run"))


def test_unwritable_workdir(test_config, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match=r"Workdir .*a_file/run cannot be created or written"):
        train.train_and_evaluate(test_config, str(blocker / "run"))
    assert blocker.read_text() == "not a folder"


def test_eval_only_needs_a_checkpoint(test_config, tmp_path):
    with pytest.raises(UserError, match=r"Workdir .*missing does not exist"):
        train.train_and_evaluate(test_config, str(tmp_path / "missing"), eval_only=True)
    with pytest.raises(UserError, match=r"--eval_only needs a checkpoint"):
        train.train_and_evaluate(test_config, str(tmp_path), eval_only=True)


def test_checkpoint_of_another_config_is_refused(test_config, tmp_path):
    test_config.num_epochs = 1
    train.train_and_evaluate(test_config, str(tmp_path))
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    saved_config = (tmp_path / "config.json").read_text()
    test_config.latent_size = 4
    with pytest.raises(UserError, match=r"holds a run of a different config \(latent_size: "
                                        r"16 -> 4\)"):
        train.train_and_evaluate(test_config, str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before
    assert (tmp_path / "config.json").read_text() == saved_config
    assert json.loads(saved_config)["latent_size"] == 16


def _run_main(*args):
    return subprocess.run([sys.executable, "-m", "ae4ad_jax.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_main_prints_one_paragraph_and_exits_2(tmp_path):
    result = _run_main("--config=configs/test.py", f"--workdir={tmp_path}",
                       "--config.latent_size=0")
    assert result.returncode == 2
    assert "error: Config key latent_size must be a positive integer, got 0." in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_main_real_config_without_data_exits_2(tmp_path):
    result = _run_main("--config=configs/rsna.py", f"--workdir={tmp_path}",
                       f"--config.data_dir={tmp_path / 'no_rsna'}")
    assert result.returncode == 2
    assert "no_rsna of dataset 'rsna' does not exist. Download RSNA from" in result.stderr
    assert "Traceback" not in result.stderr


def test_main_needs_a_config_unless_evaluating(tmp_path):
    result = _run_main(f"--workdir={tmp_path}")
    assert result.returncode == 2
    assert "error: No --config given" in result.stderr
    result = _run_main(f"--workdir={tmp_path / 'empty'}", "--eval_only")
    assert result.returncode == 2
    assert "Cannot read the config of workdir" in result.stderr


def test_resumable_keys_are_only_those_that_leave_results_unchanged():
    from ae4ad_jax import run_outputs

    saved = {"latent_size": 16, "num_epochs": 20, "model": {"base_width": 16},
             "execution": {"kernels": "auto"}}
    resumed = {**saved, "num_epochs": 250, "execution": {"kernels": "xla"}}
    assert run_outputs._changed_keys(saved, resumed) == []
    assert run_outputs._changed_keys(saved, {**saved, "model": {"base_width": 8}}) == [
        "model.base_width"]
    assert run_outputs._changed_keys(saved, {**saved, "entropy_weight": 0.0}) == [
        "entropy_weight"]  # a key the saved run did not have


def test_a_config_saved_before_later_keys_existed_still_matches():
    """Keys added since a workdir was written take their defaults, in JSON's form (a
    tuple default saved by a current run reads back as a list)."""
    from ae4ad_jax import run_outputs
    from configs import default

    current = json.loads(default.get_config().to_json())
    old = {k: v for k, v in current.items()
           if k not in ("methods", "mesh_shape", "table1_workdir", "rate", "rate_weights")}
    assert run_outputs._changed_keys(old, current) == []
