"""Estimators of the entropy of a set of latent vectors z [N, d], in nats, on the device.

The paper's theory says a good AE for anomaly detection minimises the latent
entropy H(Z) while keeping normal content; these estimators measure it.

`gaussian` — 0.5 log det(2 pi e S) with the Ledoit-Wolf shrinkage covariance S.
    The differential entropy of a Gaussian with the data's covariance: an upper
    bound on H(Z) for any distribution with that covariance, exact for
    Gaussians. Bias: O(d^2 / N) downwards from the log-det of a sample
    covariance, reduced by shrinkage. Cost: O(N d^2 + d^3). Differentiable.
`knn` — Kozachenko-Leonenko: psi(N) - psi(k) + log V_d + (d / N) sum_i log eps_i,
    eps_i the distance from z_i to its k-th nearest neighbour, V_d = pi^(d/2) /
    Gamma(d/2 + 1) the volume of the unit ball. Consistent for any density;
    biased for small N in high d (it underestimates). Cost: O(N^2 d) time,
    O(block N) memory (pairwise distances a block of rows at a time).
`renyi` — the matrix-based Renyi alpha-entropy of Giraldo, Rao and Principe
    (2014): S_alpha(A) = log(sum_i lambda_i(A)^alpha) / (1 - alpha), A = K / N,
    K_ij = exp(-|z_i - z_j|^2 / (2 sigma^2)). Not a differential entropy: it lies
    in [0, log N] and depends on the kernel width sigma (default: `scott_bandwidth`
    of the data, which makes it invariant to rescaling z). For alpha = 2 it is
    -log(sum K_ij^2 / N^2), a Parzen estimate of the quadratic Renyi entropy of
    the smoothed density (see `renyi2_gaussian_limit`). Cost: O(N^2 d) for
    alpha = 2, O(N^3) otherwise (an eigendecomposition). Differentiable, meant
    for minibatches (the entropy-regularised loss).

Degenerate inputs never give NaN: covariance eigenvalues and neighbour
distances are floored (`MIN_VARIANCE`, `MIN_DISTANCE`), so constant or
duplicated vectors give a finite, very negative differential entropy; an
input with fewer than 2 vectors (k + 1 for knn) is a clear error.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import digamma, gammaln

from ae4ad_jax.core import batching
from ae4ad_jax.core.errors import UserError

ESTIMATORS = ("gaussian", "knn", "renyi")
MIN_VARIANCE = 1e-12
MIN_DISTANCE = 1e-10
KNN_BLOCK = 512
KNN_CANDIDATES = 8  # extra neighbours re-measured exactly


def _check(z, minimum):
    if z.ndim != 2:
        raise UserError(f"Entropy estimators take an [N, d] array, got shape {z.shape}.")
    if z.shape[0] < minimum:
        raise UserError(f"Entropy estimation needs at least {minimum} vectors, got "
                        f"{z.shape[0]}.")


def ledoit_wolf_covariance(z):
    """Ledoit-Wolf shrinkage of the sample covariance towards a scaled identity."""
    n, d = z.shape
    x = z - jnp.mean(z, axis=0)
    sample = x.T @ x / n
    mu = jnp.trace(sample) / d
    target = mu * jnp.eye(d, dtype=z.dtype)
    delta = jnp.sum(jnp.square(sample - target))
    beta = (jnp.sum(jnp.square(jnp.sum(x * x, axis=1))) / n - jnp.sum(jnp.square(sample))) / n
    shrinkage = jnp.where(delta > 0, jnp.clip(beta / jnp.maximum(delta, 1e-30), 0.0, 1.0), 1.0)
    return (1.0 - shrinkage) * sample + shrinkage * target


@jax.jit
def gaussian_entropy(z):
    d = z.shape[1]
    eigenvalues = jnp.linalg.eigvalsh(ledoit_wolf_covariance(z.astype(jnp.float32)))
    log_det = jnp.sum(jnp.log(jnp.maximum(eigenvalues, MIN_VARIANCE)))
    return 0.5 * (d * math.log(2 * math.pi * math.e) + log_det)


def squared_distances(a, b):
    """|a_i - b_j|^2 for rows a [P, d] and b [Q, d]: [P, Q], floored at 0.

    The expansion |a|^2 + |b|^2 - 2 a.b loses precision for close pairs (cancellation).
    """
    a_norms, b_norms = jnp.sum(a * a, axis=1), jnp.sum(b * b, axis=1)
    return jnp.maximum(a_norms[:, None] + b_norms[None, :] - 2.0 * a @ b.T, 0.0)


def log_unit_ball_volume(d):
    return 0.5 * d * math.log(math.pi) - gammaln(0.5 * d + 1.0)


@functools.partial(jax.jit, static_argnames=("k", "block"))
def knn_entropy(z, k=3, block=KNN_BLOCK):
    return _knn_from_terms(knn_log_distances(z, k, block), z.shape[1], k)


def _knn_from_terms(log_eps, d, k):
    """Kozachenko-Leonenko from the log k-th neighbour distances [..., N]."""
    n = log_eps.shape[-1]
    return (digamma(float(n)) - digamma(float(k)) + log_unit_ball_volume(d)
            + d * jnp.mean(log_eps, axis=-1))


@functools.partial(jax.jit, static_argnames=("k", "block"))
def knn_log_distances(z, k=3, block=KNN_BLOCK):
    """log of each vector's distance to its k-th nearest neighbour (floored): [N]."""
    n, d = z.shape
    z = z.astype(jnp.float32)
    rows = batching.split_padded(z, block)  # [blocks, block, d]

    def kth_distance(args):
        start, query = args  # query [block, d]
        dist2 = squared_distances(query, z)  # [block, N]
        own = start + jnp.arange(block)
        dist2 = jnp.where(own[:, None] == jnp.arange(n)[None, :], jnp.inf, dist2)
        # The expansion only picks candidates; their distances are then computed directly.
        candidates = lax.top_k(-dist2, min(k + KNN_CANDIDATES, n - 1))[1]  # [block, k']
        exact = jnp.sqrt(jnp.sum(jnp.square(z[candidates] - query[:, None, :]), axis=-1))
        return jnp.sort(exact, axis=1)[:, k - 1]

    starts = jnp.arange(rows.shape[0]) * block
    eps = lax.map(kth_distance, (starts, rows)).reshape(-1)[:n]
    return jnp.log(jnp.maximum(eps, MIN_DISTANCE))


