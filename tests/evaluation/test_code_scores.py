"""Code scores against known answers: a class shifted in latent space is found by the
code scores, one distribution for both classes leaves them at chance, a constant code
score leaves the combined score ranking as the reconstruction score, and the
Mahalanobis and k-NN scores equal independent computations."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics

from ae4ad_jax.evaluation import code_scores

D = 4


def _splits(shift, seed=0, constant_code=False):
    """Train normals (also the threshold normals) and a test set of 100 normal and 100
    abnormal codes; the reconstruction score is pure noise for both classes."""
    rng = np.random.default_rng(seed)
    train_z = rng.normal(size=(300, D))
    test_z = rng.normal(size=(200, D))
    test_z[100:, 0] += shift
    if constant_code:
        train_z[:], test_z[:] = 1.0, 1.0
    train = {"z_norm": train_z, "score": rng.gamma(2.0, size=300)}
    test = {"z_norm": test_z, "score": rng.gamma(2.0, size=200)}
    return train, test, np.repeat([0, 1], 100)


def _aurocs(shift, **kwargs):
    train, test, labels = _splits(shift, **kwargs)
    _, found = code_scores.member_code_scores(train, train, test, D, 5, normal_is_train=True)
    return {name: metrics.roc_auc_score(labels, test_scores)
            for name, (_, test_scores) in found.items()}, found, test, labels


def test_a_class_shifted_in_latent_space_is_found_by_the_code_scores():
    aurocs, _, test, labels = _aurocs(shift=6.0)
    assert aurocs["code_density"] > 0.99 and aurocs["code_knn"] > 0.99
    assert abs(metrics.roc_auc_score(labels, test["score"]) - 0.5) < 0.1  # recon: chance
    assert aurocs["combined_code_density"] > 0.8


def test_one_distribution_for_both_classes_leaves_the_code_scores_at_chance():
    aurocs, _, _, _ = _aurocs(shift=0.0)
    assert abs(aurocs["code_density"] - 0.5) < 0.1 and abs(aurocs["code_knn"] - 0.5) < 0.1


def test_a_constant_code_score_leaves_the_reconstruction_ranking():
    _, found, test, _ = _aurocs(shift=4.0, constant_code=True)
    for name in ("combined_code_density", "combined_code_knn"):
        np.testing.assert_array_equal(stats.rankdata(found[name][1]),
                                      stats.rankdata(test["score"]))


def _ledoit_wolf(x):
    """Ledoit and Wolf (2004), written out: the sample covariance (divisor N) shrunk towards
    mu * I (mu its mean eigenvalue) by the weight that minimises the expected squared
    Frobenius error. (The project's own code until scikit-learn's replaced it.)"""
    n, d = x.shape
    centred = x - x.mean(axis=0)
    sample = centred.T @ centred / n
    mu = np.trace(sample) / d
    target_distance = np.sum((sample - mu * np.eye(d)) ** 2)
    spread = np.sum((centred ** 2).T @ centred ** 2) / n - np.sum(sample ** 2)
    shrinkage = min(spread / n, target_distance) / target_distance
    return (1.0 - shrinkage) * sample + shrinkage * mu * np.eye(d), shrinkage


def test_the_density_score_is_the_ledoit_wolf_gaussian_log_density():
    rng = np.random.default_rng(1)
    fit = rng.normal(size=(12, 10)) @ rng.normal(size=(10, 10))  # d close to N: shrunk
    query = rng.normal(size=(7, 10))
    density = code_scores.GaussianDensity.fit(fit)
    covariance, shrinkage = _ledoit_wolf(fit)
    assert 0.05 < shrinkage < 1 and density.shrinkage == pytest.approx(shrinkage, rel=1e-12)
    difference = query - fit.mean(axis=0)
    expected = np.einsum("ni,ij,nj->n", difference, np.linalg.inv(covariance), difference)
    np.testing.assert_allclose(density.mahalanobis(query), expected, rtol=1e-6)
    logpdf = stats.multivariate_normal(fit.mean(axis=0), covariance).logpdf(query)
    np.testing.assert_allclose(density.negative_log_density(query), -logpdf, rtol=1e-6)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_the_knn_score_is_the_brute_force_kth_distance(exclude_self):
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(40, 3))
    reference[5] = reference[9] = reference[17]  # a tie: a duplicate is a neighbour at 0
    queries = reference if exclude_self else rng.normal(size=(25, 3))
    expected = []
    for i, q in enumerate(queries):
        distances = sorted(float(np.sqrt(np.sum((q - r) ** 2)))
                           for j, r in enumerate(reference) if not (exclude_self and i == j))
        expected.append(distances[2])  # k = 3
    found = code_scores.knn_distances(reference, queries, 3, exclude_self=exclude_self)
    np.testing.assert_allclose(found, expected, rtol=1e-9, atol=1e-9)
    if exclude_self:  # each of the three copies has two others at distance 0
        second = code_scores.knn_distances(reference, reference, 2, exclude_self=True)
        assert list(np.flatnonzero(second == 0)) == [5, 9, 17]
