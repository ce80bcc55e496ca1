"""A scikit-learn / PyOD-style detector over the trainer:

    from ae4ad_jax.api import AnomalyDetector
    detector = AnomalyDetector(config).fit(normal_images)
    scores = detector.decision_function(images)   # higher = more abnormal
    labels = detector.predict(images)             # 1 = abnormal (score > threshold_)
    maps = detector.anomaly_maps(images)          # [N, S, S]
    detector.export("my_detector"); AnomalyDetector.load("my_detector")

`fit` trains the config's model on the given normal images with the same
trainer and checkpoints as the command line, in `workdir` (a temporary folder
when none is given), and sets `threshold_` at the config's
`eval.false_positive_rate` on normal images (the held-out `val_fraction`, else
the training images). Images are numpy arrays of any size with 1 or 3 channels
(uint8, or floats in [0, 1]), converted as the training images are
(`data.preprocessing.conform`).

Scoring needs only `serving/`; `fit` and `export` import the trainer when they run.
"""

import tempfile

import numpy as np

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import pipeline
from ae4ad_jax.data.preprocessing import conform
from ae4ad_jax.evaluation.code_scores import RECONSTRUCTION
from ae4ad_jax.runs import results
from ae4ad_jax.serving import detector as detector_lib


class AnomalyDetector:
    """`config`: a ConfigDict (configs/*.py's get_config()); `member`: which member of an
    ensemble config serves after `fit`; `score`: the score variant ("reconstruction", or
    a code score: `code_density`, `code_knn`, `rate`, `combined_<code score>`)."""

    def __init__(self, config=None, workdir: str | None = None, member: int = 0,
                 score: str = "reconstruction"):
        self.config, self.workdir, self.member, self.score = config, workdir, member, score
        self._detector = None

    # ------------------------------------------------------------------ training
    def fit(self, images, y=None):
        """Trains on normal `images` ([N, H, W(, C)] or a list); `y` is ignored (PyOD)."""
        del y
        if self.config is None:
            raise UserError("AnomalyDetector.fit needs a config: AnomalyDetector(config).")
        from ae4ad_jax.methods import registry
        from ae4ad_jax.training import loop

        config = registry.resolve_config(self.config.copy_and_resolve_references())
        with config.unlocked():
            config.dataset = pipeline.ARRAYS
        config = pipeline.resolve_channels(config, images)
        images = conform(images, config.image_size, config.channels)
        train_images, val_images = pipeline.split_validation(
            images, config.val_fraction, config.seed)
        data = pipeline.Data(
            train_images=train_images, val_images=val_images,
            test_images=images[:0], test_labels=np.zeros(0, np.int32), test_masks=None)
        self.workdir = self.workdir or tempfile.mkdtemp(prefix="ae4ad_detector_")
        loop.train_and_evaluate(config, self.workdir, data=data)
        self._detector = detector_lib.load(self.workdir, self.member, self.score)
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
        saved = results.read_scores(self.detector.workdir)
        if saved is None:
            raise UserError(f"{self.detector.workdir} holds no {results.SCORES_FILE}: rerun "
                            f"`python -m ae4ad_jax.main --workdir={self.detector.workdir} "
                            "--eval_only`.")
        key = "normal" if self.score == RECONSTRUCTION else f"normal_{self.score}"
        member = self.detector.index
        values = saved.get(key)
        if values is None or values.ndim != 2 or len(values) <= member:
            raise UserError(f"{self.detector.workdir}/{results.SCORES_FILE} lacks the scores "
                            f"{key!r} of member {member}; rerun `python -m ae4ad_jax.main "
                            f"--workdir={self.detector.workdir} --eval_only`.")
        return values[member]

    def _score(self, images) -> dict:
        config = self.detector.config
        return self.detector.score(conform(images, config.image_size, config.channels))

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
    @classmethod
    def load(cls, path: str, member: int = 0, score: str = "reconstruction"
             ) -> "AnomalyDetector":
        """A detector from any finished run's workdir, or one written by `export` (member
        `member`, scoring with `score`)."""
        restored = cls(workdir=path, member=member, score=score)
        restored._detector = detector_lib.load(path, member, score)
        restored.config = restored._detector.config
        return restored

    def export(self, path: str, format: str = "workdir") -> dict:
        """Writes the detector's member to `path` in `format`, as `python -m
        ae4ad_jax.export` does: "workdir" (config.json, checkpoint, thresholds.json; what
        `load`, `python -m ae4ad_jax.score` and `.main --eval_only` read), "stablehlo"
        (the reconstruction score and maps as one `jax.export` file) or "onnx" (the same
        as an ONNX model, for runtimes without JAX). The code scores need the run's
        normal codes: only the workdir carries them. Returns what was written."""
        from ae4ad_jax.training import export

        if format != "workdir" and self.score != RECONSTRUCTION:
            raise UserError(f"The {format} export gives the reconstruction score only, not "
                            f"{self.score!r}: load the detector with score='reconstruction' "
                            "to export it.")
        return export.export(self.detector.workdir, self.detector.index, path, format)
