"""The detector as a scikit-learn estimator that speaks PyOD:

    from ae4ad_jax.api import AnomalyDetector
    detector = AnomalyDetector(config).fit(normal_images)
    scores = detector.decision_function(images)   # higher = more abnormal
    labels = detector.predict(images)             # 1 = abnormal (score > threshold_)
    maps = detector.anomaly_maps(images)          # [N, S, S]
    detector.export("my_detector"); AnomalyDetector.load("my_detector")

`fit` trains the config's model on the given normal images with the same trainer and
checkpoints as the command line, in `workdir` (a temporary folder, removed with the
estimator, when none is given). Images are numpy arrays [N, H, W] or [N, H, W, C] of any
size with 1 or 3 channels (uint8, or floats in [0, 1]), a list of such images, or
scikit-learn's 2-D form [N, S * S * C] (flattened images at the model's size); they are
converted as the training images are (`data.preprocessing.conform`).

The estimator's parameters are its constructor's (`clone`, `get_params`, `set_params`);
the config's keys are parameters too, as `config__<key>` (`config__latent_size`,
`config__model__base_width`), so `GridSearchCV` and `Pipeline` reach them. What `fit` (or
`load`) sets ends in an underscore: `detector_`, `workdir_`, `threshold_`,
`decision_scores_`, `labels_`.

PyOD's names keep PyOD's meanings (its `BaseDetector`): `decision_scores_` and `labels_`
of the training images, `contamination`, `predict_proba(method="linear" | "unify")`,
`predict_confidence`, `fit_predict`. The threshold: with `contamination=None` (the
default) it is the run's own, at the config's `eval.false_positive_rate` of normal
images (the held-out `val_fraction` when there is one, else the training images; the
quantile taken at an observed score); with `contamination=c` it is PyOD's, the
100 (1 - c) percentile of the training images' scores (interpolated). Without held-out
normals, the two are the same rule with c = false_positive_rate, up to the quantile's
interpolation.

PyOD's 0/1 labels (1 = abnormal) are not scikit-learn's outlier convention (-1 =
outlier, `decision_function` higher for inliers), so the estimator is not an
`OutlierMixin`.

A fitted estimator pickles (`pickle`, `joblib.dump`) with its model: the member is
packed in the workdir form of `export` and unpacked, on loading, into a temporary
folder; scores after loading are bitwise those before (a member of an ensemble config
is packed at its own latent size, as `export` writes it: equal to rounding).
"""

import copy
import io
import os
import shutil
import tarfile
import tempfile
import weakref

import ml_collections
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import pipeline
from ae4ad_jax.data.preprocessing import conform
from ae4ad_jax.evaluation.code_scores import RECONSTRUCTION
from ae4ad_jax.runs import results
from ae4ad_jax.serving import detector as detector_lib

CONFIG_PREFIX = "config__"
PACKED = "_packed_member"  # the pickled state's model (a tar of the exported workdir)


def _temporary_folder(owner, prefix) -> str:
    """A new folder removed when `owner` is garbage-collected (or at exit)."""
    path = tempfile.mkdtemp(prefix=prefix)
    weakref.finalize(owner, shutil.rmtree, path, True)
    return path


def _config_leaves(config, prefix=""):
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _config_leaves(value, f"{prefix}{key}__")
        else:
            yield f"{prefix}{key}", value


def _set_config_key(config, path: str, value):
    *groups, key = path.split("__")
    node = config
    for group in groups:
        node = node.get(group) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or key not in node:
        raise ValueError(f"Invalid parameter {CONFIG_PREFIX}{path}: the config has no key "
                         f"{path.replace('__', '.')}.")
    with node.unlocked():
        setattr(node, key, value)


