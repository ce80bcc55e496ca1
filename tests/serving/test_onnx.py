"""The ONNX export scores in ONNX Runtime, in a process without JAX, as the run did; the
deployment snippet of docs/detector.md runs; gradient methods are refused."""

import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import onnx
import onnxruntime
import pytest
from PIL import Image

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import phantom, pipeline
from ae4ad_jax.methods import registry
from ae4ad_jax.parallel import ensemble
from ae4ad_jax.runs import checkpoints, results
from ae4ad_jax.runs import workdir as workdir_lib
from ae4ad_jax.serving import detector as detector_lib
from ae4ad_jax.serving import onnx_export
from ae4ad_jax.training import export
from ae4ad_jax.training.state import create_train_state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# float32 throughout; XLA and ONNX Runtime order the convolutions' sums differently.
# Measured: within 4.8e-7 on every exported method of configs/test.py, 3.0e-6 on the
# main job's maps (docs/detector.md); the tolerance is three times the largest.
SCORE_TOLERANCE, MAP_TOLERANCE = 1e-5, 1e-5
# Only onnx, onnxruntime and numpy: JAX must not be needed (nor loaded) to score.
RUNTIME = """
import sys
import numpy as np, onnx, onnxruntime
onnx.checker.check_model(onnx.load(sys.argv[1]))
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
images = np.load(sys.argv[2])
out = {}
for n in (1, 7, 64):
    score, maps = session.run(["score", "map"], {"images": images[:n]})
    out[f"score{n}"], out[f"map{n}"] = score, maps
out["meta"] = np.array(str(session.get_modelmeta().custom_metadata_map))
assert not [m for m in sys.modules if m == "jax" or m.startswith("jax.")]
np.savez(sys.argv[3], **out)
"""


def _snippet():
    text = open(os.path.join(ROOT, "docs", "detector.md")).read()
    block = re.search(r"<!-- onnx-snippet -->\n```python\n(.*?)```\n<!-- /onnx-snippet -->",
                      text, re.S)
    return block.group(1)


def test_onnx_runtime_scores_as_the_run_did_without_jax(finished_run, tmp_path):
    path = str(tmp_path / "ae.onnx")
    info = export.export(finished_run.workdir, 0, path, "onnx")
    assert info["format"] == "onnx" and info["input"] == ["B", 32, 32, 1]
    images = pipeline.load(finished_run.config).test_images[:64]
    np.save(tmp_path / "images.npy", images)
    subprocess.run([sys.executable, "-c", RUNTIME, path, str(tmp_path / "images.npy"),
                    str(tmp_path / "out.npz")], check=True, timeout=300,
                   env={**os.environ, "PYTHONPATH": ""})
    out = np.load(tmp_path / "out.npz")
    evaluated = results.read_scores(finished_run.workdir)["test"][0][:64]
    detector = detector_lib.load(finished_run.workdir)
    maps = detector.score(images)["map"]
    for n in (1, 7, 64):
        assert out[f"score{n}"].shape == (n,) and out[f"map{n}"].shape == (n, 32, 32)
        assert np.abs(out[f"score{n}"] - evaluated[:n]).max() < SCORE_TOLERANCE
        assert np.abs(out[f"map{n}"] - maps[:n]).max() < MAP_TOLERANCE
    # each layer once (a second trace of the network would double the graph)
    kernels = [key for key, _ in jax.tree_util.tree_leaves_with_path(
        detector.weights["variables"]["params"]) if "kernel" in jax.tree_util.keystr(key)]
    ops = [node.op_type for node in onnx.load(path).graph.node]
    assert sum(ops.count(op) for op in ("Conv", "ConvTranspose", "Gemm")) == len(kernels)
    meta = str(out["meta"])
    assert f"'ae4ad_threshold': '{detector.threshold!r}'" in meta
    assert "'ae4ad_method': 'ae'" in meta and "'ae4ad_latent_size': '16'" in meta

    # The deployment page's snippet, on PNGs: the run's scores and decisions.
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(images[i, ..., 0]).save(folder / f"{i}.png")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(_snippet())
    lines = subprocess.run([sys.executable, str(snippet), path, str(folder)], check=True,
                           capture_output=True, text=True, timeout=300).stdout.split()
    rows = [line.split(",") for line in lines]
    assert [row[0] for row in rows] == [f"{i}.png" for i in range(5)]
    np.testing.assert_allclose([float(row[1]) for row in rows], evaluated[:5], atol=1e-5)
    assert [int(row[2]) for row in rows] == list(detector.decide(evaluated[:5]))