def scott_bandwidth(z):
    """sqrt(total variance) x N^(-1/(d+4)): Scott's rule for the norm of d-dim differences.

    Per-dimension Scott widths would leave nearly every pair of points in d > 4
    dimensions beyond the kernel's reach (a saturated Gram matrix, vanishing gradients).
    """
    n, d = z.shape
    return jnp.sqrt(jnp.sum(jnp.var(z, axis=0)) + 1e-12) * n ** (-1.0 / (d + 4))


def _normalised_gram(z, sigma):
    n = z.shape[0]
    sigma = scott_bandwidth(z) if sigma is None else sigma
    dist2 = jnp.where(jnp.eye(n, dtype=bool), 0.0, squared_distances(z, z))  # trace exactly 1
    return jnp.exp(-dist2 / (2.0 * sigma**2)) / n


@jax.jit
def renyi2_terms(z, sigma=None):
    """Each vector's row sum of the squared normalised Gram matrix: [N]; the Renyi-2
    entropy is -log of their sum."""
    return jnp.sum(jnp.square(_normalised_gram(z.astype(jnp.float32), sigma)), axis=1)


@functools.partial(jax.jit, static_argnames=("alpha",))
def renyi_entropy(z, alpha=2.0, sigma=None):
    if alpha == 2.0:
        return -jnp.log(jnp.sum(renyi2_terms(z, sigma)))
    gram = _normalised_gram(z.astype(jnp.float32), sigma)
    eigenvalues = jnp.maximum(jnp.linalg.eigvalsh(gram), 0.0)
    return jnp.log(jnp.sum(eigenvalues**alpha)) / (1.0 - alpha)


def batch_renyi2(z, weights, active):
    """`renyi_entropy(z, 2)` of the rows with weight 1, for the training loss.

    `z` [B, ..., D] latent codes, `weights` [B] (0 for padding rows), `active`
    [D] (0 for latent units beyond the member's size). The Scott bandwidth is
    taken over real rows and active units, so the value does not change with
    the scale of z (a BatchNorm follows the latent layer, so scale carries no
    information) and padding changes nothing. Differentiable everywhere.
    """
    b = z.shape[0]
    active = jnp.broadcast_to(active, z.shape[1:]).reshape(-1)
    z = z.reshape(b, -1).astype(jnp.float32) * active
    n, d = jnp.sum(weights), jnp.sum(active)
    mean = jnp.sum(weights[:, None] * z, axis=0) / n
    var = jnp.sum(weights[:, None] * jnp.square(z - mean), axis=0) / n
    sigma = jnp.sqrt(jnp.sum(var * active) + 1e-12) * n ** (-1.0 / (d + 4.0))
    dist2 = jnp.where(jnp.eye(b, dtype=bool), 0.0, squared_distances(z, z))
    gram = jnp.exp(-dist2 / (2.0 * sigma**2)) * weights[:, None] * weights[None, :]
    return -jnp.log(jnp.sum(jnp.square(gram)) / n**2)


