"""A scikit-learn / PyOD-style detector over the trainer:

    from ae4ad_jax.api import AnomalyDetector
    detector = AnomalyDetector(config).fit(normal_images)
    scores = detector.decision_function(images)   # higher = more abnormal
    labels = detector.predict(images)             # 1 = abnormal (score > threshold_)
    maps = detector.anomaly_maps(images)          # [N, S, S]
    detector.save("my_detector"); AnomalyDetector.load("my_detector")

`fit` trains the config's model on the given normal images with the same
trainer and checkpoints as the command line, in `workdir` (a temporary folder
when none is given), and sets `threshold_` at the config's
`eval.false_positive_rate` on normal images (the held-out `val_fraction`, else
the training images). Images are numpy arrays of any size with 1 or 3 channels
(uint8, or floats in [0, 1]), converted as the training images are
(`detector.conform`).
"""

import json
import os
import shutil
import tempfile

import numpy as np

from ae4ad_jax import detector as detector_lib
from ae4ad_jax import input_pipeline, run_outputs
from ae4ad_jax.errors import UserError


class AnomalyDetector:
    """`config`: a ConfigDict (configs/*.py's get_config()); `member`: which member of an
    ensemble config serves after `fit`."""

    def __init__(self, config=None, workdir: str | None = None, member: int = 0):
        self.config, self.workdir, self.member = config, workdir, member
        self._detector = None

    # ------------------------------------------------------------------ training
    def fit(self, images, y=None):
        """Trains on normal `images` ([N, H, W(, C)] or a list); `y` is ignored (PyOD)."""
        del y
        if self.config is None:
            raise UserError("AnomalyDetector.fit needs a config: AnomalyDetector(config).")
        from ae4ad_jax import methods, train

        config = methods.resolve_config(self.config.copy_and_resolve_references())
        with config.unlocked():
            config.dataset = input_pipeline.ARRAYS
        images = detector_lib.conform(images, config.image_size, config.channels)
        train_images, val_images = input_pipeline.split_validation(
            images, config.val_fraction, config.seed)
        data = input_pipeline.Data(
            train_images=train_images, val_images=val_images,
            test_images=images[:0], test_labels=np.zeros(0, np.int32), test_masks=None)
        self.workdir = self.workdir or tempfile.mkdtemp(prefix="ae4ad_detector_")
        train.train_and_evaluate(config, self.workdir, data=data)
        self._detector = detector_lib.load(self.workdir, self.member)
        return self

    # ------------------------------------------------------------------ scoring
    @property
    def detector(self) -> detector_lib.Detector:
        if self._detector is None:
            raise UserError("This AnomalyDetector is not fitted: call fit(images) or "
                            "AnomalyDetector.load(path).")
        return self._detector

    @property
    def threshold_(self) -> float:
        """Scores above this are called abnormal."""
        return self.detector.require_threshold()

    @property
    def decision_scores_(self) -> np.ndarray:
        """Scores of the normal images that set the threshold (PyOD's attribute)."""
        path = os.path.join(self.detector.workdir, run_outputs.SCORES_FILE)
        if not os.path.exists(path):
            raise UserError(f"{path} does not exist (runs write it since December 2026): "
                            f"rerun `python -m ae4ad_jax.main --workdir="
                            f"{self.detector.workdir} --eval_only`.")
        with np.load(path) as saved:
            return saved["normal"][self.detector.member["member"]]

    def _score(self, images) -> dict:
        config = self.detector.config
        return self.detector.score(detector_lib.conform(images, config.image_size,
                                                        config.channels))

    def decision_function(self, images) -> np.ndarray:
        """Anomaly score per image [N]; higher is more abnormal."""
        return self._score(images)["score"]

    def predict(self, images) -> np.ndarray:
        """1 (abnormal) or 0 per image [N], by `threshold_`."""
        return self.detector.decide(self.decision_function(images))

    def anomaly_maps(self, images) -> np.ndarray:
        """Anomaly map per image [N, S, S] at the model's size S."""
        out = self._score(images)
        if "map" not in out:
            raise UserError(f"Method {self.detector.config.method} gives image scores only, "
                            "no anomaly maps.")
        return out["map"]

    # ------------------------------------------------------------------ files
    def save(self, path: str) -> str:
        """Writes the detector (config.json, checkpoint, thresholds.json) to `path`, a
        workdir that `load`, `python -m ae4ad_jax.score` and `.main --eval_only` read."""
        from ae4ad_jax import export

        detector = self.detector
        if os.path.exists(path) and os.listdir(path):
            raise UserError(f"{path} exists and is not empty; save to a new folder.")
        tmp = path.rstrip("/") + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        export.export_member(detector.workdir, detector.member["member"], tmp)
        member = {k: v for k, v in detector.member.items() if k != "member"}
        with open(os.path.join(tmp, run_outputs.THRESHOLDS_FILE), "w") as f:
            json.dump({"epoch": detector.epoch,
                       "false_positive_rate": detector.false_positive_rate,
                       "members": [{"member": 0, **member,
                                    "threshold": detector.threshold}]}, f, indent=2)
        for name in (run_outputs.SCORES_FILE, run_outputs.SUMMARY_FILE):
            source = os.path.join(detector.workdir, name)
            if os.path.exists(source):
                _copy_member_file(source, os.path.join(tmp, name), detector.member["member"])
        if os.path.exists(path):
            os.rmdir(path)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str, member: int = 0) -> "AnomalyDetector":
        """A detector from a saved folder or any finished run's workdir (member `member`)."""
        restored = cls(workdir=path, member=member)
        restored._detector = detector_lib.load(path, member)
        restored.config = restored._detector.config
        return restored

    def export(self, path: str) -> dict:
        """The scoring function as a `jax.export` artefact (see `ae4ad_jax.scorer`)."""
        from ae4ad_jax import scorer

        return scorer.export_scorer(self.detector.workdir, self.detector.member["member"],
                                    path)


def _copy_member_file(source, target, index):
    """scores.npz / summary.json cut to one member (it becomes member 0)."""
    if source.endswith(".npz"):
        with np.load(source) as saved:
            arrays = {k: (v if k == "test_labels" else v[index:index + 1])
                      for k, v in saved.items()}
        with open(target, "wb") as f:
            np.savez(f, **arrays)
        return
    with open(source) as f:
        summary = json.load(f)
    summary["metrics"] = [dict(row, member=0) for row in summary["metrics"]
                          if row["member"] == index]
    with open(target, "w") as f:
        json.dump(summary, f, indent=2)
