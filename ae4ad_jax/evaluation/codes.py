"""Measurements of the latent code: its entropy H(Z) by each estimator (raw and
standardised, with bootstrap intervals and the estimator's validated range), and the
learned rate in bits per image, for train-normal, test-normal and test-abnormal codes.
"""

import jax
import numpy as np

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.estimators import entropy

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


def code_metrics(train, test, labels, latent_size, estimators, bootstrap) -> dict:
    """Entropies of the raw and the standardised code and the learned rate of a member's
    scored splits (`train`, `test`: dicts of host arrays; `test` may be None)."""
    row = {}
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
