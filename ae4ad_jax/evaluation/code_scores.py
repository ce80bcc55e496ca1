"""Anomaly scores from the latent code, beside the reconstruction score (issue #27).

The paper's theory: a good AE keeps the information of normal anatomy, and no more, in
a low-entropy code. Then an abnormal image's code should be unlikely under the density
of normal codes, and expensive under the learned prior. Per member, from its scored
splits (host arrays; the member's d first units of the code):

- `code_density`: the negative log-density of the standardised code `z_norm` under a
  Gaussian fitted to the normal codes that set the thresholds (held-out normals with
  `val_fraction`, else the training normals). Its covariance is shrunk towards a
  scaled identity by the Ledoit-Wolf rule (scikit-learn's `ledoit_wolf`), so it stays
  invertible when d is close to or above the number of codes;
- `code_knn`: the Euclidean distance of `z_norm` to its k-th nearest training-normal
  code (`eval.code_knn_k`; a training image's own code is not its neighbour;
  scikit-learn's `NearestNeighbors`, brute force, in memory-bounded chunks);
- `rate`: the code's bits under the learned prior (with `rate.enabled`);
- `combined_<score>`: the reconstruction score plus that code score, each standardised
  by the mean and standard deviation of its scores on the same normal images. Nothing
  is tuned on test labels.

Pixel maps stay the reconstruction maps.
"""

import dataclasses

import numpy as np
from sklearn import covariance as covariance_lib
from sklearn import neighbors


class GaussianDensity:
    """A Gaussian fitted to rows `x` [N, d] with the Ledoit-Wolf covariance."""

    def __init__(self, mean, cholesky, shrinkage):
        self.mean, self.cholesky = np.asarray(mean), np.asarray(cholesky)
        self.shrinkage = float(shrinkage)
        self.log_det = 2.0 * np.sum(np.log(np.diag(self.cholesky)))

    @classmethod
    def fit(cls, x):
        x = np.asarray(x, np.float64)
        covariance, shrinkage = covariance_lib.ledoit_wolf(x)
        covariance += 1e-9 * max(np.trace(covariance) / len(covariance), 1e-12) * np.eye(
            len(covariance))  # a constant code: a tiny floor keeps it invertible
        return cls(x.mean(axis=0), np.linalg.cholesky(covariance), shrinkage)

    def mahalanobis(self, x):
        """Squared Mahalanobis distances of rows `x` [N, d] from the mean."""
        white = np.linalg.solve(self.cholesky, (np.asarray(x, np.float64) - self.mean).T)
        return np.sum(white ** 2, axis=0)

    def negative_log_density(self, x):
        d = len(self.mean)
        return 0.5 * (self.mahalanobis(x) + self.log_det + d * np.log(2.0 * np.pi))


def knn_distances(reference, queries, k: int, exclude_self: bool = False):
    """Distance of each query row to its k-th nearest reference row (exact, brute force).
    With `exclude_self` the queries are the reference rows themselves and each skips its
    own row."""
    reference = np.asarray(reference, np.float64)
    needed = k + 1 if exclude_self else k
    if len(reference) < needed:
        raise ValueError(f"code_knn needs more than {needed - 1} training-normal codes, got "
                         f"{len(reference)}")
    index = neighbors.NearestNeighbors(n_neighbors=k, algorithm="brute").fit(reference)
    found = None if exclude_self else np.asarray(queries, np.float64)
    distances, _ = index.kneighbors(found)
    return distances[:, k - 1]


def _codes(split, latent_size):
    z = np.asarray(split["z_norm"])[..., :latent_size]
    return z.reshape(len(z), -1)


RECONSTRUCTION = "reconstruction"  # the name of the method's own score


