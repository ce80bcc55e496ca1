"""Scoring on the device (jit-compiled, batched, padded) and metrics on the host.

Image level: AUROC and AP of the image scores (scikit-learn). Pixel level,
where masks exist: AUROC and AP over all pooled test pixels, and the best Dice
(an oracle figure: its threshold is chosen with the test masks), both by the
reference's rule of about 200 thresholds and exactly over all thresholds.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import metrics as sk_metrics

from ae4ad_jax import batching, ensemble, entropy, methods
from ae4ad_jax.errors import UserError
from ae4ad_jax.input_pipeline import to_float

DICE_THRESHOLDS = 200  # the reference's compute_best_dice(n_thresh=200)


# ----------------------------------------------------------------------------- device


EVAL_STREAM = 2  # the random stream of test-time sampling (the VAE), one key per image


def forward_fn(method, member):
    """The trained member as `forward(x, row_keys, train=False) -> outputs`; in train mode
    BatchNorm uses the batch's statistics and updates nothing."""
    model = method.create_model(member["latent_mask"].shape[-1])

    def forward(x, keys, train=False):
        call = functools.partial(model.apply, member["variables"], x,
                                 latent_mask=member["latent_mask"], row_keys=keys)
        return call(train=True, mutable=["batch_stats"])[0] if train else call(train=False)

    return forward


def scoring_weights(state) -> dict:
    """What scoring reads of a train state (any leading member axes kept): the model's
    variables, the latent mask and the members' keys."""
    return {"variables": {"params": state.params, "batch_stats": state.batch_stats,
                          **state.constants},
            "latent_mask": state.latent_mask, "rng": state.rng}


def _score_batch(method, member, images, positions, with_maps):
    """Scores one batch for one member: dict of [B] (and [B, H, W]) arrays; `positions`
    are the images' indices in the scored set (their random streams)."""
    forward = forward_fn(method, member)
    stream = jax.random.fold_in(member["rng"], EVAL_STREAM)
    maps, scores, outputs = method.score(forward, images, methods.row_keys(stream, positions),
                                         member["latent_mask"])
    result = {"score": scores, "mse": methods.per_image_mse(outputs["recon"], images)}
    for key in ("z", "z_norm", "bits"):  # the code, standardised, its rate in bits
        if method.has_latent and key in outputs:
            result[key] = outputs[key]
    if with_maps and maps is not None:
        result["map"] = maps
    return result


@functools.partial(jax.jit, static_argnames=("method", "batch_size", "with_maps", "lowering"))
def score_images(members, images, first=0, *, method, batch_size, with_maps, lowering="vmap"):
    """Scores every image with every member in one device call.

    `members` ({"variables", "latent_mask", "rng"}) have a leading member axis M,
    lifted by `lowering` ("vmap" or "unroll"); `images` are uint8 [N, H, W, C], the
    scored set's rows `first` to `first + N - 1`. The last batch is padded and the
    padding cut off, so each image is scored exactly once. Returns arrays of shape
    [M, N] (maps [M, N, H, W]).
    """
    batches = batching.split_padded(images, batch_size)
    starts = first + batch_size * jnp.arange(batches.shape[0])

    def one_batch(args):
        batch, start = args
        x = to_float(batch)
        positions = start + jnp.arange(batch_size)

        def score(member):
            return _score_batch(method, member, x, positions, with_maps)

        return ensemble.over_members(score, lowering)(members)

    out = jax.lax.map(one_batch, (batches, starts))  # leaves [num_batches, M, B, ...]
    return jax.tree_util.tree_map(
        lambda x: jnp.moveaxis(x, 0, 1).reshape((x.shape[1], -1) + x.shape[3:])[
            :, :images.shape[0]], out)


# ----------------------------------------------------------------------------- host


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
    """The best Dice over every distinct threshold (every possible predicted set)."""
    flat = np.ravel(scores)
    thresholds = np.concatenate([[-np.inf], np.unique(flat)])
    return float(np.max(dice_at_thresholds(flat, targets, thresholds)))


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


ENTROPY_PREFIXES = {"z": "entropy", "z_norm": "entropy_norm"}  # raw code, standardised
BOOTSTRAP_SEED = 0


def entropy_metrics(latents: dict, latent_size: int, estimators, bootstrap=0,
                    prefix="entropy") -> dict:
    """H(Z) of each named set of latents ([N, ..., max(d)], cut to the member's d):
    `{prefix}_{estimator}_{set}` with `_low` and `_high`, the 95% bootstrap interval of
    `bootstrap` resamples, and `_in_range`: 1 when (d, N) lies in the range where the
    known-answer tests validate the estimator (`entropy.in_validated_range`), else 0.

    A set too small for an estimator (k-NN needs k + 1 vectors) gets no value.
    """
    row = {}
    key = jax.random.PRNGKey(BOOTSTRAP_SEED)
    for name, z in latents.items():
        z = np.asarray(z)[..., :latent_size].reshape(len(z), -1)
        for estimator in estimators:
            try:
                value, low, high = entropy.estimate_with_interval(z, estimator, bootstrap, key)
            except UserError:
                continue
            field = f"{prefix}_{estimator}_{name}"
            row[field] = value
            if bootstrap:
                row[f"{field}_low"], row[f"{field}_high"] = low, high
            row[f"{field}_in_range"] = int(entropy.in_validated_range(estimator, *z.shape[::-1]))
    return row


def compute_metrics(test, train, labels, masks, latent_size, estimators=(), bootstrap=0):
    """One member's metrics row from its scored splits (host numpy arrays): image and
    pixel metrics, reconstruction errors, and, for methods with a code, entropies of the
    raw and the standardised code and the learned rate (bits per image). Without a test
    split (`test` None) the row has the training side only."""
    row = {} if test is None else image_metrics(test["score"], labels)
    row["recon_error_train_normal"] = float(np.mean(train["mse"]))
    if test is not None:
        row["recon_error_test_normal"] = float(np.mean(test["mse"][labels == 0]))
        row["recon_error_test_abnormal"] = float(np.mean(test["mse"][labels == 1]))
        if masks is not None and "map" in test:
            row.update(pixel_metrics(test["map"], masks))
    for code, prefix in ENTROPY_PREFIXES.items():
        if code in train:
            row.update(entropy_metrics(_sets(train, test, labels, code), latent_size,
                                       estimators, bootstrap, prefix))
    if "bits" in train:
        row.update({f"rate_bits_{name}": float(np.mean(bits))
                    for name, bits in _sets(train, test, labels, "bits").items()})
    return row


def _sets(train, test, labels, key):
    sets = {"train_normal": train[key]}
    if test is not None:
        sets.update(test_normal=test[key][labels == 0], test_abnormal=test[key][labels == 1])
    return sets
