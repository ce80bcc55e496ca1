"""The exported scorer (jax.export, StableHLO) scores as the run's evaluation did."""

import subprocess
import sys

import numpy as np
import pytest

from ae4ad_jax.data import pipeline
from ae4ad_jax.runs import outputs
from ae4ad_jax.serving import detector as detector_lib
from ae4ad_jax.serving import exported

# Only JAX and numpy: the artefact runs without this package.
STANDALONE = """
import sys, jax, numpy as np
exported = jax.export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
images = np.load(sys.argv[2])
out = exported.call(images)
np.savez(sys.argv[3], score=np.asarray(out["score"]), map=np.asarray(out["map"]))
"""


def test_exported_scorer_scores_as_the_evaluation_and_runs_alone(finished_run, tmp_path):
    path = str(tmp_path / "scorer.bin")
    info = exported.export_scorer(finished_run.workdir, 0, path)
    assert info["input"] == [64, 32, 32, 1] and info["epoch"] == 5
    images = pipeline.load(finished_run.config).test_images[:70]  # a full batch and a part
    evaluated = outputs.read_scores(finished_run.workdir)["test"][0][:70]
    scored = exported.load_scorer(path)(images)
    np.testing.assert_allclose(scored["score"], evaluated, rtol=1e-5)
    maps = detector_lib.load(finished_run.workdir).score(images)["map"]
    np.testing.assert_allclose(scored["map"], maps, rtol=1e-5, atol=1e-7)
    np.save(tmp_path / "batch.npy", images[:64])
    subprocess.run([sys.executable, "-c", STANDALONE, path, str(tmp_path / "batch.npy"),
                    str(tmp_path / "out.npz")], cwd=tmp_path, check=True, timeout=300)
    alone = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(alone["score"], evaluated[:64], rtol=1e-5)
    with pytest.raises(ValueError, match=r"takes images of shape \(32, 32, 1\), got "):
        exported.load_scorer(path)(np.zeros((2, 16, 16, 1), np.uint8))
