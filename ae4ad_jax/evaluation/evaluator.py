"""The evaluator: every member of a run scores the train, held-out and test images, and
each member gets one metrics row (image, pixel, code and threshold metrics)."""

import functools

import numpy as np

from ae4ad_jax.evaluation import code_scores, codes, metrics, scoring
from ae4ad_jax.parallel import ensemble


def compute_metrics(test, train, labels, masks, latent_size, estimators=(), bootstrap=0):
    """One member's metrics row from its scored splits (host numpy arrays): image and
    pixel metrics, reconstruction errors, and, for methods with a code, entropies of the
    raw and the standardised code and the learned rate (bits per image). Without a test
    split (`test` None) the row has the training side only."""
    row = {} if test is None else metrics.image_metrics(test["score"], labels)
    row["recon_error_train_normal"] = float(np.mean(train["mse"]))
    if test is not None:
        row["recon_error_test_normal"] = float(np.mean(test["mse"][labels == 0]))
        row["recon_error_test_abnormal"] = float(np.mean(test["mse"][labels == 1]))
        if masks is not None and "map" in test:
            row.update(metrics.pixel_metrics(test["map"], masks))
    row.update(codes.code_metrics(train, test, labels, latent_size, estimators, bootstrap))
    return row


def code_score_metrics(train, normal, test, labels, latent_size, k, false_positive_rate,
                       normal_is_train) -> dict:
    """For each code-score variant (`code_scores.py`): its image AUROC and AP on the test
    split (`auroc_<variant>`, `ap_<variant>`) and its decision threshold on the normal
    images (`threshold_<variant>`); the member's fitted `CodeModel`; and the variants'
    (normal, test) scores."""
    row = {}
    model, variants = code_scores.member_code_scores(train, normal, test, latent_size, k,
                                                     normal_is_train)
    for name, (normal_scores, test_scores) in variants.items():
        row[f"threshold_{name}"] = metrics.decision_threshold(normal_scores,
                                                              false_positive_rate)
        if test_scores is not None:
            found = metrics.image_metrics(test_scores, labels)
            row[f"auroc_{name}"], row[f"ap_{name}"] = found["auroc"], found["ap"]
    return row, model, variants


def evaluate_members(weights, members, data, placed, config, method, plan, layout):
    """Scores train, val and test splits with every member (`weights`: the members'
    `scoring.scoring_weights`). Returns (one metrics row per member, the scores behind
    them: arrays [M, N], "test" (absent without a test split) and "normal", the normal
    images that set the thresholds, `normal_<variant>` and `test_<variant>` for the code
    scores; each member's fitted code-score model)."""
    score = functools.partial(scoring.score_members, weights,
                              batch_size=config.eval.batch_size, method=method, plan=plan,
                              layout=layout)
    test = (score(placed["test"], with_maps=data.test_masks is not None)
            if "test" in placed else None)
    train = score(placed["train"])
    val = score(placed["val"]) if len(data.val_images) else None
    normal = (val if val is not None else train)["score"]
    rows, models, variant_scores = [], [], {}
    for m, member in enumerate(members):
        row = compute_metrics(None if test is None else ensemble.take(test, m),
                              ensemble.take(train, m), data.test_labels, data.test_masks,
                              member["latent_size"], tuple(config.entropy_estimators),
                              config.entropy_bootstrap)
        if val is not None:
            row["recon_error_val_normal"] = float(val["mse"][m].mean())
            if "bits" in val:
                row["rate_bits_val_normal"] = float(val["bits"][m].mean())
        row.update(metrics.threshold_metrics(
            normal[m], None if test is None else test["score"][m], data.test_labels,
            config.eval.false_positive_rate, val is not None))
        code_row, model, variants = code_score_metrics(
            ensemble.take(train, m), ensemble.take(val if val is not None else train, m),
            None if test is None else ensemble.take(test, m), data.test_labels,
            member["latent_size"], config.eval.code_knn_k, config.eval.false_positive_rate,
            normal_is_train=val is None)
        row.update(code_row)
        rows.append(row)
        models.append(model)
        for name, (normal_scores, test_scores) in variants.items():
            variant_scores.setdefault(f"normal_{name}", []).append(normal_scores)
            if test_scores is not None:
                variant_scores.setdefault(f"test_{name}", []).append(test_scores)
    scores = {"normal": normal,
              **{key: np.stack(values) for key, values in variant_scores.items()}}
    if test is not None:
        scores["test"] = test["score"]
    return rows, scores, models
