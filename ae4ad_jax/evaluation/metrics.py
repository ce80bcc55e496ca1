"""Metrics on the host: image AUROC and AP (scikit-learn), pooled pixel AUROC and AP and
the best Dice where masks exist (an oracle figure: its threshold is chosen with the
test masks; by the reference's rule of about 200 thresholds and exactly over all), and
decision thresholds set on normal images.
"""

import numpy as np
from sklearn import metrics as sk_metrics

DICE_THRESHOLDS = 200  # the reference's compute_best_dice(n_thresh=200)


def dice_at_thresholds(scores, targets, thresholds):
    """Dice of `scores > t` against boolean `targets`, for each t, over all pooled pixels."""
    scores, targets = np.ravel(scores), np.ravel(targets).astype(bool)
    all_sorted = np.sort(scores)
    positive_sorted = np.sort(scores[targets])
    predicted = scores.size - np.searchsorted(all_sorted, thresholds, side="right")
    true_positive = positive_sorted.size - np.searchsorted(positive_sorted, thresholds,
                                                           side="right")
    denominator = predicted + positive_sorted.size
    return np.where(denominator > 0, 2.0 * true_positive / np.maximum(denominator, 1), 0.0)


def best_dice_reference(scores, targets, num_thresholds=DICE_THRESHOLDS):
    """The reference's rule: thresholds at every (N // 200)-th sorted score; the best Dice."""
    flat = np.ravel(scores)
    step = max(flat.size // num_thresholds, 1)
    thresholds = np.sort(flat)[np.arange(0, flat.size, step)]
    return float(np.max(dice_at_thresholds(flat, targets, thresholds)))


def best_dice_exact(scores, targets):
    """The best Dice over every distinct threshold (every possible predicted set): the
    largest F1 on scikit-learn's precision-recall curve (Dice is F1 on pixels)."""
    targets = np.ravel(targets).astype(bool)
    if not targets.any():
        return 0.0
    precision, recall, _ = sk_metrics.precision_recall_curve(targets, np.ravel(scores))
    both = precision + recall
    f1 = np.divide(2.0 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    return float(np.max(f1))


def image_metrics(scores, labels):
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    normal, abnormal = scores[labels == 0], scores[labels == 1]
    return {
        "auroc": float(sk_metrics.roc_auc_score(labels, scores)),
        "ap": float(sk_metrics.average_precision_score(labels, scores)),
        "mean_score_normal": float(normal.mean()),
        "mean_score_abnormal": float(abnormal.mean()),
    }


def decision_threshold(normal_scores, false_positive_rate: float) -> float:
    """The score above which an image is called abnormal: the (1 - rate) quantile of the
    scores of normal images, taken at an observed score ("higher"), so that at most
    `false_positive_rate` of them lie above it."""
    return float(np.quantile(np.asarray(normal_scores, np.float64), 1.0 - false_positive_rate,
                             method="higher"))


def threshold_metrics(normal_scores, test_scores, labels, false_positive_rate,
                      held_out: bool) -> dict:
    """The threshold from normal images without test labels (held-out validation normals,
    else the training normals: `threshold_from_val` 1 or 0) and, with test scores, the test
    images' actual false-positive rate and sensitivity at it."""
    threshold = decision_threshold(normal_scores, false_positive_rate)
    row = {"threshold": threshold, "threshold_from_val": int(held_out)}
    if test_scores is not None:
        flagged = np.asarray(test_scores) > threshold
        labels = np.asarray(labels)
        row["fpr_test_normal"] = float(flagged[labels == 0].mean())
        row["tpr_test_abnormal"] = float(flagged[labels == 1].mean())
    return row


def pixel_metrics(maps, masks):
    """Pooled pixel AUROC/AP and best Dice; `maps` [N, H, W] float, `masks` [N, H, W] {0,1}."""
    scores = np.asarray(maps, np.float64).ravel()
    targets = np.asarray(masks).ravel() > 0
    if not targets.any():
        return {}
    return {
        "pixel_auroc": float(sk_metrics.roc_auc_score(targets, scores)),
        "pixel_ap": float(sk_metrics.average_precision_score(targets, scores)),
        "dice_best": best_dice_reference(scores, targets),
        "dice_best_exact": best_dice_exact(scores, targets),
    }
