"""AnomalyDetector in scikit-learn's machinery (clone, parameters, the estimator checks,
GridSearchCV, Pipeline, joblib) and with PyOD's meanings (contamination, labels_,
predict_proba, predict_confidence, fit_predict)."""

import os
import subprocess
import sys

import joblib
import numpy as np
import pytest
from scipy.special import erf
from scipy.stats import binom
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from ae4ad_jax.api import AnomalyDetector
from ae4ad_jax.data import phantom

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = 16


def _config():
    from configs import test

    config = test.get_config()
    config.image_size, config.num_epochs, config.batch_size = SIZE, 2, 16
    config.model.update(base_width=4, hidden_width=16)
    return config


# scikit-learn's checks feed tabular data (make_blobs: a few columns); the detector
# takes images, and 2-D X only as flattened images of image_size^2 x channels columns.
TABULAR = ("it fits on tabular data of a few columns; the detector takes images (2-D X "
           f"only as flattened {SIZE} x {SIZE} images), and says so with a ValueError")
NOT_APPLICABLE = {
    "check_n_features_in_after_fitting": TABULAR,
    "check_fit_score_takes_y": TABULAR,
    "check_estimators_overwrite_params": TABULAR,
    "check_dont_overwrite_parameters": TABULAR,
    "check_estimators_fit_returns_self": TABULAR,
    "check_readonly_memmap_input": TABULAR,
    "check_positive_only_tag_during_fit": TABULAR,
    "check_estimators_dtypes": TABULAR,
    "check_complex_data": TABULAR,
    "check_dtype_object": TABULAR,
    "check_estimators_empty_data_messages": TABULAR,
    "check_pipeline_consistency": TABULAR,
    "check_estimators_nan_inf": TABULAR,
    "check_estimators_pickle": TABULAR,
    "check_f_contiguous_array_estimator": TABULAR,
    "check_methods_sample_order_invariance": TABULAR,
    "check_methods_subset_invariance": TABULAR,
    "check_fit2d_1sample": TABULAR,
    "check_fit2d_1feature": TABULAR,
    "check_dict_unchanged": TABULAR,
    "check_fit_idempotent": TABULAR,
    "check_fit_check_is_fitted": TABULAR,
    "check_n_features_in": TABULAR,
    "check_fit2d_predict1d": TABULAR,
    "check_fit1d": TABULAR,
    "check_estimator_sparse_array": TABULAR,
    "check_estimator_sparse_matrix": TABULAR,
    "check_estimator_sparse_tag": TABULAR,
}


@parametrize_with_checks([AnomalyDetector(_config())],
                         expected_failed_checks=lambda estimator: NOT_APPLICABLE)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_clone_and_nested_config_parameters():
    config = _config()
    detector = AnomalyDetector(config, contamination=0.1)
    copy = clone(detector)
    assert copy.config is not config and copy.config.to_dict() == config.to_dict()
    assert copy.get_params(deep=False).keys() == {
        "config", "workdir", "member", "variant", "contamination"}
    params = detector.get_params(deep=True)
    assert params["config__latent_size"] == 16 and params["config__model__base_width"] == 4
    copy.set_params(config__latent_size=4, config__model__base_width=8, member=0)
    assert (copy.config.latent_size, copy.config.model.base_width) == (4, 8)
    assert config.latent_size == 16  # the estimator's config is a copy
    with pytest.raises(ValueError, match=r"config__model__nope: the config has no key "
                                         r"model\.nope"):
        copy.set_params(config__model__nope=1)
    images = np.zeros((2, SIZE, SIZE), np.uint8)
    for call in (copy.decision_function, copy.predict, copy.predict_proba,
                 copy.predict_confidence, copy.anomaly_maps):
        with pytest.raises(NotFittedError, match="not fitted"):
            call(images)
    for bad in (0.0, 0.6, "0.1"):
        with pytest.raises(ValueError, match="contamination must be None or in"):
            AnomalyDetector(config, contamination=bad).fit(images)
    with pytest.raises(ValueError, match=r"flattened images at the model's size: 16 x 16 x "
                                         r"1 = 256 columns; got X of shape \(2, 10\)"):
        AnomalyDetector(config).fit(np.zeros((2, 10)))


def _auroc(estimator, X, y):
    """A scorer of our own: AUROC of the labelled validation images."""
    return roc_auc_score(y, estimator.decision_function(X))


