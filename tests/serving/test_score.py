"""Using a trained detector: the Python API (fit, scores, save/load, export) and the
scoring command on a folder of PNG, JPEG, DICOM and NIfTI files with bad files in it."""

import csv
import json
import os
import subprocess
import sys

import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image
from sklearn.exceptions import NotFittedError

from ae4ad_jax.api import AnomalyDetector
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import image_files, phantom, pipeline
from ae4ad_jax.data.preprocessing import conform
from ae4ad_jax.serving import detector as detector_lib
from ae4ad_jax.serving import stablehlo
from ae4ad_jax.serving.files import score_files
from ae4ad_jax.training import loop
from experiments import hostile_files

SIZE = 32


def _stretched(images):
    """uint8 [N, S, S] spanning 0-255 exactly, so min-max scaling of a file is exact."""
    images = images.astype(np.float64)
    low = images.min(axis=(1, 2), keepdims=True)
    high = images.max(axis=(1, 2), keepdims=True)
    return np.rint((images - low) * 255.0 / (high - low)).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A detector fitted on 160 normal phantom images of another size (48x48)."""
    from configs import test

    config = test.get_config()
    config.num_epochs, config.val_fraction = 1, 0.25
    normal, _ = phantom.generate(160, 48, 1, False)
    workdir = str(tmp_path_factory.mktemp("api") / "run")
    return AnomalyDetector(config, workdir=workdir).fit(normal)


@pytest.fixture(scope="module")
def probe():
    """20 normal and 20 abnormal 32x32 gray images spanning 0-255."""
    normal, _ = phantom.generate(20, SIZE, 2, False)
    abnormal, _ = phantom.generate(20, SIZE, 3, True)
    return _stretched(np.concatenate([normal, abnormal])[..., 0])


def test_fit_sets_the_threshold_from_held_out_normal_scores(fitted):
    images = conform(phantom.generate(160, 48, 1, False)[0], SIZE, 1)
    _, held_out = pipeline.split_validation(images, 0.25, fitted.config.seed)
    assert len(held_out) == 40
    # PyOD's decision_scores_ and labels_: every training image, in the order given
    np.testing.assert_array_equal(fitted.decision_scores_, fitted.decision_function(images))
    np.testing.assert_array_equal(fitted.labels_,
                                  fitted.decision_scores_ > fitted.threshold_)
    normal = fitted.decision_function(held_out)
    threshold = fitted.threshold_
    assert np.isclose(normal, threshold, rtol=1e-5).any()  # an observed held-out score
    assert np.mean(normal > threshold) <= 0.05
    assert fitted.workdir_ == fitted.workdir and fitted.detector_.workdir == fitted.workdir
    rows = json.load(open(os.path.join(fitted.workdir, "summary.json")))
    assert rows["manifest"]["dataset"]["path"] is None
    assert "auroc" not in rows["metrics"][0] and rows["metrics"][0]["threshold_from_val"] == 1
    with pytest.raises(UserError, match="given in memory"):  # nothing to evaluate again
        loop.train_and_evaluate(fitted.detector_.config, fitted.workdir, eval_only=True)


def test_api_scores_round_trip_through_export_and_load(fitted, probe, tmp_path):
    scores = fitted.decision_function(probe)
    maps = fitted.anomaly_maps(probe)
    assert scores.shape == (40,) and maps.shape == (40, SIZE, SIZE)
    np.testing.assert_array_equal(fitted.predict(probe), scores > fitted.threshold_)
    # the image score of the AE is the mean of its map
    np.testing.assert_allclose(scores, maps.mean(axis=(1, 2)), rtol=1e-5)

    path = str(tmp_path / "saved")
    assert fitted.export(path)["format"] == "workdir"
    loaded = AnomalyDetector.load(path)
    assert loaded.threshold_ == fitted.threshold_
    np.testing.assert_array_equal(loaded.decision_function(probe), scores)
    # loaded from a workdir: the run's normal scores that set its threshold (held out)
    assert len(loaded.decision_scores_) == 40 and loaded.threshold_ in loaded.decision_scores_
    with pytest.raises(UserError, match="is not an empty folder"):
        fitted.export(path)

    info = loaded.export(str(tmp_path / "ae.stablehlo"), "stablehlo")
    assert info["input"] == [64, SIZE, SIZE, 1]
    artefact = stablehlo.load_stablehlo(str(tmp_path / "ae.stablehlo"))(probe[..., None])
    np.testing.assert_allclose(artefact["score"], scores, rtol=1e-5)
    np.testing.assert_allclose(artefact["map"], maps, rtol=1e-5, atol=1e-7)


def test_images_of_any_size_and_channels_are_converted_as_in_training(fitted, probe):
    gray = probe[:4]
    scores = fitted.decision_function(gray)
    np.testing.assert_array_equal(fitted.decision_function(gray[..., None]), scores)
    np.testing.assert_array_equal(fitted.decision_function(gray / 255.0), scores)
    rgb = np.repeat(gray[..., None], 3, axis=-1)  # equal channels: luma is the gray value
    np.testing.assert_array_equal(fitted.decision_function(rgb), scores)
    # another size goes through the same bilinear resize as the training files
    large = [np.asarray(Image.fromarray(g).resize((80, 64), Image.BILINEAR)) for g in gray]
    expected = np.stack([np.asarray(Image.fromarray(x).resize((SIZE, SIZE), Image.BILINEAR))
                         for x in large])
    np.testing.assert_array_equal(fitted.decision_function(large),
                                  fitted.decision_function(expected))
    for bad, message in ((gray * 2.0, r"Image 0 is float64 with values 0 to 510"),
                         (gray.astype(np.int32) * 2, r"Image 0 is int32 .* 0-255"),
                         (np.zeros((2, 8, 8, 4), np.uint8), r"Image 0 has shape \(8, 8, 4\)"),
                         (np.zeros(5), "Images must be an array")):
        with pytest.raises(UserError, match=message):
            fitted.decision_function(bad)
    with pytest.raises(NotFittedError, match="not fitted"):
        AnomalyDetector().predict(gray)


def _write_dicom(path, frames, photometric="MONOCHROME2", window=None):
    """16-bit gray frames [K, H, W], stored v meaning 2 v - 1000 (the modality rescale)."""
    ds = hostile_files.dicom_dataset(frames.shape[1], frames.shape[2], photometric,
                                     frames=len(frames),
                                     pixels=np.asarray(frames, np.uint16)[..., None])
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.save_as(path, enforce_file_format=True)


def _make_folder(root, probe):
    """Every supported kind, with known pixel values, plus three bad files."""
    os.makedirs(root / "sub")
    Image.fromarray(probe[0]).save(root / "a.png")
    Image.fromarray(probe[20]).save(root / "sub" / "lesion.tif")
    Image.fromarray(np.repeat(probe[21][..., None], 3, -1)).save(root / "rgb.jpg", quality=100)
    # stored values v map to HU 2v - 1000; min-max then gives back the image's 0-255
    _write_dicom(str(root / "ct.dcm"), probe[22][None].astype(np.uint16) * 7)
    _write_dicom(str(root / "multi"), probe[1:4].astype(np.uint16) * 7)  # no suffix
    # window [-1000, -490] covers HU of stored 0..255; MONOCHROME1 shows it inverted
    _write_dicom(str(root / "inverted.dcm"), (255 - probe[23])[None].astype(np.uint16),
                 "MONOCHROME1", (-745, 510))
    # slices along axis 1, each stored turned back by a quarter turn
    volume = np.stack([np.rot90(probe[k], -1) for k in (24, 2, 25)], axis=1) * 4.0 - 50
    nibabel.save(nibabel.Nifti1Image(volume.astype(np.float32), np.diag([0.9, 1.1, 2.5, 1])),
                 root / "brain.nii.gz")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut short")
    (root / "notes.txt").write_text("not an image")
    (root / "bad.nii").write_bytes(b"\0" * 40)


def test_score_command_scores_every_readable_file_and_lists_the_rest(fitted, probe,
                                                                     tmp_path):
    root = tmp_path / "in"
    _make_folder(root, probe)
    out = tmp_path / "out"
    summary = score_files(fitted.workdir, [str(root)], str(out), nifti_axis=1)
    with open(out / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    got = {(os.path.relpath(r["file"], root), r["slice"]): r for r in rows}
    # expected: the same pixels through the API
    sources = {("a.png", ""): 0, ("sub/lesion.tif", ""): 20, ("rgb.jpg", ""): None,
               ("ct.dcm", ""): 22, ("multi", "0"): 1, ("multi", "1"): 2, ("multi", "2"): 3,
               ("inverted.dcm", ""): 23, ("brain.nii.gz", "0"): 24,
               ("brain.nii.gz", "1"): 2, ("brain.nii.gz", "2"): 25}
    assert set(got) == set(sources)
    expected = fitted.decision_function(probe)
    for key, index in sources.items():
        score = float(got[key]["score"])
        if index is not None:
            assert score == pytest.approx(float(expected[index]), rel=1e-6), key
        assert int(got[key]["decision"]) == int(score > fitted.threshold_)
        assert Image.open(out / got[key]["map"]).size == (256, 256)
    assert got[("multi", "1")]["score"] == got[("brain.nii.gz", "1")]["score"]
    with open(out / "errors.csv") as f:
        errors = {os.path.relpath(r["file"], root): r["reason"] for r in csv.DictReader(f)}
    assert set(errors) == {"broken.png", "notes.txt", "bad.nii"}
    assert errors["notes.txt"].startswith("unsupported file type")
    assert errors["broken.png"].startswith("not a PNG, JPEG, TIFF or BMP image")
    assert errors["bad.nii"].startswith("not a readable NIfTI volume")
    assert summary["files"] == 10 and summary["files_unreadable"] == 3
    assert summary["images_scored"] == 11
    assert summary["images_abnormal"] == sum(int(r["decision"]) for r in rows)
    # the NIfTI map: the input's grid and affine, slice k = that slice's map turned back
    nifti = nibabel.load(out / "maps" / "brain_map.nii.gz")
    assert nifti.shape == (SIZE, 3, SIZE)
    np.testing.assert_array_equal(nifti.affine, nibabel.load(root / "brain.nii.gz").affine)
    maps = fitted.anomaly_maps(probe[[24, 2, 25]])
    np.testing.assert_allclose(np.rot90(nifti.get_fdata()[:, 1, :], 1), maps[1], rtol=1e-5,
                               atol=1e-6)
    assert not list(out.glob("*.partial"))


def test_score_command_line_exit_codes(fitted, probe, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(probe[0]).save(root / "a.png")
    (root / "b.png").write_bytes(b"junk")
    command = [sys.executable, "-m", "ae4ad_jax.score", f"--workdir={fitted.workdir}",
               f"--inputs={root}", f"--out={tmp_path / 'out'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "Scored 1 image(s) from 2 file(s)" in done.stdout
    assert "1 file(s) could not be read, 0 map(s) could not be written" in done.stderr
    missing = subprocess.run(command[:4] + [f"--inputs={root / 'nowhere'}", command[-1]],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith(f"Input {root / 'nowhere'} does not exist.")


def test_a_run_that_stops_leaves_no_result_that_looks_current(fitted, probe, tmp_path,
                                                              monkeypatch):
    """An older run's scores.csv is removed when scoring starts; a run that fails midway
    keeps its rows in .partial files and says so in summary.json."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    for i in range(3):
        Image.fromarray(probe[i]).save(root / f"{i}.png")
    score_files(fitted.workdir, [str(root)], str(out), write_overlays=False)
    assert json.load(open(out / "summary.json"))["status"] == "complete"
    calls = []

    def failing(self, images, first=0):
        calls.append(len(images))
        raise RuntimeError("device lost")

    monkeypatch.setattr(detector_lib.Detector, "score", failing)
    with pytest.raises(RuntimeError, match="device lost"):
        score_files(fitted.workdir, [str(root)], str(out), write_overlays=False)
    summary = json.load(open(out / "summary.json"))
    assert calls == [3] and summary["status"] == "failed"
    assert summary["error"] == "RuntimeError: device lost" and summary["images_scored"] == 0
    assert not (out / "scores.csv").exists() and not (out / "errors.csv").exists()
    assert (out / "scores.csv.partial").read_text().startswith("file,slice,score")
    monkeypatch.setattr(detector_lib.Detector, "score", lambda *_: (_ for _ in ()).throw(
        KeyboardInterrupt("SIGTERM")))
    with pytest.raises(KeyboardInterrupt):
        score_files(fitted.workdir, [str(root)], str(out), write_overlays=False)
    assert json.load(open(out / "summary.json"))["status"] == "interrupted"