class AnomalyDetector(BaseEstimator):
    """`config`: a ConfigDict (configs/*.py's get_config()); `workdir`: where `fit`
    trains (None: a temporary folder); `member`: which member of an ensemble config
    serves; `variant`: which score, "reconstruction" (the method's own) or a code score
    (`code_density`, `code_knn`, `rate`, `combined_<code score>`); `contamination`: None
    (the run's threshold) or PyOD's expected share of abnormal training images, in
    (0, 0.5]."""

    def __init__(self, config=None, workdir: str | None = None, member: int = 0,
                 variant: str = RECONSTRUCTION, contamination: float | None = None):
        self.config = config
        self.workdir = workdir
        self.member = member
        self.variant = variant
        self.contamination = contamination

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep=True):
        """The constructor's parameters; with `deep`, also every config key as
        `config__<key>` (groups joined by "__")."""
        params = super().get_params(deep=False)
        if deep and isinstance(self.config, ml_collections.ConfigDict):
            params.update((CONFIG_PREFIX + key, value)
                          for key, value in _config_leaves(self.config))
        return params

    def set_params(self, **params):
        """Sets parameters; `config__<key>` sets that key in a copy of the config (the
        config given to the constructor is left as it was)."""
        keys = {name: params.pop(name) for name in list(params)
                if name.startswith(CONFIG_PREFIX)}
        super().set_params(**params)
        if keys:
            if not isinstance(self.config, ml_collections.ConfigDict):
                raise ValueError(f"Invalid parameters {sorted(keys)}: this estimator has no "
                                 "config to set them in.")
            config = copy.deepcopy(self.config)
            for name, value in keys.items():
                _set_config_key(config, name[len(CONFIG_PREFIX):], value)
            self.config = config
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # [N, H, W] images; 2-D: flattened images
        return tags

    # ------------------------------------------------------------------ training
    def fit(self, X, y=None):
        """Trains on the normal images `X`; `y` is ignored (PyOD's convention)."""
        del y
        if self.config is None:
            raise UserError("AnomalyDetector.fit needs a config: AnomalyDetector(config).")
        self._check_contamination()
        from ae4ad_jax.methods import registry
        from ae4ad_jax.training import loop

        config = registry.resolve_config(self.config.copy_and_resolve_references())
        with config.unlocked():
            config.dataset = pipeline.ARRAYS
        X = _unflatten(X, config)  # tries 1 and 3 channels when the config reads them
        config = pipeline.resolve_channels(config, X)
        images = conform(X, config.image_size, config.channels)
        train_images, val_images = pipeline.split_validation(
            images, config.val_fraction, config.seed)
        data = pipeline.Data(
            train_images=train_images, val_images=val_images,
            test_images=images[:0], test_labels=np.zeros(0, np.int32), test_masks=None)
        workdir = self.workdir or _temporary_folder(self, "ae4ad_detector_")
        loop.train_and_evaluate(config, workdir, data=data)
        detector = detector_lib.load(workdir, self.member, self.variant)
        self._set_fitted(detector, detector.score(images)["score"])
        return self

    def fit_predict(self, X, y=None):
        """`fit(X)`, then the training images' labels `labels_` (PyOD's)."""
        return self.fit(X, y).labels_

    def _check_contamination(self):
        c = self.contamination
        if c is not None and not (isinstance(c, (int, float)) and 0.0 < c <= 0.5):
            raise ValueError(f"contamination must be None or in (0, 0.5], got {c!r}.")

    def _set_fitted(self, detector, train_scores):
        """The fitted attributes, from `detector` and its training images' scores."""
        self.detector_, self.workdir_ = detector, detector.workdir
        self.decision_scores_ = np.asarray(train_scores, np.float64)
        if self.contamination is None:
            self.threshold_ = detector.require_threshold()
        else:
            self.threshold_ = float(np.percentile(self.decision_scores_,
                                                  100.0 * (1.0 - self.contamination)))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)

    # ------------------------------------------------------------------ scoring
    def _fitted(self) -> detector_lib.Detector:
        detector = getattr(self, "detector_", None)
        if detector is None:
            raise NotFittedError("This AnomalyDetector is not fitted: call fit(images) or "
                                 "AnomalyDetector.load(path).")
        return detector

    def _score(self, X) -> dict:
        detector = self._fitted()
        config = detector.config
        return detector.score(conform(_unflatten(X, config), config.image_size,
                                      config.channels))

    def decision_function(self, X) -> np.ndarray:
        """Anomaly score per image [N]; higher is more abnormal."""
        return self._score(X)["score"]

    def predict(self, X, return_confidence: bool = False):
        """1 (abnormal) or 0 per image [N]: score above `threshold_`; with
        `return_confidence`, also `predict_confidence`'s values (PyOD's)."""
        scores = self.decision_function(X).astype(np.float64)  # as labels_ are compared
        labels = (scores > self.threshold_).astype(np.int64)
        return (labels, self._confidence(scores)) if return_confidence else labels

    def predict_proba(self, X, method: str = "linear", return_confidence: bool = False):
        """[N, 2]: the probabilities of normal and abnormal, PyOD's: "linear" scales the
        score by the training scores' min and max (clipped to [0, 1]); "unify" is
        erf((score - mean) / (std sqrt 2)) of the training scores, clipped at 0
        (Kriegel et al. 2011)."""
        from scipy.special import erf
        from sklearn.preprocessing import MinMaxScaler

        if method not in ("linear", "unify"):
            raise ValueError(f"method must be 'linear' or 'unify', got {method!r}.")
        self._fitted()
        train = self.decision_scores_
        scores = self.decision_function(X).astype(np.float64)
        if method == "linear":
            scaler = MinMaxScaler().fit(train.reshape(-1, 1))
            abnormal = scaler.transform(scores.reshape(-1, 1)).ravel()
        else:
            abnormal = erf((scores - train.mean()) / (train.std() * np.sqrt(2.0)))
        abnormal = np.clip(abnormal, 0.0, 1.0)
        probabilities = np.stack([1.0 - abnormal, abnormal], axis=1)
        return (probabilities, self._confidence(scores)) if return_confidence else probabilities

    def predict_confidence(self, X) -> np.ndarray:
        """How consistently each prediction would stand if the training images were
        resampled, in [0, 1] (PyOD's, Perini et al. 2020): the score's rank among the
        n training scores gives a posterior probability p = (1 + rank) / (2 + n) of being
        abnormal, and the confidence is P(Binomial(n, p) > n - floor(n c)), c the
        contamination (the config's false-positive rate when None), taken as 1 minus
        that for images predicted normal."""
        return self._confidence(self.decision_function(X))

    def _confidence(self, scores) -> np.ndarray:
        from scipy.stats import binom

        train, n = self.decision_scores_, len(self.decision_scores_)
        scores = np.asarray(scores, np.float64)
        rank = np.searchsorted(np.sort(train), scores, side="right")  # training <= score
        rate = (self.contamination if self.contamination is not None
                else self.detector_.config.eval.false_positive_rate)
        confidence = 1.0 - binom.cdf(n - int(n * rate), n, (1.0 + rank) / (2.0 + n))
        return np.where(scores > self.threshold_, confidence, 1.0 - confidence)

    def anomaly_maps(self, X) -> np.ndarray:
        """Anomaly map per image [N, S, S] at the model's size S."""
        out = self._score(X)
        if "map" not in out:
            raise UserError(f"Method {self._fitted().config.method} gives image scores "
                            "only, no anomaly maps.")
        return out["map"]

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, path: str, member: int = 0, variant: str = RECONSTRUCTION
             ) -> "AnomalyDetector":
        """A fitted detector from any finished run's workdir, or one written by `export`
        (member `member`, scoring with `variant`); `decision_scores_` are the scores of
        the normal images that set the run's threshold."""
        detector = detector_lib.load(path, member, variant)
        restored = cls(config=detector.config, workdir=path, member=member, variant=variant)
        restored._set_fitted(detector, _run_normal_scores(detector))
        return restored

    def export(self, path: str, format: str = "workdir") -> dict:
        """Writes the detector's member to `path` in `format`, as `python -m
        ae4ad_jax.export` does: "workdir" (config.json, checkpoint, thresholds.json; what
        `load`, `python -m ae4ad_jax.score` and `.main --eval_only` read), "stablehlo"
        (the reconstruction score and maps as one `jax.export` file) or "onnx" (the same
        as an ONNX model, for runtimes without JAX). The code scores need the run's
        normal codes: only the workdir carries them. Returns what was written."""
        from ae4ad_jax.training import export

        detector = self._fitted()
        if format != "workdir" and self.variant != RECONSTRUCTION:
            raise UserError(f"The {format} export gives the reconstruction score only, not "
                            f"{self.variant!r}: load the detector with "
                            "variant='reconstruction' to export it.")
        return export.export(detector.workdir, detector.index, path, format)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = dict(self.__dict__)
        detector = state.pop("detector_", None)
        if detector is not None:
            from ae4ad_jax.training import export

            with tempfile.TemporaryDirectory() as folder:
                export.export_workdir(detector.workdir, detector.index,
                                      os.path.join(folder, "member"))
                packed = io.BytesIO()
                with tarfile.open(fileobj=packed, mode="w") as tar:
                    tar.add(os.path.join(folder, "member"), arcname="member")
            state[PACKED] = packed.getvalue()
            state.pop("workdir_", None)
        return state

    def __setstate__(self, state):
        packed = state.pop(PACKED, None)
        self.__dict__.update(state)
        if packed is not None:
            folder = _temporary_folder(self, "ae4ad_detector_")
            with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
                tar.extractall(folder, filter="data")
            self.detector_ = detector_lib.load(os.path.join(folder, "member"), 0, self.variant)
            self.workdir_ = self.detector_.workdir


