"""Metrics against hand-worked cases and their definitions as loops; padded scoring."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae4ad_jax.estimators import entropy
from ae4ad_jax.evaluation import evaluator, metrics, scoring
from ae4ad_jax.methods import registry
from ae4ad_jax.nets.autoencoder import Architecture, AutoEncoder


def auroc_by_pairs(scores, labels):
    """P(score of an abnormal > score of a normal), ties counting one half."""
    abnormal, normal = scores[labels == 1], scores[labels == 0]
    wins = (abnormal[:, None] > normal[None, :]) + 0.5 * (abnormal[:, None] == normal[None, :])
    return wins.mean()


def ap_by_ranks(scores, labels):
    """Average precision: at each distinct threshold t (descending), the recall gained times
    the precision of `scores >= t`."""
    ap, recall = 0.0, 0.0
    for t in np.unique(scores)[::-1]:
        predicted = scores >= t
        true_positive = np.sum(predicted & (labels == 1))
        new_recall = true_positive / np.sum(labels == 1)
        ap += (new_recall - recall) * true_positive / np.sum(predicted)
        recall = new_recall
    return ap


def test_image_metrics_hand_worked():
    # scores 0.1 0.4 0.35 0.8, abnormal at 0.35 and 0.8. Pairs (abnormal > normal):
    # 0.35 beats 0.1, not 0.4; 0.8 beats both: AUROC 3/4. Ranked 0.8 (+), 0.4 (-),
    # 0.35 (+), 0.1 (-): AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    scores, labels = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    out = metrics.image_metrics(scores, labels)
    assert out["auroc"] == pytest.approx(0.75)
    assert out["ap"] == pytest.approx(5 / 6)
    assert out["mean_score_normal"] == pytest.approx(0.25)
    assert out["mean_score_abnormal"] == pytest.approx(0.575)


def test_image_metrics_match_pairwise_and_rank_definitions_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.3 * labels, 2)  # ties on purpose
    out = metrics.image_metrics(scores, labels)
    assert out["auroc"] == pytest.approx(auroc_by_pairs(scores, labels), abs=1e-12)
    assert out["ap"] == pytest.approx(ap_by_ranks(scores, labels), abs=1e-12)
    assert 0.5 < out["auroc"] < 1.0


def test_pixel_metrics_pool_all_pixels():
    rng = np.random.default_rng(1)
    masks = (rng.random((6, 8, 8)) < 0.1).astype(np.uint8)
    masks[:2] = 0  # normal images: empty masks still count as negatives
    maps = np.round(rng.random((6, 8, 8)) + masks * 0.5, 2)
    out = metrics.pixel_metrics(maps, masks)
    assert out["pixel_auroc"] == pytest.approx(auroc_by_pairs(maps.ravel(), masks.ravel()))
    assert out["pixel_ap"] == pytest.approx(ap_by_ranks(maps.ravel(), masks.ravel()))
    assert metrics.pixel_metrics(maps, np.zeros_like(masks)) == {}  # no positive pixel


def reference_best_dice_loop(preds, targets, n_thresh=200):
    """The reference's compute_best_dice, one threshold at a time."""
    preds, targets = np.ravel(preds), np.ravel(targets)
    step = preds.size // n_thresh
    thresholds = np.sort(preds)[np.arange(0, preds.size, step)]
    best = 0.0
    for t in thresholds:
        binary = preds > t
        best = max(best, 2 * np.sum(binary[targets == 1]) / (np.sum(binary) + np.sum(targets)))
    return best


def test_best_dice_reference_rule_matches_loop():
    rng = np.random.default_rng(2)
    targets = (rng.random(5000) < 0.05).astype(np.uint8)
    scores = rng.random(5000) + targets * rng.random(5000)
    assert np.isclose(metrics.best_dice_reference(scores, targets),
                      reference_best_dice_loop(scores, targets))


def test_best_dice_exact_is_best_over_every_threshold():
    rng = np.random.default_rng(3)
    targets = (rng.random(400) < 0.2).astype(np.uint8)
    scores = np.round(rng.random(400) + targets * 0.4, 2)  # ties on purpose
    brute = max(2 * np.sum((scores > t) & (targets == 1)) / (np.sum(scores > t) + targets.sum())
                for t in np.concatenate([[-1.0], scores]))
    assert np.isclose(metrics.best_dice_exact(scores, targets), brute)
    assert metrics.best_dice_exact(scores, targets) >= metrics.best_dice_reference(
        scores, targets)
    # Equal to the sweep it replaced (Dice at -inf and at every distinct score), pooled
    # over a million pixels with ties; no lesion pixel at all: 0.
    targets = (rng.random(10 ** 6) < 0.03).astype(np.uint8)
    scores = np.round(rng.random(10 ** 6) + targets * rng.random(10 ** 6), 4)
    swept = np.max(metrics.dice_at_thresholds(scores, targets, np.concatenate(
        [[-np.inf], np.unique(scores)])))
    assert abs(metrics.best_dice_exact(scores, targets) - swept) < 1e-12
    assert metrics.best_dice_exact(scores, np.zeros_like(targets)) == 0.0