def test_dicom_window_and_monochrome1_follow_the_standard(tmp_path):
    stored = np.arange(0, 400, 4, dtype=np.uint16).reshape(10, 10)
    _write_dicom(str(tmp_path / "w.dcm"), stored[None], "MONOCHROME1", (-700, 200))
    image = np.asarray(image_files.read(str(tmp_path / "w.dcm")).slices[0])
    hu = 2.0 * stored - 1000  # the modality rescale
    expected = 255 - np.clip(np.rint((hu + 800) * 255 / 200), 0, 255)
    np.testing.assert_array_equal(image, expected)
    assert pydicom.dcmread(tmp_path / "w.dcm").PhotometricInterpretation == "MONOCHROME1"


def test_code_scores_serve_through_the_api_save_and_the_score_command(fitted, probe,
                                                                      tmp_path):
    """A code-score detector recomputes the run's own variant scores of its held-out
    normals, uses that variant's threshold, survives save and load, and the score
    command uses it with --score."""
    images = conform(phantom.generate(160, 48, 1, False)[0], SIZE, 1)
    _, held_out = pipeline.split_validation(images, 0.25, fitted.config.seed)
    with open(os.path.join(fitted.workdir, "thresholds.json")) as f:
        thresholds = json.load(f)["members"][0]["variant_thresholds"]
    for variant in ("code_density", "code_knn", "combined_code_density"):
        detector = AnomalyDetector.load(fitted.workdir, variant=variant)
        np.testing.assert_allclose(detector.decision_function(held_out),
                                   detector.decision_scores_, rtol=1e-4, atol=1e-4)
        assert detector.threshold_ == pytest.approx(thresholds[variant])
    scores = detector.decision_function(probe)  # combined_code_density
    detector.export(str(tmp_path / "saved"))
    saved = AnomalyDetector.load(str(tmp_path / "saved"),
                                  variant="combined_code_density")
    np.testing.assert_array_equal(saved.decision_function(probe), scores)
    assert saved.threshold_ == detector.threshold_

    (tmp_path / "in").mkdir()
    for i in range(3):
        Image.fromarray(probe[i]).save(tmp_path / "in" / f"{i}.png")
    summary = score_files(fitted.workdir, [str(tmp_path / "in")], str(tmp_path / "out"),
                          score="combined_code_density", write_overlays=False)
    assert summary["score"] == "combined_code_density"
    assert summary["threshold"] == pytest.approx(thresholds["combined_code_density"])
    with open(tmp_path / "out" / "scores.csv") as f:
        got = sorted((r["file"], float(r["score"])) for r in csv.DictReader(f))
    np.testing.assert_allclose([score for _, score in got], scores[:3], rtol=1e-5)
    with pytest.raises(UserError, match=r"Unknown score 'bits'.*known are reconstruction, "
                                        r"code_density, code_knn, combined_code_density"):
        AnomalyDetector.load(fitted.workdir, variant="bits")
