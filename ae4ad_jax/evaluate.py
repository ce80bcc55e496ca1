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


def _score_batch(method, member, images, positions, with_maps):
    """Scores one batch for one member: dict of [B] (and [B, H, W]) arrays; `positions`
    are the images' indices in the scored set (their random streams)."""
    forward = forward_fn(method, member)
    stream = jax.random.fold_in(member["rng"], EVAL_STREAM)
    maps, scores, outputs = method.score(forward, images, methods.row_keys(stream, positions),
                                         member["latent_mask"])
    result = {"score": scores, "mse": methods.per_image_mse(outputs["recon"], images)}
    if method.has_latent:
        result["z"] = outputs["z"]
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


def entropy_metrics(latents: dict, latent_size: int, estimators) -> dict:
    """H(Z) of each named set of latents ([N, ..., max(d)], cut to the member's d).

    A set too small for an estimator (k-NN needs k + 1 vectors) gets no value.
    """
    row = {}
    for name, z in latents.items():
        z = np.asarray(z)[..., :latent_size].reshape(len(z), -1)
        for estimator in estimators:
            try:
                row[f"entropy_{estimator}_{name}"] = float(entropy.estimate_entropy(z, estimator))
            except UserError:
                continue
    return row


def compute_metrics(test, train, labels, masks, latent_size, estimators=()):
    """One member's metrics row from its scored splits (host numpy arrays)."""
    row = image_metrics(test["score"], labels)
    row["recon_error_train_normal"] = float(np.mean(train["mse"]))
    row["recon_error_test_normal"] = float(np.mean(test["mse"][labels == 0]))
    row["recon_error_test_abnormal"] = float(np.mean(test["mse"][labels == 1]))
    if masks is not None and "map" in test:
        row.update(pixel_metrics(test["map"], masks))
    if "z" in test:
        row.update(entropy_metrics({"train_normal": train["z"],
                                    "test_normal": test["z"][labels == 0],
                                    "test_abnormal": test["z"][labels == 1]}, latent_size,
                                   estimators))
    return row
