"""The exported scorer (jax.export, StableHLO) scores as the trained member does."""

import subprocess
import sys

import numpy as np
import pytest

from ae4ad_jax import execution, export, input_pipeline, scorer, train

# Only JAX and numpy: the artefact runs without this package.
STANDALONE = """
import sys, jax, numpy as np
exported = jax.export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
images = np.load(sys.argv[2])
out = exported.call(images)
np.savez(sys.argv[3], score=np.asarray(out["score"]), map=np.asarray(out["map"]))
"""


def test_exported_scorer_equals_the_member_and_runs_alone(test_config, tmp_path):
    test_config.num_epochs = 1
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(test_config, workdir)
    path = str(tmp_path / "scorer.bin")
    info = scorer.export_scorer(workdir, 0, path)
    assert info["input"] == [64, 32, 32, 1] and info["epoch"] == 1
    config, method, _, state, _ = export.restore_member(workdir, 0)
    images = input_pipeline.load(config).test_images[:70]  # one full batch and a partial
    expected = train.score_members(state, images, config=config, method=method,
                                   plan=execution.plan_execution(config), with_maps=True)
    scored = scorer.load_scorer(path)(images)
    np.testing.assert_allclose(scored["score"], expected["score"][0], rtol=1e-5)
    np.testing.assert_allclose(scored["map"], expected["map"][0], rtol=1e-5, atol=1e-7)
    np.save(tmp_path / "batch.npy", images[:64])
    subprocess.run([sys.executable, "-c", STANDALONE, path, str(tmp_path / "batch.npy"),
                    str(tmp_path / "out.npz")], cwd=tmp_path, check=True, timeout=300)
    alone = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(alone["score"], expected["score"][0][:64], rtol=1e-5)
    with pytest.raises(ValueError, match=r"takes images of shape \(32, 32, 1\), got "):
        scorer.load_scorer(path)(np.zeros((2, 16, 16, 1), np.uint8))