def _to_unit_range(images):
    """uint8 -> [0, 1] floats: a Pipeline's first step that converts images."""
    return images.astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def search():
    """A grid over config__latent_size in {4, 16} on phantom, two folds: each trains on
    half the normal images and is scored by AUROC on the other half and 16 abnormal
    images; the refit trains on everything given (a quarter abnormal: contamination)."""
    normal, _ = phantom.generate(96, SIZE, 0, False)
    abnormal, _ = phantom.generate(32, SIZE, 1, True)
    X = np.concatenate([normal, abnormal])[..., 0]
    y = np.r_[np.zeros(96, int), np.ones(32, int)]
    folds = [(np.arange(48), np.r_[48:96, 96:112]), (np.arange(48, 96), np.r_[0:48, 112:128])]
    pipeline = Pipeline([("images", FunctionTransformer(_to_unit_range)),
                         ("detector", AnomalyDetector(_config(), contamination=0.25))])
    grid = GridSearchCV(pipeline, {"detector__config__latent_size": [4, 16]}, cv=folds,
                        scoring=_auroc, error_score="raise")
    return grid.fit(X, y), X, y


def test_grid_search_over_latent_sizes_in_a_pipeline(search):
    grid, X, y = search
    means = grid.cv_results_["mean_test_score"]
    print("latent sizes", grid.cv_results_["param_detector__config__latent_size"].tolist(),
          "cross-validated AUROC", means.tolist(), "chosen", grid.best_params_)
    assert grid.best_params_["detector__config__latent_size"] in (4, 16)
    assert grid.best_score_ == means.max() > 0.5
    detector = grid.best_estimator_.named_steps["detector"]
    assert detector.config.latent_size == grid.best_params_["detector__config__latent_size"]
    # PyOD's threshold from contamination: the 75th percentile of the training scores
    scores = detector.decision_scores_
    assert len(scores) == 128 and detector.threshold_ == np.percentile(scores, 75)
    np.testing.assert_array_equal(detector.labels_, scores > detector.threshold_)
    assert detector.labels_.sum() == 32
    np.testing.assert_array_equal(grid.predict(X), detector.predict(_to_unit_range(X)))
    np.testing.assert_array_equal(detector.predict(_to_unit_range(X)), detector.labels_)


def test_pyod_probabilities_and_confidence(search):
    grid, X, _ = search
    detector = grid.best_estimator_.named_steps["detector"]
    images = _to_unit_range(X[::8])
    train, scores = detector.decision_scores_, detector.decision_function(images)
    # PyOD's definitions, written out
    linear = np.clip((scores - train.min()) / (train.max() - train.min()), 0, 1)
    unify = np.clip(erf((scores - train.mean()) / (train.std() * np.sqrt(2))), 0, 1)
    for method, abnormal in (("linear", linear), ("unify", unify)):
        probabilities = detector.predict_proba(images, method=method)
        np.testing.assert_allclose(probabilities[:, 1], abnormal, rtol=1e-12)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="method must be 'linear' or 'unify'"):
        detector.predict_proba(images, method="softmax")
    n = len(train)
    counts = np.array([np.count_nonzero(train <= s) for s in scores])
    confidence = 1 - binom.cdf(n - int(n * 0.25), n, (1 + counts) / (2 + n))
    confidence = np.where(scores > detector.threshold_, confidence, 1 - confidence)
    np.testing.assert_allclose(detector.predict_confidence(images), confidence, rtol=1e-12)
    labels, with_labels = detector.predict(images, return_confidence=True)
    np.testing.assert_array_equal(labels, scores > detector.threshold_)
    np.testing.assert_allclose(with_labels, confidence, rtol=1e-12)
    _, with_probabilities = detector.predict_proba(images, "unify", return_confidence=True)
    np.testing.assert_allclose(with_probabilities, confidence, rtol=1e-12)


def test_fit_predict_gives_the_training_labels(search):
    grid, X, _ = search
    detector = clone(grid.best_estimator_.named_steps["detector"])
    labels = detector.fit_predict(_to_unit_range(X))
    np.testing.assert_array_equal(labels, detector.labels_)
    assert labels.shape == (128,) and labels.sum() == 32


def test_joblib_round_trip_in_a_fresh_process_scores_bitwise(search, tmp_path):
    grid, X, _ = search
    detector = grid.best_estimator_.named_steps["detector"]
    images = _to_unit_range(X[::4])
    before = detector.decision_function(images)
    joblib.dump(detector, tmp_path / "detector.joblib")
    np.save(tmp_path / "images.npy", images)
    code = ("import sys, joblib, numpy as np; d = joblib.load(sys.argv[1]); "
            "np.save(sys.argv[3], d.decision_function(np.load(sys.argv[2]))); "
            "print(d.threshold_, d.get_params(deep=False)['contamination'])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "detector.joblib"),
                          str(tmp_path / "images.npy"), str(tmp_path / "after.npy")],
                         cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    after = np.load(tmp_path / "after.npy")
    print("before", before[:4].tolist(), "after", after[:4].tolist())
    np.testing.assert_array_equal(after, before)  # bitwise
    assert out.stdout.split() == [repr(detector.threshold_), "0.25"]