def _unflatten(X, config):
    """scikit-learn's 2-D form [N, S * S * C] back to images [N, S, S, C] at the config's
    size (C = its channels, or 1 or 3 when it reads them from the data); other forms
    pass as they are."""
    if not (isinstance(X, np.ndarray) and X.ndim == 2):
        return X
    size, channels = config.image_size, config.channels
    for c in (channels,) if channels else (1, 3):
        if X.shape[1] == size * size * c:
            return X.reshape(len(X), size, size, c)
    wanted = " or ".join(f"{size} x {size} x {c} = {size * size * c}"
                         for c in ((channels,) if channels else (1, 3)))
    raise ValueError(f"A 2-D X holds flattened images at the model's size: {wanted} "
                     f"columns; got X of shape {X.shape}.")


def _run_normal_scores(detector) -> np.ndarray:
    """The scores of the normal images that set the run's threshold (scores.npz)."""
    saved = results.read_scores(detector.workdir)
    key = "normal" if detector.variant == RECONSTRUCTION else f"normal_{detector.variant}"
    values = None if saved is None else saved.get(key)
    if values is None or values.ndim != 2 or len(values) <= detector.index:
        raise UserError(f"{detector.workdir}/{results.SCORES_FILE} lacks the scores {key!r} "
                        f"of member {detector.index}; rerun `python -m ae4ad_jax.main "
                        f"--workdir={detector.workdir} --eval_only`.")
    return values[detector.index]
