"""The detector: it restores a member without the trainer, scores as the run's evaluation
did, and names a checkpoint it cannot read."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import pipeline
from ae4ad_jax.runs import results
from ae4ad_jax.serving import detector as detector_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Loads and scores in a fresh process, then lists what that imported.
LOAD_AND_SCORE = """
import sys, numpy as np
from ae4ad_jax.serving import detector
d = detector.load(sys.argv[1])
d.score(np.zeros((3,) + d.image_shape, np.uint8))
print(" ".join(sorted(sys.modules)))
"""


def test_the_detector_scores_as_the_evaluation_did(finished_run):
    detector = detector_lib.load(finished_run.workdir)
    data = pipeline.load(finished_run.config)
    scores = results.read_scores(finished_run.workdir)
    np.testing.assert_allclose(detector.score(data.test_images)["score"], scores["test"][0],
                               rtol=1e-5)
    np.testing.assert_allclose(detector.score(data.train_images)["score"],
                               scores["normal"][0], rtol=1e-5)
    assert detector.epoch == 5
    assert detector.threshold == finished_run.summary["metrics"][0]["threshold"]
    with pytest.raises(UserError, match=r"Member 1 does not exist: .* has members 0 to 0"):
        detector_lib.load(finished_run.workdir, 1)


def test_loading_builds_no_trainer_optimiser_or_figures(finished_run):
    done = subprocess.run([sys.executable, "-c", LOAD_AND_SCORE, finished_run.workdir],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    modules = done.stdout.split()
    assert "ae4ad_jax.serving.detector" in modules  # the list is the process's modules
    loaded = [m for m in modules if m.startswith(("ae4ad_jax.training", "ae4ad_jax.reporting",
                                                  "optax", "matplotlib", "flax.training"))]
    assert loaded == []


def _with_commit(path, commit):
    summary = json.load(open(os.path.join(path, "summary.json")))
    summary["manifest"]["source"]["commit"] = commit
    json.dump(summary, open(os.path.join(path, "summary.json"), "w"))


def test_a_checkpoint_the_model_cannot_read_is_named_as_such(finished_run, tmp_path):
    path = str(tmp_path / "run")
    shutil.copytree(finished_run.workdir, path)
    config = json.load(open(os.path.join(path, "config.json")))
    config["model"]["hidden_width"] *= 2  # what a changed model definition looks like
    json.dump(config, open(os.path.join(path, "config.json"), "w"))
    _with_commit(path, "0123456789abcdef" * 2 + "01234567")
    with pytest.raises(UserError, match=r"written by commit 0123456789ab of ae4ad-jax, whose "
                                        r"model this version .* cannot read \(\['batch_stats'\]"
                                        r"\['Bottleneck_0'\]\['BatchNorm_0'\]\['mean'\] has "
                                        r"shape \(1, 64\) in the checkpoint, \(1, 128\) in the "
                                        r"model; .* \(and 11 more\)\)\. Score it with"):
        detector_lib.load(path)
    _with_commit(path, None)  # no commit recorded: another version
    with pytest.raises(UserError, match=r"written by another version of ae4ad-jax"):
        detector_lib.load(path)


def _edit_json(path, name, edit):
    value = json.load(open(os.path.join(path, name)))
    edit(value)
    json.dump(value, open(os.path.join(path, name), "w"))


def test_a_strangers_workdir_files_are_checked_naming_the_file_and_the_key(finished_run,
                                                                          tmp_path):
    from ae4ad_jax import main

    path = str(tmp_path / "run")
    shutil.copytree(finished_run.workdir, path)
    original = os.path.join(tmp_path, "config.json")
    shutil.copy(os.path.join(path, "config.json"), original)
    cases = [
        (lambda c: c.pop("eval"), r"config.json lacks the key 'eval'"),
        (lambda c: c["eval"].update(batch_size=2 ** 31),
         r"config.json: Config key eval.batch_size must be an integer in \[1, 65536\]"),
        (lambda c: c.update(image_size="64"), r"config.json: Config key image_size must be an "
                                              r"integer in \[1, 4096\], got '64'"),
    ]
    for edit, message in cases:
        shutil.copy(original, os.path.join(path, "config.json"))
        _edit_json(path, "config.json", edit)
        with pytest.raises(UserError, match=message):
            detector_lib.load(path)
    shutil.copy(original, os.path.join(path, "config.json"))
    _edit_json(path, "thresholds.json", lambda t: t.update(members={"0": 1}))
    with pytest.raises(UserError, match=r"thresholds.json is malformed: key 'members' must "
                                        r"be a list"):
        detector_lib.load(path)
    _edit_json(path, "thresholds.json", lambda t: t.update(
        members=[{"member": 0, "threshold": "high"}]))
    with pytest.raises(UserError, match=r"members\[0\].threshold must be a finite number"):
        detector_lib.load(path)
    shutil.copy(os.path.join(finished_run.workdir, "thresholds.json"), path)
    models = dict(np.load(os.path.join(path, "code_models.npz")))
    models["m0/density_mean"] = models["m0/density_mean"][:3]
    np.savez(os.path.join(path, "code_models.npz"), **models)
    with pytest.raises(UserError, match=r"code_models.npz is malformed \(member 0: the array "
                                        r"density_mean has shape \(3,\), not \(16,\)\)"):
        detector_lib.load(path, variant="code_density")
    np.savez(os.path.join(path, "code_models.npz"), latent_size=np.int32(16))
    with pytest.raises(UserError, match=r"its array 'latent_size' belongs to no member"):
        detector_lib.load(path, variant="code_density")
    with open(os.path.join(path, "code_models.npz"), "wb") as f:
        f.write(b"PK\x03\x04 not a zip")
    with pytest.raises(UserError, match=r"code_models.npz is unreadable \(BadZipFile"):
        detector_lib.load(path, variant="code_density")
    # --eval_only takes where data lives from this machine, never from the workdir
    _edit_json(path, "config.json", lambda c: c.update(
        data_dir="/elsewhere", tfds_dir="/theirs", compilation_cache="/their/cache"))
    config = main.saved_config(path)
    assert (config.data_dir, config.tfds_dir, config.compilation_cache) == (
        "", "~/tensorflow_datasets", "auto")
    assert main.saved_config(path, data_dir="/mine").data_dir == "/mine"
