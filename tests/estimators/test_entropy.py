"""Entropy estimators against closed forms (the tolerance table is in docs/entropy.md)."""

import math

import numpy as np
import pytest
from sklearn.covariance import ledoit_wolf

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.estimators import entropy

# (estimator, d) -> tolerance in nats for N = 5000 samples of a correlated Gaussian.
GAUSSIAN_TOLERANCES = {("gaussian", 1): 0.05, ("gaussian", 4): 0.1, ("gaussian", 16): 0.2,
                       ("gaussian", 64): 0.6, ("knn", 1): 0.05, ("knn", 4): 0.15,
                       ("knn", 16): 1.0}


def _gaussian(d, n=5000, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d)) / np.sqrt(d)
    cov = a @ a.T + 0.5 * np.eye(d)
    z = rng.multivariate_normal(np.zeros(d), cov, size=n).astype(np.float32)
    return z, cov, 0.5 * (d * math.log(2 * math.pi * math.e) + np.linalg.slogdet(cov)[1])


@pytest.mark.parametrize("estimator,d", sorted(GAUSSIAN_TOLERANCES))
def test_gaussian_known_answer(estimator, d):
    z, _, true = _gaussian(d)
    estimate = float(entropy.estimate_entropy(z, estimator))
    assert abs(estimate - true) < GAUSSIAN_TOLERANCES[(estimator, d)], (estimate, true)


def test_ledoit_wolf_matches_sklearn():
    z, _, _ = _gaussian(8, n=300)
    np.testing.assert_allclose(entropy.ledoit_wolf_covariance(z), ledoit_wolf(z)[0],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("d", [1, 3])
def test_uniform_box(d):
    rng = np.random.default_rng(1)
    sides = np.array([0.5, 2.0, 3.0][:d])
    z = (rng.random((5000, d)) * sides).astype(np.float32)
    true = float(np.sum(np.log(sides)))
    # k-NN overestimates near the box's faces (boundary bias), more so in higher d.
    assert abs(float(entropy.estimate_entropy(z, "knn")) - true) < {1: 0.05, 3: 0.15}[d]
    # The Gaussian estimate bounds any distribution with the same covariance from above.
    assert float(entropy.estimate_entropy(z, "gaussian")) > true


@pytest.mark.parametrize("estimator", ["gaussian", "knn"])
def test_scaling_shifts_by_d_log_s(estimator):
    z, _, _ = _gaussian(5, n=2000)
    shift = float(entropy.estimate_entropy(3.0 * z, estimator)
                  - entropy.estimate_entropy(z, estimator))
    assert abs(shift - 5 * math.log(3.0)) < 1e-3


def test_renyi_quadratic_matches_parzen_limit_and_is_scale_invariant():
    z, cov, _ = _gaussian(2, n=3000)
    sigma = 0.5
    estimate = float(entropy.estimate_entropy(z, "renyi", sigma=sigma))
    assert abs(estimate - float(entropy.renyi2_gaussian_limit(cov, sigma))) < 0.05
    default = float(entropy.estimate_entropy(z, "renyi"))
    assert abs(float(entropy.estimate_entropy(7.0 * z, "renyi")) - default) < 1e-3
    assert 0 < default < math.log(len(z))


def test_renyi_general_alpha_bounds():
    rng = np.random.default_rng(2)
    far = rng.standard_normal((50, 3)).astype(np.float32) * 1e3
    same = np.ones((50, 3), np.float32)
    for alpha in (1.01, 2.0, 3.0):
        assert abs(float(entropy.estimate_entropy(far, "renyi", alpha=alpha, sigma=1.0))
                   - math.log(50)) < 1e-3
        assert abs(float(entropy.estimate_entropy(same, "renyi", alpha=alpha, sigma=1.0))) < 1e-3


def test_degenerate_inputs_are_finite_or_clear_errors():
    constant = np.ones((100, 4), np.float32)
    duplicated = np.repeat(np.random.default_rng(3).standard_normal((20, 4)), 5, axis=0)
    wide = np.random.default_rng(4).standard_normal((10, 32)).astype(np.float32)
    for z in (constant, duplicated, wide):
        for estimator in entropy.ESTIMATORS:
            assert np.isfinite(float(entropy.estimate_entropy(z, estimator))), estimator
    with pytest.raises(UserError, match="at least 2 vectors"):
        entropy.estimate_entropy(np.ones((1, 3)), "gaussian")
    with pytest.raises(UserError, match="at least 4 vectors"):
        entropy.estimate_entropy(np.ones((3, 3)), "knn")
    with pytest.raises(UserError, match="Unknown entropy estimator 'shannon'"):
        entropy.estimate_entropy(constant, "shannon")


def test_batch_renyi2_ignores_padding_rows_units_and_scale():
    import jax
    import jax.numpy as jnp

    z, _, _ = _gaussian(3, n=40)
    reference = float(entropy.estimate_entropy(z, "renyi"))
    padded = np.zeros((48, 5), np.float32)
    padded[:40, :3] = z
    padded[40:] = 7.0  # padding rows with junk
    weights = jnp.asarray([1.0] * 40 + [0.0] * 8)
    active = jnp.asarray([1.0, 1.0, 1.0, 0.0, 0.0])
    value = float(entropy.batch_renyi2(jnp.asarray(padded), weights, active))
    assert abs(value - reference) < 1e-4
    assert abs(float(entropy.batch_renyi2(jnp.asarray(5 * padded), weights, active))
               - value) < 1e-4
    grad = jax.grad(lambda x: entropy.batch_renyi2(x, weights, active))(jnp.ones((48, 5)))
    assert np.all(np.isfinite(grad))


# (estimator, d, N) inside and outside the validated range of `in_validated_range`.
IN_RANGE = [("gaussian", 16, 250), ("gaussian", 128, 512), ("knn", 4, 1500), ("knn", 8, 250)]
OUT_OF_RANGE = [("gaussian", 128, 256), ("knn", 16, 1500), ("knn", 32, 1500)]


@pytest.mark.parametrize("estimator,d,n", IN_RANGE + OUT_OF_RANGE)
def test_validated_range_is_where_the_estimate_is_within_tolerance(estimator, d, n):
    z, _, true = _gaussian(d, n=n, seed=3)
    error = abs(float(entropy.estimate_entropy(z, estimator)) - true)
    inside = entropy.in_validated_range(estimator, d, n)
    assert inside == ((estimator, d, n) in IN_RANGE)
    assert (error < entropy.validated_tolerance(d)) == inside, (error, d, n)


@pytest.mark.parametrize("estimator", ["gaussian", "knn", "renyi"])
def test_bootstrap_interval_matches_the_spread_of_independent_samples(estimator):
    """The 95% bootstrap interval of one sample is about as wide as the middle 95% of
    the estimates of independent samples of the same law."""
    import jax

    d, n = 4, 400
    _, cov, _ = _gaussian(d, n=2)

    def sample(seed):
        rng = np.random.default_rng(seed)
        return rng.multivariate_normal(np.zeros(d), cov, size=n).astype(np.float32)

    estimates = [float(entropy.estimate_entropy(sample(s), estimator)) for s in range(40)]
    spread = np.subtract(*np.percentile(estimates, [97.5, 2.5]))
    z = sample(100)
    value, low, high = entropy.estimate_with_interval(z, estimator, 200,
                                                      jax.random.PRNGKey(0))
    assert low < value < high
    assert 0.5 < (high - low) / spread < 2.0, (high - low, spread)
    assert entropy.estimate_with_interval(z, estimator, 0, None)[1:] == (value, value)
