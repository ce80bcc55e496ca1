"""Anomaly scores from the latent code, beside the reconstruction score (issue #27).

The paper's theory: a good AE keeps the information of normal anatomy, and no more, in
a low-entropy code. Then an abnormal image's code should be unlikely under the density
of normal codes, and expensive under the learned prior. Per member, from its scored
splits (host arrays; the member's d first units of the code):

- `code_density`: the negative log-density of the standardised code `z_norm` under a
  Gaussian fitted to the normal codes that set the thresholds (held-out normals with
  `val_fraction`, else the training normals). Its covariance is shrunk towards a
  scaled identity by the Ledoit-Wolf rule, so it stays invertible when d is close to
  or above the number of codes;
- `code_knn`: the Euclidean distance of `z_norm` to its k-th nearest training-normal
  code (`eval.code_knn_k`; a training image's own code is not its neighbour);
- `rate`: the code's bits under the learned prior (with `rate.enabled`);
- `combined_<score>`: the reconstruction score plus that code score, each standardised
  by the mean and standard deviation of its scores on the same normal images. Nothing
  is tuned on test labels.

Pixel maps stay the reconstruction maps.
"""

import numpy as np

CODE_SCORES = ("code_density", "code_knn", "rate")
KNN_BLOCK = 1024  # query rows per distance block (memory: block x reference codes)


def ledoit_wolf(x):
    """(covariance, shrinkage) of rows `x` [N, d]: the Ledoit-Wolf (2004) convex
    combination of the sample covariance (divisor N) and mu * I, with mu its mean
    eigenvalue and the shrinkage that minimises the expected squared Frobenius error."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    centred = x - x.mean(axis=0)
    sample = centred.T @ centred / n
    mu = np.trace(sample) / d
    target_distance = np.sum((sample - mu * np.eye(d)) ** 2)
    squares = centred ** 2
    spread = np.sum(squares.T @ squares) / n - np.sum(sample ** 2)
    beta = min(spread / n, target_distance)
    shrinkage = 0.0 if target_distance == 0 else beta / target_distance
    return (1.0 - shrinkage) * sample + shrinkage * mu * np.eye(d), float(shrinkage)


class GaussianDensity:
    """A Gaussian fitted to rows `x` [N, d] with the Ledoit-Wolf covariance."""

    def __init__(self, x):
        x = np.asarray(x, np.float64)
        self.mean = x.mean(axis=0)
        covariance, self.shrinkage = ledoit_wolf(x)
        covariance += 1e-9 * max(np.trace(covariance) / len(covariance), 1e-12) * np.eye(
            len(covariance))  # a constant code: a tiny floor keeps it invertible
        self.cholesky = np.linalg.cholesky(covariance)
        self.log_det = 2.0 * np.sum(np.log(np.diag(self.cholesky)))

    def mahalanobis(self, x):
        """Squared Mahalanobis distances of rows `x` [N, d] from the mean."""
        white = np.linalg.solve(self.cholesky, (np.asarray(x, np.float64) - self.mean).T)
        return np.sum(white ** 2, axis=0)

    def negative_log_density(self, x):
        d = len(self.mean)
        return 0.5 * (self.mahalanobis(x) + self.log_det + d * np.log(2.0 * np.pi))


def knn_distances(reference, queries, k: int, exclude_self: bool = False):
    """Distance of each query row to its k-th nearest reference row. With `exclude_self`
    the queries are the reference rows themselves and each skips its own row."""
    reference = np.asarray(reference, np.float64)
    queries = np.asarray(queries, np.float64)
    needed = k + 1 if exclude_self else k
    if len(reference) < needed:
        raise ValueError(f"code_knn needs more than {needed - 1} training-normal codes, got "
                         f"{len(reference)}")
    squared_reference = np.sum(reference ** 2, axis=1)
    out = np.empty(len(queries))
    for start in range(0, len(queries), KNN_BLOCK):
        block = queries[start:start + KNN_BLOCK]
        squared = (np.sum(block ** 2, axis=1)[:, None] + squared_reference[None, :]
                   - 2.0 * block @ reference.T)
        if exclude_self:
            rows = np.arange(len(block))
            squared[rows, start + rows] = np.inf
        kth = np.partition(squared, k - 1, axis=1)[:, k - 1]
        out[start:start + len(block)] = np.sqrt(np.maximum(kth, 0.0))
    return out


def standardise_by(normal, *others):
    """Each array minus the mean of `normal`, over its standard deviation (1 if zero)."""
    normal = np.asarray(normal, np.float64)
    mean, std = normal.mean(), normal.std()
    std = std if std > 0 else 1.0
    return [(np.asarray(x, np.float64) - mean) / std for x in (normal, *others)]


def combined(recon_normal, recon_test, code_normal, code_test):
    """(normal, test) combined scores: the sum of the standardised reconstruction and code
    scores, each standardised by its normal images' scores."""
    recon_normal, recon_test = standardise_by(recon_normal, recon_test)
    code_normal, code_test = standardise_by(code_normal, code_test)
    return recon_normal + code_normal, recon_test + code_test


def _codes(split, latent_size):
    z = np.asarray(split["z_norm"])[..., :latent_size]
    return z.reshape(len(z), -1)


def member_code_scores(train, normal, test, latent_size, k, normal_is_train):
    """{variant: (normal scores, test scores or None)} for one member: the code scores
    its splits allow, and their combinations with the reconstruction score. `normal` is
    the split that sets thresholds (held-out normals, or `train` itself when
    `normal_is_train`)."""
    found = {}
    if "z_norm" in train:
        reference = _codes(train, latent_size)
        density = GaussianDensity(_codes(normal, latent_size))
        found["code_density"] = (density.negative_log_density(_codes(normal, latent_size)),
                                 None if test is None else
                                 density.negative_log_density(_codes(test, latent_size)))
        found["code_knn"] = (
            knn_distances(reference, _codes(normal, latent_size), k,
                          exclude_self=normal_is_train),
            None if test is None else knn_distances(reference, _codes(test, latent_size), k))
    if "bits" in train:
        found["rate"] = (np.asarray(normal["bits"], np.float64),
                         None if test is None else np.asarray(test["bits"], np.float64))
    for name, (code_normal, code_test) in list(found.items()):
        if test is None:
            found[f"combined_{name}"] = (standardise_by(normal["score"])[0]
                                         + standardise_by(code_normal)[0], None)
        else:
            found[f"combined_{name}"] = combined(normal["score"], test["score"], code_normal,
                                                 code_test)
    return found