def test_best_dice_hand_worked():
    # scores 0.1 0.4 0.35 0.8, positives at 0.35 and 0.8 (P = 2).
    # t=-inf: all 4 predicted, TP 2 -> 4/6; t=0.1: 3 predicted, TP 2 -> 4/5;
    # t=0.35: {0.4, 0.8}, TP 1 -> 2/4; t=0.4: {0.8} -> 2/3; t=0.8: none -> 0.
    scores, targets = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    np.testing.assert_allclose(
        metrics.dice_at_thresholds(scores, targets, np.array([-np.inf, 0.1, 0.35, 0.4, 0.8])),
        [4 / 6, 4 / 5, 2 / 4, 2 / 3, 0.0])
    assert np.isclose(metrics.best_dice_exact(scores, targets), 0.8)
    # The 200-threshold rule with 4 pixels uses every sorted score: 0.1 is among them.
    assert np.isclose(metrics.best_dice_reference(scores, targets), 0.8)


def _tiny_config(**model):
    from configs import test

    config = test.get_config()
    config.model.update(model)
    return config


def test_score_images_scores_each_image_once_with_padding():
    model = AutoEncoder(latent_size=3, channels=1,
                        architecture=Architecture(base_width=4, hidden_width=8))
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)), train=False)
    stacked = jax.tree_util.tree_map(lambda x: jnp.stack([x, 2 * x]), variables)  # 2 members
    members = {"variables": stacked, "latent_mask": jnp.ones((2, 3)),
               "rng": jnp.zeros((2, 2), jnp.uint32)}
    images = np.random.default_rng(4).integers(0, 256, (11, 32, 32, 1)).astype(np.uint8)
    config = _tiny_config(base_width=4, hidden_width=8)
    config.latent_size = 3
    method = registry.create(config)
    out = scoring.score_images(members, jnp.asarray(images), method=method, batch_size=4,
                               with_maps=True)
    assert out["score"].shape == (2, 11) and out["map"].shape == (2, 11, 32, 32)
    x = (images / 255.0 - 0.5) / 0.5
    for m in range(2):
        member = jax.tree_util.tree_map(lambda v, m=m: v[m], stacked)
        recon = model.apply(member, jnp.asarray(x, jnp.float32), train=False)["recon"]
        expected_map = np.mean((np.asarray(recon) - x) ** 2, axis=-1)
        np.testing.assert_allclose(out["map"][m], expected_map, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out["score"][m], expected_map.mean(axis=(1, 2)), rtol=1e-4)
        np.testing.assert_allclose(out["mse"][m], np.mean((np.asarray(recon) - x) ** 2,
                                                          axis=(1, 2, 3)), rtol=1e-4)
    assert not np.allclose(out["score"][0], out["score"][1])


def test_metrics_row_routes_each_split_to_its_keys():
    rng = np.random.default_rng(5)
    labels = np.array([0, 0, 1, 1])
    masks = np.zeros((4, 4, 4), np.uint8)
    masks[2:, 1:3, 1:3] = 1
    maps = rng.random((4, 4, 4))
    z = rng.standard_normal((4, 6))
    z[:, 3:] = 0  # a member of latent size 3 padded to 6
    # Scores, test errors and train errors all differ, so a key fed from the wrong one fails.
    test = {"score": np.array([0.1, 0.4, 0.35, 0.8]), "mse": np.array([1.0, 2.0, 3.0, 5.0]),
            "map": maps, "z": z}
    train = {"mse": np.array([0.5, 0.7]), "z": rng.standard_normal((10, 6))}
    row = evaluator.compute_metrics(test, train, labels, masks, 3, ("gaussian", "knn"))
    assert row["auroc"] == pytest.approx(0.75)  # from the scores (the errors give 1.0)
    assert row["recon_error_train_normal"] == pytest.approx(0.6)
    assert row["recon_error_test_normal"] == pytest.approx(1.5)
    assert row["recon_error_test_abnormal"] == pytest.approx(4.0)
    assert row["pixel_auroc"] == pytest.approx(auroc_by_pairs(maps.ravel(), masks.ravel()))
    for key in ("pixel_ap", "dice_best", "dice_best_exact", "mean_score_normal"):
        assert key in row
    assert row["entropy_gaussian_train_normal"] == pytest.approx(
        float(entropy.estimate_entropy(train["z"][:, :3], "gaussian")))
    assert np.isfinite(row["entropy_knn_train_normal"])
    assert "entropy_knn_test_normal" not in row  # 2 vectors: too few for k = 3
    assert "entropy_gaussian_test_abnormal" in row


def test_decision_threshold_leaves_at_most_the_rate_above_it():
    rng = np.random.default_rng(0)
    normal = rng.normal(size=1000)
    threshold = metrics.decision_threshold(normal, 0.05)
    ranked = np.sort(normal)
    assert threshold == ranked[950]  # the 951st smallest: 49 scores lie above it
    assert np.sum(normal > threshold) == 49
    assert metrics.decision_threshold(np.arange(10.0), 0.2) == 8.0  # 1 of 10 above
    labels = np.array([0, 0, 0, 0, 1, 1])
    row = metrics.threshold_metrics(np.arange(10.0), np.array([1.0, 9.0, 8.0, 8.5, 9.5, 3.0]),
                                     labels, 0.2, True)
    assert row == {"threshold": 8.0, "threshold_from_val": 1, "fpr_test_normal": 0.5,
                   "tpr_test_abnormal": 0.5}