def test_a_gradient_score_is_refused_with_the_reason(finished_run, tmp_path, capsys):
    """ae-grad trains the AE and scores by the input's gradient: the finished AE run, read
    as ae-grad, is refused; the command line exits 2 with the message."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_run.workdir, workdir)
    config = json.load(open(workdir / "config.json"))
    config["method"] = "ae-grad"
    json.dump(config, open(workdir / "config.json", "w"))
    with pytest.raises(UserError, match="Method ae-grad cannot be exported to ONNX: its "
                                        "score is a gradient of the input"):
        export.export(str(workdir), 0, str(tmp_path / "g.onnx"), "onnx")
    assert not (tmp_path / "g.onnx").exists()


# The mechanisms the AE's export does not exercise, one method each (ae-perceptual's VGG
# max pooling: experiments/onnx_check.py on a comparison run).
MECHANISMS = {
    "vae": "a code drawn at test time: the graph's `noise` input",
    "ganomaly": "each image alone with its own BatchNorm statistics (a loop); no map",
    "dae": "the U-Net: average pooling, GroupNorm, reflection padding",
    "ae-ssim": "SSIM's valid windows resized to the input",
}
# Relative to the largest JAX value: float32 in both runtimes, with sums in other orders.
# Measured on these untrained 16x16 models: at most 3.8e-7 (tolerance 1e-5, as the AE's),
# but SSIM, 8.2e-6 for the score and 7.7e-4 for the map: its variances are differences
# of window means, E[x^2] - E[x]^2, as in the reference; an untrained AE returns a nearly
# flat image, whose variance is such a difference of near-equal numbers (float32 error
# ~1e-7) divided by C2 = 0.03^2 ~ 1e-3. About three times the measured, rounded up.
RELATIVE_TOLERANCE = {"ae-ssim": {"score": 3e-5, "map": 3e-3}}


def _untrained_run(workdir, method):
    """A workdir whose checkpoint is `method`'s initial state, at 16x16 (no training:
    the export converts whatever weights the checkpoint holds)."""
    from configs import test

    config = test.get_config()
    config.method, config.image_size, config.method_overrides = method, 16, {}
    config.model.update(base_width=4, hidden_width=16)
    config.dae.update(depth=2, width_log2=2)
    config.ssim.window = 5
    method_ = registry.create(config)
    workdir_lib.prepare_workdir(workdir, config)
    state = create_train_state(config, method_, ensemble.member_hparams(config))
    manager = checkpoints.create_manager(workdir)
    checkpoints.save(manager, 1, state)
    manager.wait_until_finished()
    manager.close()
    return workdir


@pytest.mark.parametrize("method", MECHANISMS)
def test_each_mechanism_exports_and_scores_as_jax(method, tmp_path):
    workdir = _untrained_run(str(tmp_path / "run"), method)
    path = str(tmp_path / f"{method}.onnx")
    info = export.export(workdir, 0, path, "onnx")
    detector = detector_lib.load(workdir)
    images = phantom.generate(7, 16, seed=0, abnormal=True)[0]
    feed = {"images": images}
    if method == "vae":  # the noise the JAX scoring draws for rows 0-6
        assert info["noise"] == ["B", 16]
        feed["noise"] = onnx_export.evaluation_noise(detector, np.arange(7))
    else:
        assert info["noise"] is None
    assert info["outputs"] == (["score"] if method == "ganomaly" else ["score", "map"])
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = dict(zip(info["outputs"], session.run(info["outputs"], feed), strict=True))
    expected = detector.score(images)
    for key, value in got.items():
        scale = np.abs(expected[key]).max()
        error = np.abs(value - expected[key]).max() / scale
        print(method, key, f"relative difference {error:.1e} of {scale:.3g}")
        assert error < RELATIVE_TOLERANCE.get(method, {}).get(key, 1e-5), (method, key)