def renyi2_gaussian_limit(covariance, sigma):
    """The large-N value of `renyi_entropy(z, 2, sigma)` for z ~ N(m, covariance)."""
    d = covariance.shape[0]
    smoothed = covariance + 0.25 * sigma**2 * jnp.eye(d)
    return (0.5 * d * math.log(4 * math.pi) + 0.5 * jnp.linalg.slogdet(smoothed)[1]
            - 0.5 * d * jnp.log(math.pi * sigma**2))


# Where the known-answer tests (tests/estimators/test_entropy.py) validate each estimator: on
# correlated Gaussians (covariance A A^T / d + I / 2) it is within VALIDATED_TOLERANCE of
# the true entropy. Outside, the tests show it can miss by more.
VALIDATED_PER_UNIT, VALIDATED_OFFSET = 0.05, 0.1  # nats: 0.05 d + 0.1


def validated_tolerance(d: int) -> float:
    return VALIDATED_PER_UNIT * d + VALIDATED_OFFSET


def in_validated_range(estimator: str, d: int, n: int) -> bool:
    """Whether `d` dimensions and `n` vectors lie where the known-answer tests validate the
    estimator: gaussian d <= 128 and N >= 4 d; knn d <= 8 and N >= 250 (its bias grows
    with d: 0.06 nats per unit at d = 16 even at N = 5000); renyi (against its Parzen
    limit) d <= 2 and N >= 3000."""
    if estimator == "gaussian":
        return d <= 128 and n >= 4 * d
    if estimator == "knn":
        return d <= 8 and n >= 250
    return d <= 2 and n >= 3000


def estimate_entropy(z, estimator: str, **kwargs):
    """Entropy of the rows of `z` [N, d] in nats, by `estimator` in ESTIMATORS."""
    z = jnp.asarray(z)
    if estimator == "gaussian":
        _check(z, 2)
        return gaussian_entropy(z)
    if estimator == "knn":
        k = kwargs.get("k", 3)
        _check(z, k + 1)
        return knn_entropy(z, k=k, block=min(KNN_BLOCK, z.shape[0]))
    if estimator == "renyi":
        _check(z, 2)
        return renyi_entropy(z, alpha=kwargs.get("alpha", 2.0), sigma=kwargs.get("sigma"))
    raise UserError(f"Unknown entropy estimator {estimator!r}: known estimators are "
                    f"{', '.join(ESTIMATORS)}.")


@functools.partial(jax.jit, static_argnames=("estimator", "num", "k"))
def _bootstrap(z, key, *, estimator, num, k):
    """(the estimate, `num` bootstrap replicates [num]). The Gaussian estimate is
    recomputed on codes resampled with replacement; k-NN and Renyi-2 are means of
    per-code terms, and a resampled code would meet its own copy (a zero distance, a
    self-similarity of 1), so their per-code terms, computed once, are resampled instead."""
    n, d = z.shape
    z = z.astype(jnp.float32)
    index = jax.random.randint(key, (num, n), 0, n)
    if estimator == "gaussian":
        return gaussian_entropy(z), lax.map(lambda rows: gaussian_entropy(z[rows]), index)
    if estimator == "knn":
        terms = knn_log_distances(z, k, min(KNN_BLOCK, n))
        return _knn_from_terms(terms, d, k), _knn_from_terms(terms[index], d, k)
    terms = renyi2_terms(z)
    return -jnp.log(jnp.sum(terms)), -jnp.log(n * jnp.mean(terms[index], axis=1))


def estimate_with_interval(z, estimator: str, num: int, key, level=0.95):
    """(estimate, low, high) in nats: the estimate and the percentile interval of `num`
    bootstrap replicates at `level` (low = high = estimate when `num` is 0)."""
    if num == 0 or estimator not in ESTIMATORS:  # the latter raises the clear error
        value = float(estimate_entropy(z, estimator))
        return value, value, value
    _check(jnp.asarray(z), 4 if estimator == "knn" else 2)  # k + 1 vectors for k = 3
    value, replicates = _bootstrap(jnp.asarray(z), key, estimator=estimator, num=num, k=3)
    low, high = np.percentile(np.asarray(replicates), [50 * (1 - level), 50 * (1 + level)])
    return float(value), float(low), float(high)