@dataclasses.dataclass
class CodeModel:
    """What a member's code scores need beyond its network, fitted on normal images: the
    Gaussian of their codes, the training-normal codes (k-NN) and, for the combined
    scores, each score's mean and standard deviation on the threshold normals."""
    latent_size: int
    k: int
    density: GaussianDensity | None
    reference: np.ndarray | None  # [N, d] training-normal codes
    stats: dict  # score name -> (mean, std) on the threshold normals
    has_rate: bool

    @classmethod
    def fit(cls, train, normal, latent_size, k, normal_is_train):
        """Fitted on a member's scored splits: `normal` sets thresholds (held-out normals,
        or `train` itself when `normal_is_train`). Returns (model, normal's variants)."""
        plain = "z_norm" in train
        model = cls(latent_size, k,
                    GaussianDensity.fit(_codes(normal, latent_size)) if plain else None,
                    _codes(train, latent_size).astype(np.float32) if plain else None,
                    {}, "bits" in train)
        raw = model.code_scores(normal, exclude_self=normal_is_train)
        for name, values in [(RECONSTRUCTION, np.asarray(normal["score"], np.float64)),
                             *raw.items()]:
            std = float(values.std())
            model.stats[name] = (float(values.mean()), std if std > 0 else 1.0)
        return model, model._with_combined(raw, normal["score"])

    def code_scores(self, split, exclude_self=False) -> dict:
        found = {}
        if self.density is not None:
            codes = _codes(split, self.latent_size)
            found["code_density"] = self.density.negative_log_density(codes)
            found["code_knn"] = knn_distances(self.reference, codes, self.k, exclude_self)
        if self.has_rate:
            found["rate"] = np.asarray(split["bits"], np.float64)
        return found

    def variants_available(self) -> list[str]:
        names = (["code_density", "code_knn"] if self.density is not None else []) + (
            ["rate"] if self.has_rate else [])
        return names + [f"combined_{name}" for name in names]

    def standardised(self, name, values):
        mean, std = self.stats[name]
        return (np.asarray(values, np.float64) - mean) / std

    def variants(self, split, exclude_self=False) -> dict:
        """{variant: scores} of a scored split (its "score" and code outputs)."""
        return self._with_combined(self.code_scores(split, exclude_self), split["score"])

    def _with_combined(self, found, reconstruction_scores) -> dict:
        """The code scores `found` and each one's combination with the reconstruction."""
        recon = self.standardised(RECONSTRUCTION, reconstruction_scores)
        return {**found, **{f"combined_{name}": recon + self.standardised(name, values)
                            for name, values in found.items()}}

    def to_arrays(self) -> dict:
        """The model as named arrays (one member's part of `code_models.npz`)."""
        arrays = {"latent_size": np.int32(self.latent_size), "k": np.int32(self.k),
                  "has_rate": np.int32(self.has_rate),
                  "stats_names": np.array(list(self.stats)),
                  "stats": np.array(list(self.stats.values()), np.float64)}
        if self.density is not None:
            arrays.update({"density_mean": self.density.mean,
                           "density_cholesky": self.density.cholesky,
                           "density_shrinkage": np.float64(self.density.shrinkage),
                           "reference": self.reference})
        return arrays

    @classmethod
    def from_arrays(cls, arrays):
        """The model saved by `to_arrays`; ValueError naming the first key that is missing
        or of the wrong shape (the arrays may come from a stranger's workdir)."""
        latent_size = int(_array(arrays, "latent_size", ()))
        k = int(_array(arrays, "k", ()))
        names = _array(arrays, "stats_names", (None,), "U")
        values = _array(arrays, "stats", (len(names), 2), "f")
        if latent_size < 1 or k < 1:
            raise ValueError("the arrays latent_size and k must be positive")
        density = reference = None
        if "density_mean" in arrays:
            d = latent_size
            density = GaussianDensity(
                _array(arrays, "density_mean", (d,), "f"),
                _array(arrays, "density_cholesky", (d, d), "f"),
                _array(arrays, "density_shrinkage", (), "f"))
            reference = _array(arrays, "reference", (None, d), "f")
            if len(reference) < k or not np.all(np.diag(density.cholesky) > 0):
                raise ValueError("the array reference or density_cholesky is degenerate")
        stats = {str(name): tuple(float(v) for v in row)
                 for name, row in zip(names, values, strict=True)}
        return cls(latent_size, k, density, reference, stats,
                   bool(_array(arrays, "has_rate", ())))


def _array(arrays, key, shape, kind="iuf"):
    """arrays[key], checked: present, of `shape` (None: any length), of a dtype kind in
    `kind`, finite."""
    if key not in arrays:
        raise ValueError(f"the array {key} is missing")
    value = np.asarray(arrays[key])
    if value.ndim != len(shape) or any(n is not None and n != m
                                       for n, m in zip(shape, value.shape, strict=True)):
        raise ValueError(f"the array {key} has shape {value.shape}, not {shape}")
    if value.dtype.kind not in kind or (value.dtype.kind in "f" and
                                        not np.isfinite(value).all()):
        raise ValueError(f"the array {key} has dtype {value.dtype} or values that are not "
                         "finite")
    return value


def member_code_scores(train, normal, test, latent_size, k, normal_is_train):
    """(model, {variant: (normal scores, test scores or None)}) for one member."""
    model, normal_variants = CodeModel.fit(train, normal, latent_size, k, normal_is_train)
    test_variants = model.variants(test) if test is not None else {}
    return model, {name: (values, test_variants.get(name))
                   for name, values in normal_variants.items()}
